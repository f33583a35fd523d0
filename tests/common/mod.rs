//! Helpers shared by the GPU test files: one context per test binary, and a projection
//! checked end to end against the CPU reference.
#![allow(dead_code)] // each test binary uses a different subset

pub mod epilogue;
pub mod model;

use qkv_wgpu::{
    random_inputs, reference, AdapterFilter, GpuContext, KernelConfig, Projector, QkvReport,
    QkvShape, Tolerance,
};
use std::sync::OnceLock;

/// The context every GPU test in this binary shares. A missing adapter fails the test with
/// the reason: GPU tests never skip.
pub fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        let filter = AdapterFilter::from_env().expect("QKV_BACKEND / QKV_ADAPTER are valid");
        GpuContext::new(&filter).unwrap_or_else(|e| {
            panic!(
                "GPU tests need an adapter and never skip.\n{e}\n\
                 Run scripts/setup.sh (installs Mesa's lavapipe where no GPU driver exists)."
            )
        })
    })
}

/// The variants that read X and W in the run's type, which the shared tests cover;
/// `coopmat` (f16 inputs, an adapter with cooperative matrices) has tests/coopmat.rs.
pub fn kernels() -> Vec<qkv_wgpu::Kernel> {
    qkv_wgpu::Kernel::ALL
        .into_iter()
        .filter(|&k| k != qkv_wgpu::Kernel::Coopmat)
        .collect()
}

/// The default tolerance for these inputs.
pub fn tolerance(shape: &QkvShape) -> Tolerance {
    Tolerance::for_f32_accumulation(shape.d_model)
}

/// Seeded random inputs through `kernel` on the GPU, checked against the f64 reference.
pub fn check(shape: QkvShape, kernel: impl Into<KernelConfig>, seed: u64) -> QkvReport {
    check_on(ctx(), shape, kernel, seed)
}

/// [`check`] on a context of the test's own (limits lowered on purpose, say).
pub fn check_on(
    ctx: &GpuContext,
    shape: QkvShape,
    kernel: impl Into<KernelConfig>,
    seed: u64,
) -> QkvReport {
    let (x, w) = random_inputs(&shape, seed);
    let mut p = Projector::new(ctx, shape, kernel).expect("projector");
    p.set_weights(&w).expect("weights");
    let out = p.run(&x).expect("run");
    let r = reference(&shape, &x, &w);
    QkvReport::new(
        (&out.q, &out.k, &out.v),
        &r,
        shape.q_width,
        shape.kv_width,
        tolerance(&shape),
    )
}

/// Panics with every part's report unless all three pass.
pub fn assert_pass(report: &QkvReport, what: &str) {
    assert!(
        report.pass(),
        "{what}:\n  {}\n  {}\n  {}",
        report.q,
        report.k,
        report.v
    );
}

/// The keys of the JSON objects `qkv run --json`, `qkv bench --json` (each row) and `qkv
/// project --json` print, as they were before issue #24 moved the measurement into the
/// library: scripts read them, so they do not change (tests/cli.rs and tests/project.rs
/// compare); keys are only ever added (issue #34's are marked).
pub const RUN_JSON_KEYS: &[&str] = &[
    "adapter",
    "atol",
    "backend",
    "bias",
    "checked_rows",
    "chunk_reason",
    "chunk_tokens",
    "chunks",
    "col_blocks",
    "config",
    "config_reason",
    "cpu_gflops",
    "cpu_ms",
    "cpu_threads",
    "cpu_tokens",
    "d_model",
    "device_type",
    "dispatch_ms",
    "decided_by",
    "dtype",
    "flagged",
    "gflop_per_run",
    "gflops",
    "gpu_kernel_ms",
    "gpu_kernel_ms_max",
    "gpu_kernel_ms_min",
    "gpu_total_ms",
    "hidden_ms",
    "in_run_kernel_ms",
    "input_ms",
    "kernel",
    "kernel_number",
    "kernel_timer",
    "kernel_tokens_per_s",
    "kernel_warmups",
    "kv_width",
    "max_abs_err",
    "max_rel_err",
    "impossible",
    "memory_bound",
    "noisy",
    "pass",
    "peak_gflops",
    "peak_of",
    "peak_share",
    "precision_max_abs_err",
    "precision_max_rel_err",
    "precision_rel_l2_err",
    // Issue #34: how W is stored, its bytes, the quantization cost.
    "quantization_max_abs_err",
    "quantization_max_rel_err",
    "quantization_rel_l2_err",
    "w_bytes",
    "weight_type",
    "q_width",
    "readback_ms",
    "reference_ms",
    "rel_l2_err",
    "repeats",
    "roofline_gflops",
    "roofline_share",
    "rtol",
    "seed",
    "sound_ttol",
    "speedup",
    "stages",
    "streamed",
    "tokens",
    "tokens_per_s",
    "transfers_ms",
    "ttol",
    "unchecked",
    "upload_ms",
    "weights_upload_ms",
    "worst_flagged",
];

