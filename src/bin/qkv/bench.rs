//! `qkv bench`: named model shapes (or a custom one) over a sweep of token counts, every
//! configuration validated before it is timed, against the fast CPU baseline; a table, JSON,
//! CSV and an SVG plot of GFLOP/s against tokens.

use crate::args::{dtype_help, kernel_help, parse_kernels, Narrator};
use crate::args::{ChunkArgs, GpuArgs, KernelChoice};
use crate::exit::Failure;
use crate::stdout::outln;
use crate::text::token_bar;
use clap::Args;
use qkv_wgpu::bench::{BenchOptions, BenchRow, Sweep, SweepEvent, SweepShapes};
use qkv_wgpu::measure::{self, CheckRows, Progress};
use qkv_wgpu::records::AdapterRecord;
use qkv_wgpu::{ChunkPlan, ElementType, Error, GpuContext, OutputLayout};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Named shapes, comma-separated, or `all`: gpt2, bert-base, vit-b16, llama3-8b
    #[arg(long, default_value = "gpt2", conflicts_with = "d_model")]
    shape: String,
    /// A custom shape instead of a named one (with --q-width; --kv-width defaults to it)
    #[arg(long, requires = "q_width")]
    d_model: Option<u32>,
    /// Q width of the custom shape
    #[arg(long, requires = "d_model")]
    q_width: Option<u32>,
    /// K/V width of the custom shape [default: --q-width]
    #[arg(long, requires = "d_model")]
    kv_width: Option<u32>,
    /// Add a bias (custom shape; named shapes follow their model)
    #[arg(long, requires = "d_model")]
    bias: bool,
    /// Token counts, comma-separated [default: powers of two from 64 to --max-tokens;
    /// for vit-b16, 197 per image times powers of two]
    #[arg(long, value_delimiter = ',')]
    tokens: Vec<u32>,
    /// Largest token count of the default sweep
    #[arg(long, default_value_t = 1024)]
    max_tokens: u32,
    #[arg(long, default_value = "auto", value_parser = parse_kernels, help = kernel_help())]
    kernel: KernelChoice,
    /// Storage types to run, comma-separated (each shape in each type; see `qkv run --help`
    /// for what they mean): f32, f16, bf16
    #[arg(long, default_value = "f32", value_delimiter = ',', long_help = format!(
        "Storage types to run, comma-separated: each shape in each type. {}", dtype_help()))]
    dtype: Vec<ElementType>,
    #[arg(long, value_parser = crate::args::parse_weight_type,
          help = crate::args::weight_type_help())]
    weight_type: Option<[qkv_wgpu::quant::WeightType; 3]>,
    /// Autotune again instead of using the cached choice (with --kernel auto)
    #[arg(long)]
    tune: bool,
    /// Timed end-to-end runs per configuration after one validated warm-up, and as many
    /// back-to-back kernel dispatches; medians are reported
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeats: u32,
    /// Skip the CPU baseline
    #[arg(long)]
    no_cpu: bool,
    /// Seed for X and the weights
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print a JSON array of rows instead of the table
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV instead of the table
    #[arg(long)]
    csv: bool,
    /// Also draw GFLOP/s against tokens, per kernel and for the CPU, into this SVG file
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Overwrite the --plot file if it exists
    #[arg(long, requires = "plot")]
    force: bool,
    #[command(flatten)]
    chunking: ChunkArgs,
    /// Rows of each run checked against the f64 reference: `all`, or N spread over every
    /// chunk [default: all while they cost at most 20 GFLOP and 256 MiB kept, else a sample of
    /// up to 4096 within 256 MiB]
    #[arg(long, value_parser = measure::parse_check_rows)]
    check_rows: Option<CheckRows>,
}

/// The sweep's shapes: the custom one, or the named ones (`all`: every one).
fn shapes(args: &BenchArgs) -> SweepShapes {
    match (args.d_model, args.q_width) {
        (Some(d_model), Some(q_width)) => SweepShapes::Custom {
            d_model,
            q_width,
            kv_width: args.kv_width.unwrap_or(q_width),
            bias: args.bias,
        },
        _ => SweepShapes::Named(args.shape.split(',').map(str::to_string).collect()),
    }
}

