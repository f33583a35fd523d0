//! `qkv bench`'s sweep ([`sweep`]: named or custom shapes at token counts, in storage types,
//! with named or autotuned kernels) and its rows: a kernel configuration on one shape, checked
//! then timed ([`validate_then_time`] on seeded X), beside the fast CPU baseline
//! ([`CpuBaseline`]) and its share of the measured peak. The CLI prints these rows as its
//! table, JSON and CSV; the Python module's `bench` returns the same rows as dicts. Both run
//! the one sweep.

use crate::context::GpuContext;
use crate::element::ElementType;
use crate::error::{Error, Result};
use crate::kernels::{Kernel, KernelSpec};
use crate::layout::OutputLayout;
use crate::measure::{
    validate_then_time, CheckRows, MeasureOptions, Measurement, Progress, XSource,
};
use crate::peak::Peak;
use crate::plan::{check_fits, ChunkOptions, ChunkPlan};
use crate::presets::{preset, token_sweep, Preset, PRESETS};
use crate::projector::{spread, Projector};
use crate::quant::WeightType;
use crate::shape::QkvShape;
use crate::tune::{resolve, KernelChoice, Resolved, TuneOptions};
use crate::weights::{random_weights, random_x_rows, FusedWeights};
use serde::Serialize;
use std::time::Duration;
use web_time::Instant;

/// The most tokens the CPU baseline runs on (it holds X and Q, K, V in memory); its time is
/// scaled to the batch past them.
pub const CPU_MAX_TOKENS: u32 = 16384;

/// One measured configuration: a row of `qkv bench`'s table, JSON and CSV (these field names
/// are its JSON keys).
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// The named shape ("gpt2", ...) or "custom".
    pub shape: String,
    /// Tokens of the batch.
    pub tokens: u32,
    /// Columns of X.
    pub d_model: u32,
    /// Columns of Q.
    pub q_width: u32,
    /// Columns of K and of V.
    pub kv_width: u32,
    /// Whether the projection adds a bias.
    pub bias: bool,
    /// The storage type of X, W and Q, K, V.
    pub dtype: ElementType,
    /// How Wq, Wk, Wv are held on the GPU: the run's type, or `--weight-type`'s (one name, or
    /// three for Q, K, V where they differ).
    pub weight_type: String,
    /// Bytes of W on the GPU (a block format's blocks as stored): what the roofline counts.
    pub w_bytes: u64,
    /// The configuration measured.
    pub kernel: String,
    /// "GpuTimestamp" or "Host"; empty where the kernel was not timed (a failed check).
    pub kernel_timer: String,
    /// Built without runtime bounds checks (a kernel proven in bounds, where asked).
    pub unchecked: bool,
    /// Median of back-to-back dispatches after warm-ups (NaN where the check failed).
    pub kernel_ms: f64,
    /// GFLOP/s of that median.
    pub gpu_gflops: f64,
    /// Median of the timed end-to-end runs: upload X, dispatch, read Q, K, V back.
    pub end_to_end_ms: f64,
    /// The CPU baseline's time for the batch, where it ran.
    pub cpu_ms: Option<f64>,
    /// Its GFLOP/s.
    pub cpu_gflops: Option<f64>,
    /// `cpu_ms / kernel_ms`.
    pub speedup: Option<f64>,
    /// Tokens the CPU baseline ran on (its time is scaled to the batch past
    /// [`CPU_MAX_TOKENS`]).
    pub cpu_tokens: Option<u32>,
    /// The largest absolute error of the checked rows.
    pub max_abs_err: f64,
    /// Rows of each run checked against the f64 reference.
    pub checked_rows: usize,
    /// GFLOP/s over the measured peak of the kernel's arithmetic (`qkv peak`; empty until
    /// one is cached), and over the roofline of the shape.
    pub peak_share: Option<f64>,
    /// GFLOP/s over the roofline of the shape.
    pub roofline_share: Option<f64>,
    /// That peak, GFLOP/s.
    pub peak_gflops: Option<f64>,
    /// What it is ("f32 FMA" or a cooperative-matrix configuration).
    pub peak_of: Option<String>,
    /// Either share past 100% ([`crate::peak::Share::impossible`]): the timing or the peak
    /// is wrong; null without a peak.
    pub share_impossible: Option<bool>,
    /// What makes this row's timing untrustworthy, if anything (samples far apart, the
    /// kernel alone slower than the whole run): a figure to measure again, on a quiet
    /// machine.
    pub noisy: Option<String>,
    /// Whether every run passed its check.
    pub pass: bool,
}

