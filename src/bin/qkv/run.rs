//! `qkv run`: seeded random inputs through one or more kernel variants, every run checked
//! against the f64 CPU reference, then timed (warm-up, then the median of repeats).

use crate::args::{
    dtype_help, kernel_help, parse_kernels, parse_weight_type, resolve_kernels, weight_type_help,
    ChunkArgs, KernelChoice,
};
use crate::args::{GpuArgs, ToleranceArgs};
use crate::exit::Failure;
use crate::stdout::outln;
use crate::text::{median_run, ms, print_checks, print_condition, progress, token_bar, Stages};
use clap::Args;
use qkv_wgpu::bench::CpuBaseline;
use qkv_wgpu::measure::{self, validate_then_time, CheckRows, MeasureOptions, Progress, XSource};
use qkv_wgpu::plan::check_fits;
use qkv_wgpu::projector::MAX_REPEATS;
use qkv_wgpu::quant::WeightType;
use qkv_wgpu::records::{AdapterRecord, CheckRecord, PeakRecord, PlanRecord, ShapeRecord};
use qkv_wgpu::{
    random_weights, ChunkPlan, ElementType, Kernel, KernelConfig, KernelSpec, KernelTimer,
    OutputLayout, Projector, QkvReport, QkvShape,
};
use serde::Serialize;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Rows of X (tokens in the batch)
    #[arg(long, default_value_t = 512)]
    tokens: u32,
    /// Columns of X; rows of Wq, Wk, Wv
    #[arg(long, default_value_t = 768)]
    d_model: u32,
    /// Columns of Wq (query heads x head_dim)
    #[arg(long, default_value_t = 768)]
    q_width: u32,
    /// Columns of Wk and Wv (key/value heads x head_dim; smaller than --q-width for
    /// grouped-query attention) [default: --q-width]
    #[arg(long)]
    kv_width: Option<u32>,
    /// Add a bias to each projection
    #[arg(long)]
    bias: bool,
    #[arg(long, default_value = "auto", value_parser = parse_kernels, help = kernel_help())]
    kernel: KernelChoice,
    #[arg(long, default_value = "f32", help = dtype_help())]
    dtype: ElementType,
    #[arg(long, value_parser = parse_weight_type, help = weight_type_help())]
    weight_type: Option<[WeightType; 3]>,
    /// Autotune again instead of using the cached choice (with --kernel auto)
    #[arg(long)]
    tune: bool,
    /// Seed for X and the weights (uniform in [-1, 1))
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Timed end-to-end runs per kernel after one untimed warm-up (every run is validated),
    /// and as many back-to-back kernel dispatches timed after them
    #[arg(long, default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=MAX_REPEATS as i64))]
    repeats: u32,
    #[command(flatten)]
    tolerance: ToleranceArgs,
    #[command(flatten)]
    chunking: ChunkArgs,
    /// Rows checked against the f64 reference in every run: `all`, or N rows spread over
    /// every chunk (each chunk's first and last row included) [default: all while they cost at
    /// most 20 GFLOP and 256 MiB kept, else a sample of up to 4096 within 256 MiB]
    #[arg(long, value_parser = measure::parse_check_rows)]
    check_rows: Option<CheckRows>,
    /// Print one JSON object per kernel (one line each) instead of text
    #[arg(long)]
    pub json: bool,
}

