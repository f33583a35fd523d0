//! Check, then time: the one loop that `qkv run`, `qkv bench`, the tuner and the browser
//! page measure a kernel with ([`validate_then_time`]). Each run of the batch streams X
//! through the projector (seeded random X generated chunk by chunk, or the caller's), keeps
//! the rows to check ([`KeptRows`]) and checks them against the f64 reference of the inputs
//! as the GPU read them, with the kernel's tolerance built once; only a batch that passed is
//! then timed, the kernel alone, back to back at steady state.
//!
//! ```text
//! run 0 (untimed: validates, warms up) ─> runs 1..=N (timed end to end, each validated)
//!     ─> if every run passed: warm-ups, then N back-to-back dispatches timed (KernelTimes)
//! ```

mod rows;

pub use rows::{keep_source_rows, parse_check_rows, weights_read, CheckRows, KeptRows};

use crate::element::ElementType;
use crate::error::{Error, Result};
use crate::host::{Elements, ElementsMut};
use crate::kernels::KernelSpec;
use crate::projector::{KernelTimes, Projector, RunTimings};
use crate::reference::Reference;
use crate::validate::{QkvReport, Tolerance, ToleranceOverrides};
use crate::weights::{random_x_rows_in, FusedWeights};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where X comes from.
#[derive(Debug, Clone, Copy)]
pub enum XSource<'a> {
    /// Uniform in [-1, 1) from this seed ([`crate::random_x_rows_in`]), generated chunk by
    /// chunk straight into the run's type as the batch streams: no copy of the batch's X is
    /// ever held.
    Seeded(u64),
    /// The caller's X, [tokens, d_model] row-major, in any type: copied as it is where it is
    /// the run's type, else rounded to it as it is uploaded (a value the run's type cannot
    /// hold is refused). The rows checked are copied first and uploaded from that copy, so
    /// the check is of X as the GPU read it even where the caller's X changes during the run
    /// (another thread writing it).
    Given(Elements<'a>),
}

/// How to measure.
#[derive(Debug, Clone, Copy)]
pub struct MeasureOptions<'a> {
    /// End-to-end runs timed after the first (which validates and warms up, untimed); each
    /// is validated too.
    pub runs: u32,
    /// Back-to-back dispatches timed after them (0: the kernel is not timed alone).
    pub kernel_repeats: u32,
    /// The rows of each run checked.
    pub check: CheckRows,
    /// The user's tolerance, where given, over the kernel's own
    /// ([`Tolerance::for_kernel`]).
    pub tolerance: ToleranceOverrides,
    /// The reference of the whole batch, computed once by the caller (the tuner, for every
    /// candidate on the same X): every row is then checked against it, none recomputed.
    pub expected: Option<&'a Reference>,
    /// Where X and W are read in a half type, the precision cost of the first run: its
    /// results against the reference of the unrounded inputs ([`Measurement::precision`]).
    pub precision_cost: bool,
    /// Where the run's W was quantized from other weights (`--weight-type`): those, for the
    /// quantization cost of the first run ([`Measurement::quantization`]).
    pub quantized_from: Option<&'a FusedWeights>,
    /// Stop at the first run that fails its check (else every run runs, and the report is
    /// the first failing one's).
    pub stop_at_failure: bool,
    /// Set (by another thread, or the progress callback) to stop the measurement at the
    /// next chunk with [`Error::Interrupted`].
    pub cancel: Option<&'a AtomicBool>,
}

impl Default for MeasureOptions<'_> {
    fn default() -> Self {
        Self {
            runs: 5,
            kernel_repeats: 5,
            check: CheckRows::All,
            tolerance: ToleranceOverrides::default(),
            expected: None,
            precision_cost: false,
            quantized_from: None,
            stop_at_failure: false,
            cancel: None,
        }
    }
}

/// What [`validate_then_time`] is doing, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Run `index` (0: the untimed first) of `of` starts.
    Run {
        /// 0-based.
        index: u32,
        /// Runs in all.
        of: u32,
    },
    /// Tokens of the current run done.
    Tokens(u32),
    /// The current run's results are being checked.
    Checking,
    /// The kernel is being timed back to back.
    TimingKernel,
}

/// The ratio of a kernel's slowest timed sample to its fastest past which its timing is
/// called noisy ([`Measurement::noise`]): back-to-back dispatches of one batch on a quiet
/// machine stay within a few percent (lavapipe: 1.06 over 5 samples at GPT-2 256 tokens).
pub const NOISY_SPREAD: f64 = 1.5;