/// What a measured run of `shape` stored as `element` (seeded X, generated weights:
/// `qkv run`, `qkv bench`, the Python module's `bench`) holds in host memory at once, by
/// part, for [`crate::host::check_room`] before any of it is allocated: the generated f32
/// weights, the weights as the GPU reads them and their upload, the chunk buffers, the rows
/// kept for `check`, the CPU baseline's X and output (where `cpu_baseline`); on a CPU driver
/// (`cpu_device`) the GPU's buffers too, which live in the same memory.
pub fn run_footprint(
    shape: &QkvShape,
    element: ElementType,
    check: CheckRows,
    cpu_device: bool,
    cpu_baseline: bool,
) -> Vec<(&'static str, u64)> {
    let (w, n_out) = (shape.w_len() as u64, shape.n_out() as u64);
    let kept = match check {
        CheckRows::All => shape.tokens as u64,
        CheckRows::Sample(n) => (n as u64).min(shape.tokens as u64),
    };
    let cpu_tokens = match cpu_baseline {
        true => (shape.tokens as u64).min(CPU_MAX_TOKENS as u64),
        false => 0,
    };
    let chunk = crate::plan::DEFAULT_CHUNK_BYTES;
    vec![
        ("weights (f32, generated)", (w + n_out) * 4),
        (
            "the weights' upload (and in a half type their rounded copy)",
            w * element.size()
                + if element == ElementType::F32 {
                    0
                } else {
                    w * 4
                },
        ),
        ("chunk buffers", 2 * chunk),
        (
            "rows kept for the check",
            kept * CheckRows::row_bytes(shape),
        ),
        (
            "the CPU baseline",
            cpu_tokens * (shape.d_model as u64 + n_out) * 4,
        ),
        (
            "GPU buffers (a CPU driver's memory is the host's)",
            if cpu_device {
                w * element.size() + 3 * chunk
            } else {
                0
            },
        ),
    ]
}

/// Refuses a measured run of `shape` ([`run_footprint`]) that would not fit the memory the
/// system has left, before any of it is allocated (`qkv run` and `qkv bench` with
/// `--d-model 32768 --q-width 32768` aborted allocating 12.9 GB of weights).
pub fn check_room_for(
    shape: &QkvShape,
    element: ElementType,
    check: CheckRows,
    cpu_device: bool,
) -> Result<()> {
    crate::host::check_room(
        &run_footprint(shape, element, check, cpu_device, true),
        crate::host::available_memory(),
        "use a smaller d_model or widths (the weights alone are d_model x (q_width + 2 \
         kv_width) f32 values), check a sample of rows rather than all, or run on a machine \
         with more memory",
    )
}

/// The CPU baseline's time for one batch: an f32 GEMM through `matrixmultiply` on every
/// core, timed on at most the first [`CPU_MAX_TOKENS`] tokens and scaled to the batch.
#[derive(Debug, Clone, Copy)]
pub struct CpuBaseline {
    /// The time for the whole batch, ms (scaled from the tokens it ran on).
    pub ms: f64,
    /// Tokens it ran on (the batch's first ones).
    pub tokens: u32,
    /// GFLOP/s on those tokens.
    pub gflops: f64,
}

impl CpuBaseline {
    /// Times `repeats` runs after one warm-up on the seeded X of `shape` (its first
    /// [`CPU_MAX_TOKENS`] tokens) and `weights`.
    pub fn measure(shape: &QkvShape, seed: u64, weights: &FusedWeights, repeats: u32) -> Self {
        let sub = QkvShape {
            tokens: shape.tokens.min(CPU_MAX_TOKENS),
            ..*shape
        };
        let mut x = vec![0f32; sub.x_len()];
        random_x_rows(sub.d_model, seed, 0..sub.tokens, &mut x);
        let mut out = vec![0f32; sub.tokens as usize * sub.n_out() as usize];
        crate::cpu::fused_gemm(&sub, &x, weights, &mut out);
        let times: Vec<f64> = (0..repeats.max(1))
            .map(|_| {
                let start = Instant::now();
                crate::cpu::fused_gemm(&sub, &x, weights, &mut out);
                ms(start.elapsed())
            })
            .collect();
        let measured_ms = spread(&times).0;
        Self {
            ms: measured_ms * shape.tokens as f64 / sub.tokens as f64,
            tokens: sub.tokens,
            gflops: sub.gflops(measured_ms / 1e3),
        }
    }
}

