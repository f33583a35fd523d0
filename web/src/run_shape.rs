//! `gpu.run_shape`: what `qkv run` does for a named shape, in the browser: tune among the
//! kernels this browser runs, project fresh random inputs (in chunks, streamed, where asked
//! or where the device needs them), check every element against the f64 reference, time the
//! kernel, and lay the report out as `qkv run` does.

use crate::adapter::AdapterInfo;
use crate::js::{pause, PAGE_SETTINGS};
use crate::shapes::ShapeInfo;
use qkv_wgpu::error::name_settings;
use qkv_wgpu::measure::{
    validate_then_time_async, CheckRows, MeasureOptions, Measurement, XSource,
};
use qkv_wgpu::presets::{preset, Preset};
use qkv_wgpu::projector::KernelTimes;
use qkv_wgpu::records::{check_lines, PlanRecord};
use qkv_wgpu::tune::{self, Choice, Trial, TuneOptions};
use qkv_wgpu::{
    ChunkOptions, ChunkPlan, Elements, FusedWeights, GpuContext, KernelTimer, OutputLayout,
    Projector, QkvShape, Report,
};
use serde::Serialize;

/// What `run_shape` resolves to.
#[derive(Serialize)]
pub struct RunResult {
    shape: ShapeInfo,
    tokens: u32,
    kernel: String,
    reason: String,
    trials: Vec<Trial>,
    timer: &'static str,
    kernel_ms: f64,
    kernel_ms_min: f64,
    kernel_ms_max: f64,
    repeats: u32,
    per_sample: u32,
    gflops: f64,
    chunks: u32,
    chunk_tokens: u32,
    col_blocks: u32,
    streamed: bool,
    outputs: Vec<Report>,
    tolerance: String,
    pass: bool,
    lines: Vec<String>,
}

/// Timed repeats of the kernel after the validated run.
const REPEATS: u32 = 5;

/// The most host memory one run may hold: a wasm32 page has 4 GiB at most, and the browser
/// may grant less. A run past it is refused by name instead of aborting the page.
const HOST_BUDGET: f64 = 1024.0 * 1024.0 * 1024.0;

/// Refuses a run whose host arrays would pass [`HOST_BUDGET`]: X, W, Q, K, V in f32 and the
/// f64 reference (the fused rows, then split into Q, K, V).
fn check_host_memory(shape: &QkvShape) -> qkv_wgpu::Result<()> {
    let (d, n) = (shape.d_model as f64, shape.n_out() as f64);
    let per_token = 4.0 * d + 4.0 * n + 16.0 * n;
    let fixed = 8.0 * d * n;
    let need = fixed + per_token * shape.tokens as f64;
    if need <= HOST_BUDGET {
        return Ok(());
    }
    let most = ((HOST_BUDGET - fixed) / per_token).floor().max(0.0);
    Err(qkv_wgpu::Error::Input(format!(
        "{} tokens of this shape need about {:.0} MiB of the page's memory (X, W, Q, K, V and \
         the f64 reference); the page keeps a run under {:.0} MiB (a wasm32 page has 4 GiB at \
         most): at most {most} tokens here. `qkv run` and `qkv bench` stream larger batches",
        shape.tokens,
        need / (1024.0 * 1024.0),
        HOST_BUDGET / (1024.0 * 1024.0)
    )))
}

/// The kernel's times from a measurement, in ms, with how they were taken.
struct Times {
    median: f64,
    min: f64,
    max: f64,
    warmups: u32,
    per_sample: u32,
    /// The clock ("GPU timestamps", "host-timed").
    timer: &'static str,
    /// The report's label of the kernel's line.
    label: &'static str,
}

impl Times {
    /// The times of `times`; an error where the kernel timed as 0 ms (below the clock).
    fn of(times: &KernelTimes) -> qkv_wgpu::Result<Self> {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let (median, min, max) = times.spread();
        let (timer, label) = match times.timer {
            KernelTimer::GpuTimestamp => ("GPU timestamps", "GPU kernel"),
            KernelTimer::Host => ("host-timed", "kernel (host)"),
        };
        let t = Self {
            median: ms(median),
            min: ms(min),
            max: ms(max),
            warmups: times.warmups,
            per_sample: times.per_sample,
            timer,
            label,
        };
        if t.median <= 0.0 {
            return Err(qkv_wgpu::Error::Input(format!(
                "the kernel timed as 0 ms ({timer}): below the clock's resolution even with {} \
                 batches per sample",
                t.per_sample
            )));
        }
        Ok(t)
    }