/// How much slower than the whole end-to-end run (which contains it) the kernel alone may
/// time before its timing is called noisy: a few percent is the noise of one quiet machine.
pub const NOISY_SPREAD_RUN: f64 = 1.05;

/// A kernel's measurement: its check and its times.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// The tolerance the check held every element to.
    pub tolerance: Tolerance,
    /// The first failing run's report, else the last run's.
    pub report: QkvReport,
    /// Where X and W are read in a half type (with [`MeasureOptions::precision_cost`]):
    /// the first run's results
    /// against the reference of the unrounded inputs, held to f32's tolerance. A cost, not a
    /// check.
    pub precision: Option<QkvReport>,
    /// Where W was quantized ([`MeasureOptions::quantized_from`]): the first run's results
    /// against the reference of X as given and the weights before quantization, held to
    /// f32's tolerance. A cost, not a check.
    pub quantization: Option<QkvReport>,
    /// The first run (untimed: it validates and warms up).
    pub first: RunTimings,
    /// The timed runs (fewer than asked where a failure stopped them).
    pub runs: Vec<RunTimings>,
    /// The time computing the reference took, over every run.
    pub reference: Duration,
    /// Rows checked in each run.
    pub checked_rows: usize,
    /// The kernel timed alone, back to back: None when a run failed its check (a failing
    /// kernel is never timed) or none was asked for.
    pub kernel: Option<KernelTimes>,
}

impl Measurement {
    /// Whether every run passed its check.
    pub fn pass(&self) -> bool {
        self.report.pass()
    }

    /// Runs checked: the first and the timed ones.
    pub fn runs_checked(&self) -> u32 {
        1 + self.runs.len() as u32
    }

    /// What makes this measurement's timing untrustworthy, if anything: the kernel alone
    /// timed [`NOISY_SPREAD_RUN`] times slower than the whole end-to-end run that contains
    /// it, or more, or its samples further
    /// apart than [`NOISY_SPREAD`] (max over min). Both come of other work on the machine;
    /// the figure is to be measured again on a quiet one, not read.
    pub fn noise(&self) -> Option<String> {
        let kernel = self.kernel.as_ref()?;
        let (median, min, max) = kernel.spread();
        let mut why = Vec::new();
        let end_to_end = self.median_ms(|t| t.total());
        let kernel_ms = median.as_secs_f64() * 1e3;
        if kernel_ms > NOISY_SPREAD_RUN * end_to_end {
            why.push(format!(
                "the kernel alone ({kernel_ms:.3} ms) timed slower than the whole run \
                 ({end_to_end:.3} ms)"
            ));
        }
        let spread = max.as_secs_f64() / min.as_secs_f64().max(1e-12);
        if kernel.samples.len() >= 2 && spread > NOISY_SPREAD {
            why.push(format!(
                "its samples range from {:.3} to {:.3} ms ({spread:.1}x)",
                min.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            ));
        }
        (!why.is_empty()).then(|| {
            format!(
                "not trustworthy: {}: other work on the machine? measure again",
                why.join("; ")
            )
        })
    }

    /// The median of the timed runs' `f`, in ms (NaN without timed runs).
    pub fn median_ms(&self, f: impl Fn(&RunTimings) -> Duration) -> f64 {
        let ms: Vec<f64> = self.runs.iter().map(|t| f(t).as_secs_f64() * 1e3).collect();
        crate::projector::spread(&ms).0
    }
}

/// The tolerance a run of `spec` over `d_model` is held to: the kernel's own
/// ([`Tolerance::for_kernel`]: its accumulation, then the final rounding to its storage type)
/// with the user's parts taking precedence.
pub fn tolerance(d_model: u32, spec: &KernelSpec, user: &ToleranceOverrides) -> Tolerance {
    user.over(Tolerance::for_kernel(d_model, spec))
}

/// Measures the kernel of `projector`, whose weights `weights` are loaded: runs the batch
/// `1 + opts.runs` times from `x`, checking `opts.check`'s rows of each against the f64
/// reference; then, if every run passed, times `opts.kernel_repeats` dispatches back to
/// back after warm-ups. `progress` hears what it is doing. Natively, a streamed run is the
/// projector's pipeline ([`Projector::stream`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn validate_then_time(
    projector: &mut Projector<'_>,
    weights: &FusedWeights,
    x: XSource<'_>,
    opts: &MeasureOptions<'_>,
    progress: impl FnMut(Progress),
) -> Result<Measurement> {
    pollster::block_on(validate_then_time_async(
        projector, weights, x, opts, progress,
    ))
}

