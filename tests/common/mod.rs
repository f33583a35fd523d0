//! Helpers shared by the GPU test files: one context per test binary, and a projection
//! checked end to end against the CPU reference.
#![allow(dead_code)] // each test binary uses a different subset

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