pub fn bench(gpu: &GpuArgs, args: &BenchArgs) -> Result<(), Failure> {
    // Refused now rather than after the sweep; checked again when the plot is written.
    if let Some(path) = &args.plot {
        check_plot_path(path, args.force)?;
    }
    let ctx = gpu.context()?;
    let (peak, notes) = qkv_wgpu::peak::cached(&ctx.summary, None);
    let sweep = Sweep {
        shapes: shapes(args),
        tokens: args.tokens.clone(),
        max_tokens: args.max_tokens,
        dtypes: args.dtype.clone(),
        weight_type: args.weight_type,
        kernels: args.kernel.clone(),
        force_tune: args.tune,
        seed: args.seed,
        cpu: !args.no_cpu,
        peak: peak.as_ref(),
        options: BenchOptions {
            repeats: args.repeats,
            check: args.check_rows,
            chunking: args.chunking.options(),
        },
    };
    let mut watch = Watch::new(&ctx, args, notes);
    let rows = qkv_wgpu::bench::sweep(&ctx, &sweep, |e| watch.on(e));
    watch.done_with_tokens();
    watch.bar.finish_and_clear();
    let rows = rows?;
    print_rows(&ctx, args, &rows, peak.is_some())?;
    if rows.iter().all(|r| r.pass) {
        Ok(())
    } else {
        Err(Failure::Validation)
    }
}

/// What the CLI shows of a sweep as it runs: the sweep's bar, and under it a bar over the
/// tokens of each run that has several chunks; the kernels' resolution; each failure.
struct Watch<'a> {
    ctx: &'a GpuContext,
    args: &'a BenchArgs,
    /// The peak cache's notes, said once the sweep is planned.
    notes: Vec<String>,
    say: Narrator<'a>,
    bars: indicatif::MultiProgress,
    bar: indicatif::ProgressBar,
    tokens_bar: Option<indicatif::ProgressBar>,
    /// The row being measured: its configuration, tokens and chunks.
    row: (String, u32, u32),
}

impl<'a> Watch<'a> {
    fn new(ctx: &'a GpuContext, args: &'a BenchArgs, notes: Vec<String>) -> Self {
        Self {
            ctx,
            args,
            notes,
            say: Narrator::new(ctx, args.tune),
            bars: indicatif::MultiProgress::new(),
            bar: indicatif::ProgressBar::hidden(),
            tokens_bar: None,
            row: (String::new(), 0, 1),
        }
    }