/// As [`validate_then_time`], as a future (the browser's; natively a streamed run still
/// blocks on the pipeline's threads).
pub async fn validate_then_time_async(
    projector: &mut Projector<'_>,
    weights: &FusedWeights,
    x: XSource<'_>,
    opts: &MeasureOptions<'_>,
    mut progress: impl FnMut(Progress),
) -> Result<Measurement> {
    let shape = *projector.shape();
    let spec = projector.spec().clone();
    let (dtype, types) = (spec.dtype(), spec.types);
    let tolerance = tolerance(shape.d_model, &spec, &opts.tolerance);
    let f32_tolerance = opts
        .tolerance
        .over(Tolerance::for_f32_accumulation(shape.d_model).for_output(ElementType::F32));
    check_given(&shape, x)?;
    let check = if opts.expected.is_some() {
        CheckRows::All
    } else {
        opts.check
    };
    // The weights as the kernel read them, rounded once for every run's reference.
    let read = weights_read(weights, dtype, types.w);
    let of = 1 + opts.runs;
    let mut failed: Option<QkvReport> = None;
    let mut last = None;
    let mut precision = None;
    let mut quantization = None;
    let mut reference_time = Duration::ZERO;
    let mut checked_rows = 0;
    let mut timings = Vec::new();
    for index in 0..of {
        progress(Progress::Run { index, of });
        let (t, kept) = one_run(projector, x, (check, opts.cancel), &mut progress).await?;
        progress(Progress::Checking);
        let report = match opts.expected {
            Some(expected) => kept.check_expected(&shape, expected, tolerance),
            None => {
                let (report, took) = kept.check(&shape, &read, (dtype, types.x), tolerance);
                reference_time += took;
                report
            }
        };
        if index == 0 && opts.precision_cost && types.reads_half() {
            precision = Some(kept.precision_cost(&shape, weights, f32_tolerance));
        }
        if let (0, Some(original)) = (index, opts.quantized_from) {
            quantization = Some(kept.precision_cost(&shape, original, f32_tolerance));
        }
        checked_rows = kept.len();
        timings.push(t);
        let pass = report.pass();
        if !pass && failed.is_none() {
            failed = Some(report);
        } else {
            last = Some(report);
        }
        if !pass && opts.stop_at_failure {
            break;
        }
    }
    let report = failed
        .or(last)
        .expect("at least one run, and each gives a report");
    let first = timings.remove(0);
    let mut kernel = None;
    if report.pass() && opts.kernel_repeats > 0 {
        progress(Progress::TimingKernel);
        // The GPU may have lowered its clocks while the runs copied and checked results:
        // warm up for about half a second of work first (none on a CPU driver).
        let in_run: Vec<f64> = timings
            .iter()
            .chain(std::iter::once(&first))
            .map(|t| t.kernel.as_secs_f64())
            .collect();
        let estimate = Duration::from_secs_f64(crate::projector::spread(&in_run).0.max(0.0));
        let warmups = projector.steady_warmups(estimate);
        kernel = Some(
            projector
                .time_kernel_async(warmups, opts.kernel_repeats)
                .await?,
        );
    }
    Ok(Measurement {
        tolerance,
        report,
        precision,
        quantization,
        first,
        runs: timings,
        reference: reference_time,
        checked_rows,
        kernel,
    })
}

/// Checks that a caller's X holds the shape's [tokens, d_model].
fn check_given(shape: &crate::shape::QkvShape, x: XSource<'_>) -> Result<()> {
    if let XSource::Given(x) = x {
        let want = shape.tokens as usize * shape.d_model as usize;
        if x.len() != want {
            return Err(Error::Input(format!(
                "X has {} values; {} tokens x d_model {} need {want}",
                x.len(),
                shape.tokens,
                shape.d_model
            )));
        }
    }
    Ok(())
}

