//! `qkv run`: seeded random inputs through one or more kernel variants, every run checked
//! against the f64 CPU reference, then timed (warm-up, then the median of repeats).

use crate::report::{ms, print_checks, print_condition, progress, spread, tolerance};
use crate::{Failure, GpuArgs};
use clap::Args;
use qkv_wgpu::{
    random_inputs, reference, Kernel, KernelConfig, KernelTimer, Projector, QkvReport, QkvShape,
};
use serde::Serialize;
use std::time::{Duration, Instant};

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
    /// `auto` (the configuration autotuned for this adapter and shape class), or kernel
    /// variants by name or number, comma-separated, or `all`; each may carry tuning
    /// parameters, e.g. `direct(wg=32)` (0 naive: one output per invocation; 1 tiled: 16x16
    /// workgroup-memory tiles; 2 regtile: 4x4 per invocation over tiles; 3 direct: 8x4
    /// outputs per invocation, no barriers; 4 subgroup: direct with X shared by subgroup
    /// broadcasts; 5 texture: 16x4 per invocation, X and W read through textures;
    /// 6 subgroup-texture: texture with X shared by subgroup broadcasts)
    #[arg(long, default_value = "auto", value_parser = parse_kernels)]
    kernel: KernelList,
    /// Autotune again instead of using the cached choice (with --kernel auto)
    #[arg(long)]
    tune: bool,
    /// Seed for X and the weights (uniform in [-1, 1))
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Timed runs per kernel after one untimed warm-up; every run is validated
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    repeats: u32,
    #[command(flatten)]
    tolerance: crate::report::ToleranceArgs,
    /// Print one JSON object per kernel (one line each) instead of text
    #[arg(long)]
    json: bool,
}

/// What `--kernel` asked for.
#[derive(Debug, Clone)]
pub enum KernelList {
    /// The autotuned configuration.
    Auto,
    /// Exactly these; `all` means every variant this adapter can run.
    Given {
        configs: Vec<KernelConfig>,
        all: bool,
    },
}

pub fn parse_kernels(s: &str) -> Result<KernelList, String> {
    match s.trim() {
        "auto" => Ok(KernelList::Auto),
        other => Kernel::parse_list(other).map(|configs| KernelList::Given {
            configs,
            all: other == "all",
        }),
    }
}

/// The configurations to run, each with why it was chosen.
pub fn resolve_kernels(
    ctx: &qkv_wgpu::GpuContext,
    shape: &QkvShape,
    list: &KernelList,
    force_tune: bool,
) -> Result<Vec<(KernelConfig, String)>, qkv_wgpu::Error> {
    match list {
        KernelList::Auto => {
            progress("choosing a kernel configuration (autotuning on first use)");
            let choice = qkv_wgpu::tune::choose(
                ctx,
                shape,
                &qkv_wgpu::tune::TuneOptions {
                    force: force_tune,
                    ..Default::default()
                },
            )?;
            Ok(vec![(choice.config, choice.reason)])
        }
        KernelList::Given { configs, all } => {
            let mut out = Vec::new();
            for &c in configs {
                match c.unsupported_on(&ctx.summary) {
                    Some(why) if *all => eprintln!("skipping {c}: {why}"),
                    Some(why) => return Err(qkv_wgpu::Error::Input(why)),
                    None => out.push((c, "named with --kernel".to_string())),
                }
            }
            Ok(out)
        }
    }
}

/// One kernel's results: what `--json` prints.
#[derive(Debug, Serialize)]
struct KernelResult {
    adapter: String,
    backend: String,
    device_type: String,
    kernel: &'static str,
    kernel_number: u32,
    config: String,
    config_reason: String,
    tokens: u32,
    d_model: u32,
    q_width: u32,
    kv_width: u32,
    bias: bool,
    seed: u64,
    repeats: u32,
    kernel_timer: KernelTimer,
    gpu_kernel_ms: f64,
    gpu_kernel_ms_min: f64,
    gpu_kernel_ms_max: f64,
    gpu_total_ms: f64,
    upload_ms: f64,
    dispatch_ms: f64,
    readback_ms: f64,
    weights_upload_ms: f64,
    cpu_ms: f64,
    cpu_gflops: f64,
    cpu_threads: usize,
    speedup: f64,
    reference_ms: f64,
    gflops: f64,
    gflop_per_run: f64,
    max_abs_err: f64,
    max_rel_err: f64,
    rel_l2_err: f64,
    atol: f64,
    rtol: f64,
    pass: bool,
    #[serde(skip)]
    report: Option<QkvReport>,
}

/// Median time of the fast CPU baseline over `repeats` runs after one warm-up, in ms.
fn time_cpu_baseline(
    shape: &QkvShape,
    x: &[f32],
    weights: &qkv_wgpu::FusedWeights,
    repeats: u32,
) -> f64 {
    let mut out = vec![0f32; shape.tokens as usize * shape.n_out() as usize];
    qkv_wgpu::cpu::fused_gemm(shape, x, weights, &mut out);
    let times = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            qkv_wgpu::cpu::fused_gemm(shape, x, weights, &mut out);
            ms(start.elapsed())
        })
        .collect();
    spread(times).0
}