/// One shape of a sweep and what its kernels are measured against.
#[derive(Debug, Clone, Copy)]
pub struct BenchJob<'a> {
    /// The shape's name in the row ("gpt2", "custom").
    pub name: &'a str,
    /// The shape.
    pub shape: &'a QkvShape,
    /// Its weights (seeded: [`crate::random_weights`], stored as `--weight-type` asks).
    pub weights: &'a FusedWeights,
    /// The seed X is generated from, chunk by chunk as each run streams.
    pub seed: u64,
    /// The CPU baseline, where it ran.
    pub cpu: Option<CpuBaseline>,
    /// The adapter's measured peak, where one is cached.
    pub peak: Option<&'a Peak>,
}

/// How each row is measured.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// Timed end-to-end runs after the validated warm-up, and as many back-to-back
    /// dispatches.
    pub repeats: u32,
    /// Rows of each run checked; None: [`CheckRows::default_for`] the shape.
    pub check: Option<CheckRows>,
    /// How the batch is split into chunks.
    pub chunking: ChunkOptions,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Measures `spec` on `job` into its row ([`validate_then_time`]: run 0 validates and warms
/// up, the rest are timed and validated too; a run that fails stops the measurement, and a
/// failing kernel is never timed alone), and the measurement it came from (its report says
/// what failed). `progress` hears each run's tokens.
pub fn bench_row(
    ctx: &GpuContext,
    spec: KernelSpec,
    job: &BenchJob<'_>,
    opts: &BenchOptions,
    progress: impl FnMut(Progress),
) -> Result<(BenchRow, Measurement)> {
    let shape = job.shape;
    let plan = ChunkPlan::new(
        &ctx.limits(),
        shape,
        &spec,
        OutputLayout::Tokens,
        &opts.chunking,
    )?;
    let mut projector = Projector::from_plan(ctx, spec, plan)?;
    projector.set_weights(job.weights)?;
    let measure = MeasureOptions {
        runs: opts.repeats,
        kernel_repeats: opts.repeats,
        check: opts.check.unwrap_or(CheckRows::default_for(shape)),
        stop_at_failure: true,
        ..MeasureOptions::default()
    };
    let x = XSource::Seeded(job.seed);
    let m = validate_then_time(&mut projector, job.weights, x, &measure, progress)?;
    let kernel_ms = m.kernel.as_ref().map_or(f64::NAN, |k| ms(k.median()));
    let gflops = shape.gflops(kernel_ms / 1e3);
    let share = job
        .peak
        .and_then(|p| p.share(projector.spec(), shape, gflops))
        .filter(|_| gflops.is_finite());
    let cpu_ms = job.cpu.map(|c| c.ms);
    let row = BenchRow {
        shape: job.name.to_string(),
        tokens: shape.tokens,
        d_model: shape.d_model,
        q_width: shape.q_width,
        kv_width: shape.kv_width,
        bias: shape.bias,
        dtype: projector.dtype(),
        weight_type: match job.weights.w_formats() {
            Some(f) => WeightType::parts_name(f),
            None => job.weights.w.element().name().to_string(),
        },
        w_bytes: job.weights.w_bytes(),
        kernel: projector.spec().to_string(),
        kernel_timer: m
            .kernel
            .as_ref()
            .map_or(String::new(), |k| format!("{:?}", k.timer)),
        unchecked: ctx.runs_unchecked(projector.spec()),
        kernel_ms,
        gpu_gflops: gflops,
        end_to_end_ms: m.median_ms(|t| t.total()),
        cpu_ms,
        cpu_gflops: cpu_ms.map(|c| shape.gflops(c / 1e3)),
        speedup: cpu_ms.map(|c| c / kernel_ms),
        cpu_tokens: job.cpu.map(|c| c.tokens),
        max_abs_err: m.report.max_abs_err(),
        checked_rows: m.checked_rows,
        peak_share: share.as_ref().map(|s| s.peak_share),
        roofline_share: share.as_ref().map(|s| s.roofline_share),
        peak_gflops: share.as_ref().map(|s| s.peak_gflops),
        share_impossible: share.as_ref().map(|s| s.impossible),
        peak_of: share.map(|s| s.peak_of),
        noisy: m.noise(),
        pass: m.pass(),
    };
    Ok((row, m))
}

/// The shapes a sweep runs: named ones ([`PRESETS`]; `all` alone: every one), or one of the
/// caller's, named "custom" in the rows.
#[derive(Debug, Clone, PartialEq)]
pub enum SweepShapes {
    /// Preset names, or `all`.
    Named(Vec<String>),
    /// One shape of the caller's.
    Custom {
        /// Columns of X.
        d_model: u32,
        /// Columns of Q.
        q_width: u32,
        /// Columns of K and of V.
        kv_width: u32,
        /// Whether the projection adds a bias.
        bias: bool,
    },
}

/// A sweep: every shape at each token count, in each storage type, with each kernel
/// configuration (or the autotuned one), each row checked then timed ([`sweep`]).
#[derive(Debug, Clone)]
pub struct Sweep<'a> {
    /// The shapes.
    pub shapes: SweepShapes,
    /// Token counts; empty: the default sweep ([`token_sweep`]: 64, or the shape's unit of
    /// tokens, and its doublings up to `max_tokens`).
    pub tokens: Vec<u32>,
    /// The largest token count of the default sweep.
    pub max_tokens: u32,
    /// Storage types: each shape runs in each.
    pub dtypes: Vec<ElementType>,
    /// Wq's, Wk's and Wv's types where W is stored otherwise than in the run's type
    /// (`--weight-type`: [`FusedWeights::stored_as`], kept in its blocks on the GPU); each
    /// row checked against the weights so stored.
    pub weight_type: Option<[WeightType; 3]>,
    /// The kernels of each row.
    pub kernels: KernelChoice,
    /// Tune again instead of taking the cached choice (with [`KernelChoice::Auto`]).
    pub force_tune: bool,
    /// The seed of X and the weights.
    pub seed: u64,
    /// Time the CPU baseline beside each shape.
    pub cpu: bool,
    /// The adapter's measured peak, where one is cached ([`crate::peak::cached`]).
    pub peak: Option<&'a Peak>,
    /// How each row is measured.
    pub options: BenchOptions,
}