/// One kernel's results: what `--json` prints (the records flattened into one object).
#[derive(Debug, Serialize)]
struct KernelResult {
    #[serde(flatten)]
    adapter: AdapterRecord,
    kernel: &'static str,
    kernel_number: u32,
    /// The storage type of X, W and Q, K, V.
    dtype: ElementType,
    /// How Wq, Wk, Wv are stored on the GPU (`--weight-type`; the dtype without it).
    weight_type: String,
    /// Bytes of W on the GPU (as stored: the blocks' bytes for a block format).
    w_bytes: u64,
    config: String,
    config_reason: String,
    #[serde(flatten)]
    shape: ShapeRecord,
    seed: u64,
    repeats: u32,
    #[serde(flatten)]
    plan: PlanRecord,
    kernel_timer: KernelTimer,
    /// Built without runtime bounds checks (--unchecked, on a kernel proven in bounds).
    unchecked: bool,
    gpu_kernel_ms: f64,
    gpu_kernel_ms_min: f64,
    gpu_kernel_ms_max: f64,
    /// Untimed dispatches run back to back before the timed ones.
    kernel_warmups: u32,
    /// The kernels' time inside the end-to-end runs (median), after host work between runs.
    in_run_kernel_ms: f64,
    gpu_total_ms: f64,
    upload_ms: f64,
    dispatch_ms: f64,
    readback_ms: f64,
    input_ms: f64,
    transfers_ms: f64,
    hidden_ms: f64,
    /// Each stage's busy time in the run of median wall time, and the busiest.
    stages: Stages,
    tokens_per_s: f64,
    kernel_tokens_per_s: f64,
    weights_upload_ms: f64,
    cpu_ms: f64,
    cpu_tokens: u32,
    cpu_gflops: f64,
    cpu_threads: usize,
    speedup: f64,
    reference_ms: f64,
    checked_rows: usize,
    gflops: f64,
    gflop_per_run: f64,
    /// The kernel against this adapter's measured peak (`qkv peak`); null until one is
    /// cached.
    #[serde(flatten)]
    peak: PeakRecord,
    #[serde(flatten)]
    check: CheckRecord,
    /// What makes the kernel's timing untrustworthy, if anything (Measurement::noise).
    noisy: Option<String>,
    #[serde(skip)]
    report: Option<QkvReport>,
}

pub fn run(gpu: &GpuArgs, args: &RunArgs) -> Result<(), Failure> {
    let kv_width = args.kv_width.unwrap_or(args.q_width);
    let shape = QkvShape::new(args.tokens, args.d_model, args.q_width, kv_width, args.bias)?;
    let ctx = gpu.context()?;
    let limits = ctx.limits();
    // Fail on a shape the device cannot hold before spending time on tuning, inputs and the
    // reference; then plan each kernel once, before any work.
    let formats = args
        .weight_type
        .and_then(|t| WeightType::stored_formats(t, args.dtype));
    let fit = match formats {
        // W kept in blocks is one binding whichever kernel reads it.
        Some(f) => KernelSpec::try_from(Kernel::Decode)
            .and_then(|s| s.with_element(args.dtype))
            .and_then(|s| s.with_w_formats(f)),
        None => KernelSpec::try_from(Kernel::Naive).and_then(|s| s.with_element(args.dtype)),
    }
    .map_err(qkv_wgpu::Error::Input)?;
    check_fits(&limits, &shape, &fit)?;
    let check = args.check_rows.unwrap_or(CheckRows::default_for(&shape));
    qkv_wgpu::bench::check_room_for(&shape, args.dtype, check, ctx.is_cpu())?;
    let mut planned = Vec::new();
    let kinds = (args.dtype, formats);
    for (spec, why) in resolve_kernels(&ctx, &shape, &args.kernel, args.tune, kinds)? {
        let opts = args.chunking.options();
        let plan = ChunkPlan::new(&limits, &shape, &spec, OutputLayout::Tokens, &opts)?;
        planned.push((spec, plan, why));
    }

    progress(&format!("generating weights (seed {})", args.seed));
    let original = random_weights(&shape, args.seed);
    let quantized = match formats {
        Some(types) => {
            progress(&format!(
                "storing W as {} (llama.cpp's reference quantizers)",
                WeightType::parts_name(types)
            ));
            Some(original.stored_as(types)?)
        }
        None => None,
    };
    let weights = quantized.as_ref().unwrap_or(&original);
    progress("timing the CPU baseline (f32 GEMM)");
    let cpu = CpuBaseline::measure(&shape, args.seed, &original, args.repeats);
    let (peak, peak_notes) = qkv_wgpu::peak::cached(&ctx.summary, None);
    for n in &peak_notes {
        eprintln!("note: {n}");
    }
    if !args.json {
        print_header(&ctx.summary, &shape, args, check);
    }
    let mut all_pass = true;
    let runs = planned.len();
    for (spec, plan, why) in planned {
        let config = spec.config;
        let inputs = Inputs {
            peak: peak.as_ref(),
            shape: &shape,
            weights,
            quantized_from: quantized.is_some().then_some(&original),
            check,
            cpu: &cpu,
        };
        let (result, share) = measure_kernel(&ctx, args, spec, plan, why, inputs)?;
        all_pass &= result.check.pass;
        if args.json {
            outln!(
                "{}",
                serde_json::to_string(&result).expect("results serialize")
            );
        } else {
            print_text(&result, config, share.as_ref(), peak.is_some());
        }
    }
    if runs > 1 && !args.json {
        outln!(
            "\n{}",
            if all_pass {
                "PASS (all kernels)"
            } else {
                "FAIL (see above)"
            }
        );
    }
    if all_pass {
        Ok(())
    } else {
        Err(Failure::Validation)
    }
}