    /// The report's line of the kernel's time, at `gflops`.
    fn line(&self, gflops: f64) -> String {
        let batches = if self.per_sample > 1 {
            format!(
                ", each sample {} batches back to back: the browser's clocks are rounded to 100 \
                 µs",
                self.per_sample
            )
        } else {
            String::new()
        };
        format!(
            "  {:<12} {:>10.3} ms  median of {REPEATS} back-to-back after {} warm-ups (min \
             {:.3}, max {:.3}; {}{batches})  {gflops:.2} GFLOP/s",
            self.label, self.median, self.warmups, self.min, self.max, self.timer
        )
    }
}

/// Tunes, projects, checks and times the named shape at `tokens` (see the crate's
/// documentation), in chunks of `chunk_tokens` (None: as many as the device holds); `say`
/// hears a line per step.
pub async fn run_shape(
    ctx: &GpuContext,
    adapter: &AdapterInfo,
    name: &str,
    tokens: u32,
    chunk_tokens: Option<u32>,
    say: &impl Fn(&str),
) -> qkv_wgpu::Result<RunResult> {
    let p = preset(name).map_err(qkv_wgpu::Error::Input)?;
    let shape = QkvShape::new(tokens, p.d_model, p.q_width, p.kv_width, p.bias)?;
    check_host_memory(&shape)?;
    say(&format!(
        "shape {shape}: {:.3} GFLOP per projection",
        shape.flops() / 1e9
    ));
    let choice = autotune(ctx, &shape, say).await?;
    let seed = (js_sys::Math::random() * 2f64.powi(53)) as u64;
    let (x, weights) = qkv_wgpu::random_inputs(&shape, seed);
    let opts = ChunkOptions {
        chunk_tokens,
        ..ChunkOptions::default()
    };
    let spec = choice.spec.clone();
    let mut projector = Projector::with_spec(ctx, shape, spec, OutputLayout::Tokens, &opts)?;
    projector.set_weights(&weights)?;
    let plan = projector.plan().clone();
    say_plan(&plan, say);
    let m = check_then_time(&mut projector, &weights, &x, say).await?;
    let Some(kernel) = m.kernel.as_ref() else {
        let parts: Vec<String> = m.report.parts().iter().map(|p| p.to_string()).collect();
        return Err(qkv_wgpu::Error::Input(format!(
            "kernel {}: the GPU result does not match the f64 reference, so it was not timed: \
             {}",
            projector.spec(),
            parts.join("; ")
        )));
    };
    let times = Times::of(kernel)?;
    let gflops = shape.flops() / (times.median * 1e-3) / 1e9;
    let tolerance = qkv_wgpu::records::condition_line(&m.tolerance);
    let head = Head {
        ctx,
        adapter,
        preset: &p,
        shape: &shape,
        tolerance: &tolerance,
    };
    let lines = report_lines(&head, &choice, &projector, &m, times.line(gflops));
    Ok(RunResult {
        shape: ShapeInfo::from(&p),
        tokens,
        kernel: projector.spec().config.to_string(),
        reason: choice.reason,
        trials: choice.trials,
        timer: times.timer,
        kernel_ms: times.median,
        kernel_ms_min: times.min,
        kernel_ms_max: times.max,
        repeats: REPEATS,
        per_sample: times.per_sample,
        gflops,
        chunks: plan.chunks(),
        chunk_tokens: plan.chunk_tokens,
        col_blocks: plan.col_blocks.len() as u32,
        streamed: plan.streaming,
        outputs: m.report.parts().iter().map(|r| (*r).clone()).collect(),
        tolerance,
        pass: m.report.pass(),
        lines,
    })
}