/// What a sweep tells its front end as it goes (bars, notes, failures); the front end's
/// answer, an error, stops it (Ctrl-C): at once, or, heard inside a tuning run or a row's
/// measurement, when that is done.
pub enum SweepEvent<'a> {
    /// Every shape of the sweep (named), checked against the device and the memory left,
    /// before any is measured.
    Planned(&'a [(&'static str, QkvShape)]),
    /// A shape starts: its weights are made and its CPU baseline timed.
    Shape(&'static str, &'a QkvShape),
    /// The kernels of a shape in a storage type are about to be resolved (with
    /// [`KernelChoice::Auto`], chosen, perhaps tuned now).
    Choosing(&'a QkvShape, ElementType),
    /// A step of the tuner ("3/18 texture(wg=16)").
    Tuning(&'a QkvShape, ElementType, &'a str),
    /// The kernels resolved: their notes and those skipped.
    Resolved(&'a Resolved),
    /// A row starts: this spec on this job.
    Row(&'a BenchJob<'a>, &'a KernelSpec),
    /// The row's measurement goes on.
    Progress(Progress),
    /// A row measured, and the measurement it came from (its report says what failed).
    Measured(&'a BenchJob<'a>, &'a BenchRow, &'a Measurement),
    /// Every row of the shape measured.
    ShapeDone,
}

impl Sweep<'_> {
    /// Every shape of the sweep at each of its token counts, named, each checked first
    /// against the device in every storage type (naive's needs, the least any kernel has)
    /// and against the memory the system has left ([`run_footprint`]): a sweep should not
    /// fail an hour in.
    pub fn plan(&self, ctx: &GpuContext) -> Result<Vec<(&'static str, QkvShape)>> {
        let presets = match &self.shapes {
            SweepShapes::Named(names) if matches!(&names[..], [n] if n.trim() == "all") => {
                PRESETS.to_vec()
            }
            SweepShapes::Named(names) => names
                .iter()
                .map(|n| preset(n.trim()).map_err(Error::Input))
                .collect::<Result<_>>()?,
            &SweepShapes::Custom {
                d_model,
                q_width,
                kv_width,
                bias,
            } => vec![Preset {
                name: "custom",
                model: "custom",
                d_model,
                q_width,
                kv_width,
                bias,
                tokens_unit: 0,
            }],
        };
        let mut out = Vec::new();
        for p in presets {
            let counts = match self.tokens.is_empty() {
                true => token_sweep(p.tokens_unit, self.max_tokens.max(p.tokens_unit)),
                false => self.tokens.clone(),
            };
            for t in counts {
                let shape = QkvShape::new(t, p.d_model, p.q_width, p.kv_width, p.bias)?;
                for &e in &self.dtypes {
                    self.check_room(ctx, p.name, &shape, e)?;
                    let formats = self
                        .weight_type
                        .and_then(|t| WeightType::stored_formats(t, e));
                    // W kept as stored is one binding, whichever kernel reads it.
                    let least = match formats {
                        Some(f) => KernelSpec::try_from(Kernel::Decode)
                            .and_then(|s| s.with_element(e))
                            .and_then(|s| s.with_w_formats(f)),
                        None => KernelSpec::try_from(Kernel::Naive).and_then(|s| s.with_element(e)),
                    }
                    .map_err(Error::Input)?;
                    check_fits(&ctx.limits(), &shape, &least)?;
                }
                out.push((p.name, shape));
            }
        }
        Ok(out)
    }

    /// Refuses a row of `shape` in `element` that would not fit the memory the system has
    /// left ([`run_footprint`]), naming it and the ways out.
    fn check_room(
        &self,
        ctx: &GpuContext,
        name: &str,
        shape: &QkvShape,
        element: ElementType,
    ) -> Result<()> {
        let check = self.options.check.unwrap_or(CheckRows::default_for(shape));
        let parts = run_footprint(shape, element, check, ctx.is_cpu(), self.cpu);
        let way_out = format!(
            "{name} at {} token{} in {element} is a row of this sweep: use fewer `tokens` (a \
             lower `max_tokens`), a smaller shape (the weights alone are d_model x (q_width + \
             2 kv_width) f32 values){}{}, or a machine with more memory",
            shape.tokens,
            if shape.tokens == 1 { "" } else { "s" },
            if self.cpu {
                ", no CPU baseline (`cpu`)"
            } else {
                ""
            },
            if check == CheckRows::All {
                ", a sample of rows checked rather than all (`check_rows`)"
            } else {
                ""
            }
        );
        crate::host::check_room(&parts, crate::host::available_memory(), &way_out)
    }
}

/// Runs `sweep` ([`Sweep::plan`] first: every shape checked before any is measured): for
/// each shape, seeded weights and the CPU baseline; in each storage type, the kernels
/// [`resolve`]d (named, or autotuned); each measured into its row ([`bench_row`]). `on`
/// hears each step ([`SweepEvent`]) and may stop the sweep. The rows, in order.
pub fn sweep(
    ctx: &GpuContext,
    sweep: &Sweep<'_>,
    mut on: impl FnMut(SweepEvent<'_>) -> Result<()>,
) -> Result<Vec<BenchRow>> {
    let shapes = sweep.plan(ctx)?;
    on(SweepEvent::Planned(&shapes))?;
    let mut rows = Vec::new();
    // The first error `on` returned inside a tuning run or a measurement, which cannot stop.
    let mut stop: Option<Error> = None;
    for (name, shape) in &shapes {
        on(SweepEvent::Shape(name, shape))?;
        let w = random_weights(shape, sweep.seed);
        let repeats = sweep.options.repeats;
        let cpu = sweep
            .cpu
            .then(|| CpuBaseline::measure(shape, sweep.seed, &w, repeats));
        let stored = sweep.weight_type.map(|t| w.stored_as(t)).transpose()?;
        for &element in &sweep.dtypes {
            on(SweepEvent::Choosing(shape, element))?;
            let formats = sweep
                .weight_type
                .and_then(|t| WeightType::stored_formats(t, element));
            let weights = match (&stored, formats) {
                (Some(s), Some(_)) => s,
                _ => &w,
            };
            let opts = TuneOptions {
                force: sweep.force_tune,
                element,
                weights: formats,
                ..TuneOptions::default()
            };
            let resolved = resolve(ctx, shape, &sweep.kernels, &opts, |step| {
                keep(&mut stop, on(SweepEvent::Tuning(shape, element, step)))
            })?;
            stopped(&mut stop)?;
            on(SweepEvent::Resolved(&resolved))?;
            for (spec, _) in resolved.specs {
                let job = BenchJob {
                    name,
                    shape,
                    weights,
                    seed: sweep.seed,
                    cpu,
                    peak: sweep.peak,
                };
                on(SweepEvent::Row(&job, &spec))?;
                let (row, m) = bench_row(ctx, spec, &job, &sweep.options, |p| {
                    keep(&mut stop, on(SweepEvent::Progress(p)))
                })?;
                stopped(&mut stop)?;
                on(SweepEvent::Measured(&job, &row, &m))?;
                rows.push(row);
            }
        }
        on(SweepEvent::ShapeDone)?;
    }
    Ok(rows)
}

/// Keeps the first error of `answer` in `stop`.
fn keep(stop: &mut Option<Error>, answer: Result<()>) {
    if let Err(e) = answer {
        stop.get_or_insert(e);
    }
}

/// The error kept in `stop`, if any.
fn stopped(stop: &mut Option<Error>) -> Result<()> {
    stop.take().map_or(Ok(()), Err)
}