pub fn run(gpu: &GpuArgs, args: &RunArgs) -> Result<(), Failure> {
    let kv_width = args.kv_width.unwrap_or(args.q_width);
    let shape = QkvShape::new(args.tokens, args.d_model, args.q_width, kv_width, args.bias)?;
    let ctx = gpu.context()?;
    // Fail on a shape the device cannot hold before spending time on inputs and the reference.
    qkv_wgpu::projector::check_fits(&ctx, &shape, Kernel::Naive)?;
    let configs = resolve_kernels(&ctx, &shape, &args.kernel, args.tune)?;
    for (config, _) in &configs {
        qkv_wgpu::projector::check_fits(&ctx, &shape, *config)?;
    }

    progress(&format!("generating inputs (seed {})", args.seed));
    let (x, weights) = random_inputs(&shape, args.seed);
    let tol = tolerance(shape.d_model, &x, &weights, args.tolerance)?;
    progress("computing the CPU reference (f64)");
    let start = Instant::now();
    let expected = reference(&shape, &x, &weights);
    let reference_time = start.elapsed();
    progress("timing the CPU baseline (f32 GEMM)");
    let cpu_ms = time_cpu_baseline(&shape, &x, &weights, args.repeats);

    let s = &ctx.summary;
    if !args.json {
        println!("adapter   {} ({}, {})", s.name, s.backend, s.device_type);
        println!("shape     {shape}");
        println!(
            "          {:.3} GFLOP per projection; inputs uniform in [-1, 1), seed {}",
            shape.flops() / 1e9,
            args.seed
        );
        print_condition(&tol);
    }

    let mut all_pass = true;
    for (config, why) in &configs {
        let (config, kernel) = (*config, config.kernel);
        progress(&format!(
            "kernel {kernel}: 1 warm-up + {} timed runs",
            args.repeats
        ));
        let mut projector = Projector::new(&ctx, shape, config)?;
        let weights_upload = projector.set_weights(&weights)?;
        let mut kernel_ms = Vec::new();
        let mut parts = Vec::new();
        let mut timer = KernelTimer::Host;
        let mut worst: Option<QkvReport> = None;
        for i in 0..=args.repeats {
            let out = projector.run(&x)?;
            let report = QkvReport::of(&out, &expected, &shape, tol);
            let keep = match &worst {
                None => true,
                Some(w) => w.pass() && !report.pass(),
            };
            if keep {
                worst = Some(report);
            }
            if i > 0 {
                let t = out.timings;
                timer = t.kernel_timer;
                kernel_ms.push(ms(t.kernel));
                parts.push(t);
            }
        }
        let report = worst.expect("at least one run");
        let (kernel_med, kernel_min, kernel_max) = spread(kernel_ms);
        let median_of = |f: &dyn Fn(&qkv_wgpu::RunTimings) -> Duration| {
            spread(parts.iter().map(|t| ms(f(t))).collect()).0
        };
        let result = KernelResult {
            adapter: s.name.clone(),
            backend: s.backend.clone(),
            device_type: s.device_type.clone(),
            kernel: kernel.name(),
            kernel_number: kernel.number(),
            config: config.to_string(),
            config_reason: why.clone(),
            tokens: shape.tokens,
            d_model: shape.d_model,
            q_width: shape.q_width,
            kv_width: shape.kv_width,
            bias: shape.bias,
            seed: args.seed,
            repeats: args.repeats,
            kernel_timer: timer,
            gpu_kernel_ms: kernel_med,
            gpu_kernel_ms_min: kernel_min,
            gpu_kernel_ms_max: kernel_max,
            gpu_total_ms: median_of(&|t| t.total()),
            upload_ms: median_of(&|t| t.upload),
            dispatch_ms: median_of(&|t| t.dispatch_wall),
            readback_ms: median_of(&|t| t.readback),
            weights_upload_ms: ms(weights_upload),
            cpu_ms,
            cpu_gflops: shape.gflops(cpu_ms / 1e3),
            cpu_threads: qkv_wgpu::cpu::threads(),
            speedup: cpu_ms / kernel_med,
            reference_ms: ms(reference_time),
            gflops: shape.gflops(kernel_med / 1e3),
            gflop_per_run: shape.flops() / 1e9,
            max_abs_err: report.max_abs_err(),
            max_rel_err: report.max_rel_err(),
            rel_l2_err: report.rel_l2_err(),
            atol: tol.atol,
            rtol: tol.rtol,
            pass: report.pass(),
            report: Some(report),
        };
        all_pass &= result.pass;
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&result).expect("results serialize")
            );
        } else {
            print_text(&result, config);
        }
    }
    if configs.len() > 1 && !args.json {
        println!(
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

fn print_text(r: &KernelResult, config: KernelConfig) {
    let kernel: Kernel = config.kernel;
    let timer = match r.kernel_timer {
        KernelTimer::GpuTimestamp => "GPU timestamps",
        KernelTimer::Host => "host clock: no timestamp queries on this adapter",
    };
    println!(
        "\nkernel    {} ({}): {}",
        config,
        kernel.number(),
        kernel.description()
    );
    println!("  chosen       {}", r.config_reason);
    println!(
        "  GPU kernel   {:>10.3} ms  median of {} (min {:.3}, max {:.3}; {timer})  {:.2} GFLOP/s",
        r.gpu_kernel_ms, r.repeats, r.gpu_kernel_ms_min, r.gpu_kernel_ms_max, r.gflops
    );
    println!(
        "  end-to-end   {:>10.3} ms  upload X {:.3} + dispatch {:.3} + readback Q,K,V {:.3} \
         (weights uploaded once: {:.3} ms)",
        r.gpu_total_ms, r.upload_ms, r.dispatch_ms, r.readback_ms, r.weights_upload_ms
    );
    println!(
        "  CPU          {:>10.3} ms  f32 GEMM, matrixmultiply on {} threads, median of {}  {:.2} \
         GFLOP/s; GPU kernel speed-up {:.2}x",
        r.cpu_ms, r.cpu_threads, r.repeats, r.cpu_gflops, r.speedup
    );
    println!(
        "  reference    {:>10.3} ms  f64 accumulation: the accuracy oracle, not a speed baseline",
        r.reference_ms
    );
    if let Some(report) = &r.report {
        print_checks(report);
    }
}