/// `--weight-type` as given, else the run's type.
fn weight_type_name(args: &RunArgs) -> String {
    args.weight_type
        .map_or(args.dtype.name().to_string(), WeightType::parts_name)
}

/// The lines before the kernels': adapter, shape, inputs, the check.
fn print_header(s: &qkv_wgpu::AdapterSummary, shape: &QkvShape, args: &RunArgs, check: CheckRows) {
    outln!("adapter   {}", AdapterRecord::of(s).line());
    outln!("shape     {shape}");
    outln!(
        "          {:.3} GFLOP per projection; inputs uniform in [-1, 1), seed {}; stored as {}{}",
        shape.flops() / 1e9,
        args.seed,
        args.dtype,
        if args.dtype.is_half() {
            " (rounded to nearest even; accumulated in f32; checked against the reference \
             of the rounded inputs)"
        } else {
            ""
        }
    );
    if let Some(types) = args.weight_type {
        outln!(
            "          W stored as {} (llama.cpp's reference quantizers; dequantized in the \
             kernel): checked against the reference of the quantized weights",
            WeightType::parts_name(types)
        );
    }
    // X is generated chunk by chunk, uniform in [-1, 1): 1 bounds its magnitude.
    print_condition(&args.tolerance.tolerance(shape.d_model, args.dtype));
    match check {
        CheckRows::All => outln!("          every row of every run is checked"),
        CheckRows::Sample(n) => outln!(
            "          about {n} rows of every run are checked, spread over every chunk \
             (its first and last rows included); --check-rows all checks every row"
        ),
    }
}

/// What every kernel of a run is measured on.
struct Inputs<'a> {
    peak: Option<&'a qkv_wgpu::peak::Peak>,
    shape: &'a QkvShape,
    weights: &'a qkv_wgpu::FusedWeights,
    /// The weights before `--weight-type` quantized them.
    quantized_from: Option<&'a qkv_wgpu::FusedWeights>,
    check: CheckRows,
    cpu: &'a CpuBaseline,
}

/// Measures one kernel ([`validate_then_time`]) with a bar over each run's tokens, and
/// makes its record.
fn measure_kernel(
    ctx: &qkv_wgpu::GpuContext,
    args: &RunArgs,
    spec: KernelSpec,
    plan: ChunkPlan,
    why: String,
    inputs: Inputs<'_>,
) -> Result<(KernelResult, Option<qkv_wgpu::peak::Share>), Failure> {
    let shape = inputs.shape;
    let (config, kernel) = (spec.config, spec.kernel());
    if spec.accumulates_in_f16() && !args.json {
        print_f16_accumulator(shape, &spec, args);
    }
    let mut projector = Projector::from_plan(ctx, spec, plan.clone())?;
    progress(&format!(
        "kernel {config}: 1 warm-up + {} timed runs, {} chunk(s) of {} tokens each",
        args.repeats,
        plan.chunks(),
        plan.chunk_tokens
    ));
    let weights_upload = projector.set_weights(inputs.weights)?;
    let opts = MeasureOptions {
        runs: args.repeats,
        kernel_repeats: args.repeats,
        check: inputs.check,
        tolerance: args.tolerance.overrides(),
        expected: None,
        precision_cost: true,
        quantized_from: inputs.quantized_from,
        stop_at_failure: false,
        cancel: None,
    };
    let m = measure_with_bar(&mut projector, inputs.weights, args, &opts)?;
    let (timer, warmups) = m
        .kernel
        .as_ref()
        .map_or((KernelTimer::Host, 0), |k| (k.timer, k.warmups));
    let (kernel_med, kernel_min, kernel_max) =
        m.kernel
            .as_ref()
            .map_or((f64::NAN, f64::NAN, f64::NAN), |k| {
                let (med, min, max) = k.spread();
                (ms(med), ms(min), ms(max))
            });
    let wall_ms = m.median_ms(|t| t.wall);
    let gflops = shape.gflops(kernel_med / 1e3);
    let share = inputs
        .peak
        .and_then(|p| p.share(projector.spec(), shape, gflops));
    let cpu = inputs.cpu;
    let result = KernelResult {
        adapter: AdapterRecord::of(&ctx.summary),
        kernel: kernel.name(),
        kernel_number: kernel.number(),
        dtype: args.dtype,
        weight_type: weight_type_name(args),
        w_bytes: inputs.weights.w_bytes(),
        config: config.to_string(),
        config_reason: why,
        shape: ShapeRecord::of(shape),
        seed: args.seed,
        repeats: args.repeats,
        plan: PlanRecord {
            chunk_reason: crate::args::flags(&plan.chunk_reason),
            ..PlanRecord::of(&plan, projector.streaming())
        },
        kernel_timer: timer,
        unchecked: ctx.runs_unchecked(projector.spec()),
        gpu_kernel_ms: kernel_med,
        gpu_kernel_ms_min: kernel_min,
        gpu_kernel_ms_max: kernel_max,
        kernel_warmups: warmups,
        in_run_kernel_ms: m.median_ms(|t| t.kernel),
        gpu_total_ms: wall_ms,
        upload_ms: m.median_ms(|t| t.upload),
        dispatch_ms: m.median_ms(|t| t.dispatch_wall),
        readback_ms: m.median_ms(|t| t.readback),
        input_ms: m.median_ms(|t| t.input),
        transfers_ms: m.median_ms(|t| t.transfers()),
        hidden_ms: m.median_ms(|t| t.hidden()),
        stages: Stages::of(median_run(&m.runs)),
        tokens_per_s: shape.tokens as f64 / (wall_ms / 1e3),
        kernel_tokens_per_s: shape.tokens as f64 / (kernel_med / 1e3),
        weights_upload_ms: ms(weights_upload),
        cpu_ms: cpu.ms,
        cpu_tokens: cpu.tokens,
        cpu_gflops: cpu.gflops,
        cpu_threads: qkv_wgpu::cpu::threads(),
        speedup: cpu.ms / kernel_med,
        reference_ms: ms(m.reference) / m.runs_checked() as f64,
        checked_rows: m.report.q.elements / shape.q_width as usize,
        gflops,
        gflop_per_run: shape.flops() / 1e9,
        peak: PeakRecord::of(share.as_ref()),
        check: CheckRecord::of(&m),
        noisy: m.noise(),
        report: Some(m.report.clone()),
    };
    Ok((result, share))
}