/// The configuration the tuner chooses for `shape` among the kernels this browser runs
/// (each validated first; the browser keeps no cache), each candidate said as it is tried.
async fn autotune(
    ctx: &GpuContext,
    shape: &QkvShape,
    say: &impl Fn(&str),
) -> qkv_wgpu::Result<Choice> {
    say("autotuning among the kernels this browser runs (each validated first)...");
    pause().await;
    let choice = tune::choose_async(ctx, shape, &TuneOptions::default(), |m| {
        say(&format!("  trying {m}"));
    })
    .await?;
    say(&format!("chose {}", choice.config));
    Ok(choice)
}

/// Says how the batch is split, where it is.
fn say_plan(plan: &ChunkPlan, say: &impl Fn(&str)) {
    if plan.chunks() > 1 {
        say(&format!(
            "{} chunks of up to {} tokens{}",
            plan.chunks(),
            plan.chunk_tokens,
            if plan.streaming { ", streamed" } else { "" }
        ));
    }
}

/// The library's check-then-time, as `qkv run` measures: every element of the run checked
/// against the f64 reference, then, only if it passed, the kernel timed alone.
async fn check_then_time(
    projector: &mut Projector<'_>,
    weights: &FusedWeights,
    x: &[f32],
    say: &impl Fn(&str),
) -> qkv_wgpu::Result<Measurement> {
    say(
        "projecting fresh random inputs (outputs filled with NaN first), checking every element \
         against the f64 reference, then timing the kernel...",
    );
    pause().await;
    let opts = MeasureOptions {
        runs: 0,
        kernel_repeats: REPEATS,
        check: CheckRows::All,
        ..MeasureOptions::default()
    };
    let x = XSource::Given(Elements::F32(x));
    validate_then_time_async(projector, weights, x, &opts, |_| {}).await
}

/// What the report's first lines name: the adapter, the shape and the check.
struct Head<'a> {
    ctx: &'a GpuContext,
    adapter: &'a AdapterInfo,
    preset: &'a Preset,
    shape: &'a QkvShape,
    /// The check's condition, as `qkv run` prints it.
    tolerance: &'a str,
}

/// The report, laid out as `qkv run` lays it out: adapter, shape, check; the kernel, why it
/// was chosen and the tuner's trials; the chunks; `time_line`; the check of each output;
/// the tuner's notes.
fn report_lines(
    head: &Head<'_>,
    choice: &Choice,
    projector: &Projector<'_>,
    m: &Measurement,
    time_line: String,
) -> Vec<String> {
    let spec = projector.spec();
    let summary = &head.ctx.summary;
    let mut lines = vec![
        format!(
            "adapter   {} ({}, {})",
            head.adapter.vendor_architecture(),
            summary.backend,
            summary.device_type
        ),
        format!(
            "shape     {} ({}): {}",
            head.preset.name, head.preset.model, head.shape
        ),
        format!("check     {}", head.tolerance),
        String::new(),
        format!(
            "kernel    {} ({}): {}",
            spec.config,
            spec.kernel().number(),
            spec.kernel().description()
        ),
        format!("  chosen       {}", choice.reason),
    ];
    lines.extend(trial_lines(&choice.trials, &spec.config.to_string()));
    let plan = projector.plan();
    if plan.chunks() > 1 || plan.col_blocks.len() > 1 {
        // The library names the page's chunk size by its setting's name.
        let line = name_settings(&PlanRecord::of(plan, plan.streaming).line(), &PAGE_SETTINGS);
        lines.push(format!("  chunks       {line}"));
    }
    lines.push(time_line);
    lines.extend(check_lines(&m.report).iter().map(|l| format!("  {l}")));
    lines.extend(choice.notes.iter().map(|n| format!("note      {n}")));
    lines
}

/// The tuner's trials as a table (none where the choice came without tuning), the one
/// `chosen` marked.
fn trial_lines(trials: &[Trial], chosen: &str) -> Vec<String> {
    let width = trials
        .iter()
        .map(|t| t.config.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut lines = Vec::new();
    if !trials.is_empty() {
        lines.push(format!(
            "  tuning       {:<width$}  {:>10}  status",
            "config", "ms"
        ));
    }
    for t in trials {
        let ms = t.ms.map_or("-".into(), |v| format!("{v:.3}"));
        let mark = if t.config == chosen {
            "  <- chosen"
        } else {
            ""
        };
        lines.push(format!(
            "               {:<width$}  {ms:>10}  {}{mark}",
            t.config, t.status
        ));
    }
    lines
}