    fn on(&mut self, event: SweepEvent<'_>) -> Result<(), Error> {
        let show = !self.args.json && !self.args.csv;
        match event {
            SweepEvent::Planned(shapes) => {
                self.bar = self
                    .bars
                    .add(indicatif::ProgressBar::new(shapes.len() as u64));
                self.bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {pos}/{len} shapes, {elapsed} elapsed, ~{eta} left  {msg}",
                    )
                    .expect("valid template"),
                );
                if show {
                    eprintln!("adapter: {}", AdapterRecord::of(&self.ctx.summary).line());
                }
                for n in &self.notes {
                    eprintln!("note: {n}");
                }
            }
            SweepEvent::Shape(name, shape) => {
                self.bar
                    .set_message(format!("{name} x {} tokens", shape.tokens));
            }
            SweepEvent::Choosing(..) => self.say.choosing(&self.args.kernel),
            SweepEvent::Tuning(shape, element, step) => self.say.step(shape, element, step),
            SweepEvent::Resolved(r) => self.say.resolved(r),
            SweepEvent::Row(job, spec) => {
                let opts = self.args.chunking.options();
                let plan = ChunkPlan::new(
                    &self.ctx.limits(),
                    job.shape,
                    spec,
                    OutputLayout::Tokens,
                    &opts,
                )?;
                self.row = (spec.config.to_string(), job.shape.tokens, plan.chunks());
            }
            SweepEvent::Progress(p) => self.progress(p, show),
            SweepEvent::Measured(job, row, m) => {
                self.done_with_tokens();
                if !m.pass() {
                    self.bar.suspend(|| {
                        eprintln!(
                            "FAIL: {} in {} on {} x {} tokens:",
                            self.row.0, row.dtype, job.name, job.shape.tokens
                        );
                        for p in m.report.parts() {
                            eprintln!("  {p}");
                        }
                    });
                }
            }
            SweepEvent::ShapeDone => self.bar.inc(1),
        }
        Ok(())
    }

    /// A row's measurement going on: a bar over each run's tokens.
    fn progress(&mut self, p: Progress, show: bool) {
        match p {
            Progress::Run { .. } => {
                self.done_with_tokens();
                let bar = token_bar(self.row.1, self.row.2, show);
                self.tokens_bar = Some(self.bars.add(bar));
            }
            Progress::Tokens(n) => {
                if let Some(b) = &self.tokens_bar {
                    b.set_position(n as u64)
                }
            }
            Progress::Checking | Progress::TimingKernel => self.done_with_tokens(),
        }
    }

    fn done_with_tokens(&mut self) {
        if let Some(b) = self.tokens_bar.take() {
            b.finish_and_clear();
            self.bars.remove(&b);
        }
    }
}

/// The sweep's rows as JSON, CSV or a table, and its plot.
fn print_rows(
    ctx: &qkv_wgpu::GpuContext,
    args: &BenchArgs,
    rows: &[BenchRow],
    peaked: bool,
) -> Result<(), Failure> {
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        );
    } else if args.csv {
        let mut out = csv::Writer::from_writer(crate::stdout::Stdout);
        for r in rows {
            out.serialize(r)
                .map_err(|e| Error::Input(format!("writing CSV: {e}")))?;
        }
        // Standard output's own failures are reported by crate::stdout at the end.
        let _ = out.flush();
    } else {
        print_table(rows, peaked);
    }
    if let Some(path) = &args.plot {
        let auto = matches!(args.kernel, KernelChoice::Auto);
        crate::plot::plot(
            path,
            &rows_for_plot(rows, auto),
            &ctx.summary.name,
            args.force,
        )?;
        if !args.json && !args.csv {
            outln!("plot: {}", path.display());
        }
    }
    Ok(())
}

/// Whether the plot can be written where asked, before any sweep (issue #22, item 12: a
/// missing directory was found after the whole sweep): not over a device, FIFO, directory
/// or symlink, not over an existing file without --force, into a directory that exists and
/// takes a new file.
fn check_plot_path(path: &std::path::Path, force: bool) -> Result<(), Error> {
    qkv_wgpu::io::commit::not_special(path)?;
    if !force && path.exists() {
        return Err(Error::Input(format!(
            "--plot {} already exists; pass --force to overwrite it",
            path.display()
        )));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        return Err(Error::Input(format!(
            "--plot {}: the directory {} does not exist (nothing was run)",
            path.display(),
            dir.display()
        )));
    }
    tempfile::Builder::new()
        .prefix(".qkv-plot-probe")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| {
            Error::io(
                format!(
                    "cannot write into {} for --plot {} (nothing was run)",
                    dir.display(),
                    path.display()
                ),
                e,
            )
        })
}