/// One run of the batch from `x`, token-major or in the projector's layout, keeping the
/// rows `check` picks.
async fn one_run(
    projector: &mut Projector<'_>,
    x: XSource<'_>,
    (check, cancel): (CheckRows, Option<&AtomicBool>),
    progress: &mut impl FnMut(Progress),
) -> Result<(RunTimings, KeptRows)> {
    let (shape, layout) = (*projector.shape(), projector.layout());
    let d = shape.d_model as usize;
    let mut kept = KeptRows::default();
    let mut kept_x = Vec::new();
    let source = |rows: Range<u32>, dst: ElementsMut<'_>| -> Result<()> {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(Error::Interrupted {
                done: rows.start,
                tokens: shape.tokens,
            });
        }
        match x {
            XSource::Seeded(seed) => random_x_rows_in(shape.d_model, seed, rows, dst),
            XSource::Given(x) => put_given(x, &rows, dst, (check, shape.tokens, d), &mut kept_x)?,
        }
        Ok(())
    };
    let sink = |c: crate::projector::ChunkOutput<'_>| {
        kept.take(&c, &shape, layout, check);
        Ok(())
    };
    let tokens = |done: u32| progress(Progress::Tokens(done));
    #[cfg(not(target_arch = "wasm32"))]
    let t = projector.stream(source, sink, tokens)?;
    #[cfg(target_arch = "wasm32")]
    let t = projector.stream_async(source, sink, tokens).await?;
    match x {
        XSource::Seeded(seed) => kept.regenerate_source_x(shape.d_model, seed),
        XSource::Given(_) => kept.set_source_x(kept_x, shape.d_model),
    }
    if let Some((ep, heads)) = projector.epilogue() {
        kept.set_epilogue(ep, heads, projector.spec().types.out);
    }
    Ok((t, kept))
}

/// Uploads rows `rows` of the caller's X [tokens, d_model] into `dst`, the rows `check` picks
/// (those [`KeptRows::take`] keeps) from a copy first appended to `kept_x` (f32, as given):
/// what the GPU reads of them is that copy, whatever the caller's X holds by the check.
fn put_given(
    x: Elements<'_>,
    rows: &Range<u32>,
    mut dst: ElementsMut<'_>,
    (check, tokens, d): (CheckRows, u32, usize),
    kept_x: &mut Vec<f32>,
) -> Result<()> {
    let picked = check.rows_in(rows.len(), tokens as usize);
    let first = kept_x.len();
    for &r in &picked {
        let at = (rows.start as usize + r) * d;
        x.slice(at..at + d).extend_f32(kept_x);
    }
    let copy = &kept_x[first..];
    let refused = |e| Error::Input(format!("X of rows {}..{}: {e}", rows.start, rows.end));
    if picked.len() == rows.len() {
        // Every row checked: the copy is the chunk.
        return dst.put(0, Elements::F32(copy)).map_err(refused);
    }
    let (a, b) = (rows.start as usize * d, rows.end as usize * d);
    dst.put(0, x.slice(a..b)).map_err(refused)?;
    for (row, values) in picked.iter().zip(copy.chunks_exact(d)) {
        dst.put(row * d, Elements::F32(values)).map_err(refused)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projector::{KernelTimer, KernelTimes};

    fn measurement(samples_ms: &[u64], end_to_end_ms: u64) -> Measurement {
        let tol = Tolerance::for_f32_accumulation(8);
        let empty = || crate::validate::validate("Q", &[], (&[], &[]), 1, tol);
        let run = RunTimings {
            wall: Duration::from_millis(end_to_end_ms),
            ..Default::default()
        };
        Measurement {
            tolerance: tol,
            report: QkvReport {
                q: empty(),
                k: empty(),
                v: empty(),
            },
            precision: None,
            quantization: None,
            first: run,
            runs: vec![run; 3],
            reference: Duration::ZERO,
            checked_rows: 0,
            kernel: Some(KernelTimes {
                samples: samples_ms
                    .iter()
                    .map(|&m| Duration::from_millis(m))
                    .collect(),
                per_sample: 1,
                warmups: 0,
                timer: KernelTimer::GpuTimestamp,
            }),
        }
    }

    #[test]
    fn a_kernel_slower_than_its_run_or_samples_far_apart_are_called_noisy() {
        // Issue #32: on a busy machine a bench row showed the kernel slower than end to end.
        assert_eq!(measurement(&[10, 10, 11], 20).noise(), None);
        let slow = measurement(&[85, 86, 85], 77).noise().expect("noisy");
        assert!(slow.contains("slower than the whole run"), "{slow}");
        let apart = measurement(&[10, 30, 11], 40).noise().expect("noisy");
        assert!(
            apart.contains("samples range from 10.000 to 30.000"),
            "{apart}"
        );
    }
}