/// [`validate_then_time`] on seeded X, with a bar over each run's tokens (where a run has
/// several chunks and stderr is a terminal).
fn measure_with_bar(
    projector: &mut Projector<'_>,
    weights: &qkv_wgpu::FusedWeights,
    args: &RunArgs,
    opts: &MeasureOptions<'_>,
) -> Result<qkv_wgpu::measure::Measurement, Failure> {
    let (tokens, chunks) = (projector.shape().tokens, projector.plan().chunks());
    let config = projector.config();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let m = validate_then_time(
        projector,
        weights,
        XSource::Seeded(args.seed),
        opts,
        |p| match p {
            Progress::Run { .. } => {
                bar.replace(token_bar(tokens, chunks, !args.json))
                    .inspect(|b| b.finish_and_clear());
            }
            Progress::Tokens(done) => {
                if let Some(b) = &bar {
                    b.set_position(done as u64)
                }
            }
            Progress::Checking => {}
            Progress::TimingKernel => {
                bar.take().inspect(|b| b.finish_and_clear());
                progress(&format!("kernel {config}: timing back-to-back dispatches"));
            }
        },
    )?;
    if let Some(b) = bar.take() {
        b.finish_and_clear();
    }
    Ok(m)
}

/// The check's condition for a kernel that accumulates in f16, and what it means here.
fn print_f16_accumulator(shape: &QkvShape, spec: &KernelSpec, args: &RunArgs) {
    let tol = measure::tolerance(shape.d_model, spec, &args.tolerance.overrides());
    print_condition(&tol);
    outln!(
        "          an f16 accumulator: the bound is about 2^13 times the f32 one's, plus \
         n·2^-25 (Tolerance::for_f16_accumulator){}",
        if tol.terms * shape.d_model as f64 > 1.0 {
            "; at this d_model it exceeds an average term, so a single missed term may pass"
        } else {
            ""
        }
    );
}