/// Plot points: one line per shape and configuration, or with `auto` one line per shape for
/// whatever the tuner chose at each size (it may pick different workgroup sizes).
fn rows_for_plot(rows: &[BenchRow], auto: bool) -> Vec<crate::plot::Point> {
    let mut points = Vec::new();
    for r in rows {
        points.push(crate::plot::Point {
            series: if auto {
                format!("{} {} GPU (autotuned)", r.shape, r.dtype)
            } else {
                format!("{} {} {}", r.shape, r.dtype, r.kernel)
            },
            tokens: r.tokens,
            gflops: r.gpu_gflops,
        });
        if let Some(c) = r.cpu_gflops {
            points.push(crate::plot::Point {
                series: format!("{} CPU f32 GEMM", r.shape),
                tokens: r.tokens,
                gflops: c,
            });
        }
    }
    points
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// The row's type: the run's, with W's after a slash where W is stored otherwise
/// (`f32/q4_0`).
fn type_cell(r: &BenchRow) -> String {
    if r.weight_type == r.dtype.name() {
        r.dtype.name().to_string()
    } else {
        format!("{}/{}", r.dtype.name(), r.weight_type)
    }
}

pub fn print_table(rows: &[BenchRow], peaked: bool) {
    let tw = rows
        .iter()
        .map(|r| type_cell(r).len())
        .max()
        .unwrap_or(0)
        .max(5);
    let width = rows
        .iter()
        .map(|r| r.kernel.len())
        .max()
        .unwrap_or(0)
        .max(6);
    outln!(
        "{:<10} {:>7} {:<tw$} {:<width$} {:>11} {:>9} {:>6} {:>6} {:>11} {:>10} {:>9} {:>8} {:>9} {:>5}",
        "shape",
        "tokens",
        "dtype",
        "kernel",
        "kernel ms",
        "GFLOP/s",
        "peak%",
        "roof%",
        "e2e ms",
        "CPU ms",
        "CPU GF/s",
        "GPU/CPU",
        "max err",
        "check"
    );
    // A share past 100% is no figure: the timing or the cached peak is wrong.
    let pct = |v: Option<f64>, impossible: Option<bool>| match (v, impossible) {
        (Some(_), Some(true)) => "!>100".to_string(),
        (Some(v), _) => format!("{:.1}", 100.0 * v),
        (None, _) => "-".into(),
    };
    for r in rows {
        outln!(
            "{:<10} {:>7} {:<tw$} {:<width$} {:>11.3} {:>9.2} {:>6} {:>6} {:>11.3} {:>10} {:>9} {:>8} {:>9.2e} {:>5}",
            r.shape,
            r.tokens,
            type_cell(r),
            r.kernel,
            r.kernel_ms,
            r.gpu_gflops,
            pct(r.peak_share, r.share_impossible),
            pct(r.roofline_share, r.share_impossible),
            r.end_to_end_ms,
            opt(r.cpu_ms, 3),
            opt(r.cpu_gflops, 2),
            opt(r.speedup, 3),
            r.max_abs_err,
            if r.pass { "PASS" } else { "FAIL" }
        );
    }
    for r in rows {
        if let Some(why) = &r.noisy {
            outln!(
                "note: {}, {} tokens, {}: timing {why}",
                r.shape,
                r.tokens,
                r.kernel
            );
        }
        if r.share_impossible == Some(true) {
            outln!(
                "note: {}, {} tokens, {}: !>100: faster than the measured peak or the roofline, which \
                 no kernel is: the timing or the cached peak is wrong (`qkv peak --refresh`)",
                r.shape,
                r.tokens,
                r.kernel
            );
        }
    }
    outln!(
        "kernel ms: median of back-to-back dispatches after warm-ups, GPU timestamps where the \
         adapter has them; peak%: GFLOP/s over this GPU's measured peak for the kernel's \
         arithmetic (f32 FMA, or its cooperative matrices), roof%: over the lower of that and \
         bandwidth x the shape's flops per byte ({}); e2e: upload X + \
         dispatch + read Q,K,V back; CPU: f32 GEMM (matrixmultiply, {} threads; past 16384 tokens timed on the first 16384 and \
         scaled); GPU/CPU: CPU \
         ms / kernel ms; GFLOP/s = 2·tokens·d_model·n_out (+ bias adds) / time",
        if peaked {
            "qkv peak"
        } else {
            "run `qkv peak` once to fill them in"
        },
        qkv_wgpu::cpu::threads()
    );
}