pub const BENCH_JSON_KEYS: &[&str] = &[
    "bias",
    "checked_rows",
    "cpu_gflops",
    "cpu_ms",
    "cpu_tokens",
    "d_model",
    "dtype",
    // Issue #34: how W is stored and its bytes.
    "w_bytes",
    "weight_type",
    "end_to_end_ms",
    "gpu_gflops",
    "kernel",
    "kernel_ms",
    "kernel_timer",
    "kv_width",
    "max_abs_err",
    "noisy",
    "pass",
    "peak_gflops",
    "peak_of",
    "peak_share",
    "q_width",
    "roofline_share",
    "shape",
    "share_impossible",
    "speedup",
    "tokens",
    "unchecked",
];

pub const PROJECT_JSON_KEYS: &[&str] = &[
    "adapter",
    "atol",
    "backend",
    "batch",
    "bias",
    "checked",
    "checked_rows",
    "chunk_reason",
    "chunk_tokens",
    "chunks",
    "config_reason",
    "cpu_ms",
    "d_model",
    "decided_by",
    "device_type",
    "dtype",
    "family",
    "flagged",
    "gflops",
    "gpu_kernel_ms",
    "gpu_total_ms",
    "head_layout",
    "heads",
    "input",
    "input_dtype",
    "kernel",
    "kv_heads",
    "kv_shape",
    "kv_width",
    "max_abs_err",
    "max_rel_err",
    "nonfinite",
    "notes",
    "out_dtype",
    "out_format",
    "outputs",
    "overflow",
    "pass",
    "precision_max_abs_err",
    "precision_max_rel_err",
    "precision_rel_l2_err",
    // Issue #34: how W is stored, its bytes, the quantization cost, GGUF row order.
    "quantization_max_abs_err",
    "quantization_max_rel_err",
    "quantization_rel_l2_err",
    "row_order",
    "w_bytes",
    "weight_type",
    "q_shape",
    "q_width",
    "read_ms",
    "rel_l2_err",
    "rtol",
    "seq",
    "sound_ttol",
    "stages",
    "streamed",
    "tensors",
    "tokens",
    "tokens_per_s",
    "ttol",
    "weight_layout",
    "weight_layout_reason",
    "weights",
    "write_ms",
    "written",
    // Issue #36: QK-norm and RoPE, and the cost of their pass.
    "epilogue",
    "epilogue_ms",
    "epilogue_fused",
    "epilogue_plan",
    "qk_ttol",
];

/// Asserts that `v` is an object with exactly the keys `want`, naming the ones missing and
/// the ones extra.
pub fn assert_json_keys(v: &serde_json::Value, want: &[&str], what: &str) {
    let have: std::collections::BTreeSet<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not a JSON object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    let want: std::collections::BTreeSet<&str> = want.iter().copied().collect();
    let missing: Vec<_> = want.difference(&have).collect();
    let extra: Vec<_> = have.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: keys missing {missing:?}, keys extra {extra:?}"
    );
}