fn print_text(
    r: &KernelResult,
    config: KernelConfig,
    share: Option<&qkv_wgpu::peak::Share>,
    peaked: bool,
) {
    let kernel: Kernel = config.kernel;
    let timer = match r.kernel_timer {
        KernelTimer::GpuTimestamp => "GPU timestamps",
        KernelTimer::Host => "host clock: no timestamp queries on this adapter",
    };
    outln!(
        "\nkernel    {} ({}): {}",
        config,
        kernel.number(),
        kernel.description()
    );
    outln!("  chosen       {}", r.config_reason);
    if r.unchecked {
        outln!(
            "  built        without runtime bounds checks (--unchecked; every access proven in \
             bounds by the plan)"
        );
    }
    outln!(
        "  GPU kernel   {:>10.3} ms  median of {} back-to-back after {} warm-ups (min {:.3}, max \
         {:.3}; {timer})  {:.2} GFLOP/s",
        r.gpu_kernel_ms,
        r.repeats,
        r.kernel_warmups,
        r.gpu_kernel_ms_min,
        r.gpu_kernel_ms_max,
        r.gflops
    );
    if let Some(why) = &r.noisy {
        outln!("  timing       {why}");
    }
    match share {
        Some(s) if r.gflops.is_finite() => outln!("  of the peak  {s} (qkv peak)"),
        Some(_) => {}
        None if peaked => outln!(
            "  of the peak  unknown: this kernel's arithmetic was not measured (qkv peak \
             --refresh)"
        ),
        None => outln!(
            "  of the peak  unknown: `qkv peak` measures this GPU's peak once (seconds), then \
             every run shows its share"
        ),
    }
    outln!(
        "  in the runs  {:>10.3} ms  the same kernels timed inside the end-to-end runs (median)",
        r.in_run_kernel_ms
    );
    print_run_lines(r);
}

/// A kernel's lines after its kernel time: chunks, end to end, transfers, stages, CPU,
/// reference, the check, the precision cost.
fn print_run_lines(r: &KernelResult) {
    if r.plan.chunks > 1 {
        let line = r.plan.line();
        match line.strip_suffix("one after another") {
            Some(l) => outln!("  chunks       {l}one after another (--no-stream)"),
            None => outln!("  chunks       {line}"),
        }
    }
    outln!(
        "  end-to-end   {:>10.3} ms  {:.0} tokens/s (kernel alone: {:.0} tokens/s); weights uploaded \
         once: {:.3} ms",
        r.gpu_total_ms, r.tokens_per_s, r.kernel_tokens_per_s, r.weights_upload_ms
    );
    outln!(
        "  transfers    {:>10.3} ms  generate X {:.3} + upload X {:.3} + read back Q,K,V \
         {:.3}; {:.3} ms of it ({:.0}%) hidden behind kernels",
        r.transfers_ms,
        r.input_ms,
        r.upload_ms,
        r.readback_ms,
        r.hidden_ms,
        100.0 * r.hidden_ms / r.transfers_ms.max(1e-9)
    );
    outln!("  stages       {}", r.stages.line());
    outln!(
        "  CPU          {:>10.3} ms  f32 GEMM, matrixmultiply on {} threads, median of {}  {:.2} \
         GFLOP/s{}; GPU kernel speed-up {:.2}x",
        r.cpu_ms,
        r.cpu_threads,
        r.repeats,
        r.cpu_gflops,
        if r.cpu_tokens < r.shape.tokens {
            format!(" (measured on the first {} tokens, scaled)", r.cpu_tokens)
        } else {
            String::new()
        },
        r.speedup
    );
    outln!(
        "  reference    {:>10.3} ms  f64 accumulation over the {} checked rows: the accuracy \
         oracle, not a speed baseline",
        r.reference_ms,
        r.checked_rows
    );
    if let Some(report) = &r.report {
        print_checks(report);
    }
    let c = &r.check;
    if let (Some(abs), Some(rel), Some(l2)) = (
        c.precision_max_abs_err,
        c.precision_max_rel_err,
        c.precision_rel_l2_err,
    ) {
        outln!(
            "  precision    storing in {} moved Q, K, V from the reference of the unrounded f32 \
             inputs by max abs {abs:.3e}, max rel {rel:.3e}, rel L2 {l2:.3e} (a cost, not a check)",
            r.dtype
        );
    }
    if let (Some(abs), Some(rel), Some(l2)) = (
        c.quantization_max_abs_err,
        c.quantization_max_rel_err,
        c.quantization_rel_l2_err,
    ) {
        outln!(
            "  quantization W as {} ({:.1} MB) moved Q, K, V from the reference of the weights \
             before by max abs {abs:.3e}, max rel {rel:.3e}, rel L2 {l2:.3e} (a cost, not a check)",
            r.weight_type,
            r.w_bytes as f64 / 1e6
        );
    }
}
