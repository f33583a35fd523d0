//! Steady-state kernel timing: every chunk's dispatches of the batch, run `warmups` times
//! untimed and then `repeats` times timed, all queued back to back so the GPU never idles
//! between them. What it needs beyond the engine's own buffers (timestamp queries for up to
//! [`MAX_REPEATS`] passes, params and bind groups for a short last chunk) is made on the
//! first call and kept for the next.
//!
//! Why: a GPU lowers its clocks when idle, and a run's host work between dispatches
//! (copying, validating) is long enough for that. One dispatch after such a gap can run
//! several times slower than the same dispatch in a busy stream (seen on an H100: 5x), so
//! per-run timestamps measure the clock governor, not the kernel.
//!
//! Every timed dispatch follows an untimed pass that fills Q, K and V with NaN, as every
//! checked run's does: outputs left from the dispatch before would hold the right numbers
//! already, and a kernel that skipped such elements would be timed as if it had done the
//! work (issue #32: 586% of the measured peak). With timestamps each chunk's pass is timed on
//! its own and a sample is their sum; on the host clock the fills are inside the sample.

use super::buffers::params_buffers;
use super::engine::Engine;
use super::timing::{KernelTimer, KernelTimes, Queries};
use crate::error::{Error, Result};
use std::time::Duration;
use web_time::Instant;

/// The most timed repeats one call takes (what one timestamp query set holds: 4096 queries).
pub const MAX_REPEATS: u32 = 2000;

/// The shortest sample where the clocks are coarse (the browser's: WebGPU timestamps, and
/// `performance.now()` on a page that is not cross-origin isolated, are rounded to 100 µs):
/// each sample there holds enough back-to-back batches to last this long, so that the
/// rounding costs under 1%. Natively a sample is one batch.
const COARSE_SAMPLE: Duration = Duration::from_millis(10);

/// The most batches one sample holds.
const MAX_PER_SAMPLE: u32 = 1024;

/// What steady-state timing keeps between calls.
#[derive(Default)]
pub(super) struct SteadyTiming {
    /// Room for [`MAX_REPEATS`] timed passes, where the adapter has timestamps.
    queries: Option<Queries>,
    /// Params and bind groups for the last chunk when it is shorter than the others, bound
    /// to the first buffer set like its own groups.
    last: Option<(Vec<wgpu::Buffer>, Vec<wgpu::BindGroup>)>,
}

/// Times the engine's batch: see the module documentation. The dispatches read the X rows
/// last uploaded into the first buffer set and overwrite its outputs.
pub(super) async fn time_kernel(
    engine: &Engine<'_>,
    kept: &mut SteadyTiming,
    warmups: u32,
    repeats: u32,
) -> Result<KernelTimes> {
    if !(1..=MAX_REPEATS).contains(&repeats) {
        return Err(Error::Input(format!(
            "kernel timing repeats must be 1 to {MAX_REPEATS}, not {repeats}"
        )));
    }
    kept.prepare(engine)?;
    let plan = &engine.plan;
    let (full, slot) = (plan.chunk_tokens, &engine.slots[0]);
    // The first buffer set's own groups serve the full chunks; a later run rewrites their
    // params chunk by chunk anyway.
    engine.write_params(&slot.params, full)?;
    let last_groups = match &kept.last {
        Some((params, groups)) => {
            engine.write_params(params, plan.chunk(plan.chunks() - 1).len() as u32)?;
            groups
        }
        None => &slot.bind_groups,
    };
    let timer = Timer {
        engine,
        queries: kept.queries.as_ref(),
        last_groups,
        label: format!("timing kernel {}", engine.spec),
    };
    let ctx = engine.ctx;
    for _ in 0..warmups {
        let commands = timer.encode(None, 1)?;
        ctx.checked(&timer.label, || ctx.queue.submit([commands]))?;
    }
    let per = timer.batches_per_sample().await?;
    let samples = timer
        .measure(repeats, per)
        .await?
        .into_iter()
        .map(|d| d / per)
        .collect();
    Ok(KernelTimes {
        samples,
        per_sample: per,
        warmups,
        timer: if timer.queries.is_some() {
            KernelTimer::GpuTimestamp
        } else {
            KernelTimer::Host
        },
    })
}

impl SteadyTiming {
    /// Makes what timing needs and does not have yet: the last chunk's params and groups
    /// where it is shorter, the timestamp queries where the device has them.
    fn prepare(&mut self, engine: &Engine<'_>) -> Result<()> {
        let (ctx, plan) = (engine.ctx, &engine.plan);
        let device = &ctx.device;
        let last = plan.chunk(plan.chunks() - 1).len() as u32;
        let during = "setting up kernel timing";
        if last != plan.chunk_tokens && self.last.is_none() {
            let layout = ctx.layout(engine.spec.binding)?;
            let slot = &engine.slots[0];
            self.last = Some(ctx.checked(during, || {
                let params = params_buffers(device, plan);
                let epilogue = engine.epilogue.as_ref();
                let groups = slot.bind(device, layout, &params, (&engine.weights, epilogue));
                (params, groups)
            })?);
        }
        if ctx.has_timestamps() && self.queries.is_none() {
            self.queries = Some(ctx.checked(during, || {
                Queries::new(device, &ctx.queue, MAX_REPEATS, "kernel timing")
            })?);
        }
        Ok(())
    }
}

/// One timing of the engine's batch, set up.
struct Timer<'a, 'c> {
    engine: &'a Engine<'c>,
    queries: Option<&'a Queries>,
    /// The bind groups of the last chunk (the first set's own where it is full).
    last_groups: &'a [wgpu::BindGroup],
    label: String,
}

impl Timer<'_, '_> {
    /// Query pairs one sample takes: one per chunk dispatch of each of its `per` batches
    /// where the query set holds that many, else one bracketing the whole sample.
    fn pairs_per_sample(&self, per: u32) -> u32 {
        let dispatches = per.saturating_mul(self.engine.plan.chunks());
        match self.queries {
            Some(q) if dispatches <= q.pairs() => dispatches,
            _ => 1,
        }
    }

    /// `per` batches, every chunk's dispatches, each in its own pass after an untimed pass
    /// that fills Q, K and V with NaN: a timed dispatch never finds its outputs already
    /// holding the right numbers, so a kernel that skips elements already written cannot be
    /// timed as if it had done the work. With `first` (a query pair), each kernel pass is
    /// timed into its own pair from `first` on, or where a sample takes one pair
    /// ([`pairs_per_sample`](Self::pairs_per_sample)), the first pass's start and the last
    /// one's end go to `first` (the fills between are then inside the interval: an
    /// over-estimate, never an under-estimate). One submission per sample: all are queued
    /// before waiting, so they run back to back, and no single submission runs long enough
    /// to trip a driver watchdog.
    fn encode(&self, first: Option<u32>, per: u32) -> Result<wgpu::CommandBuffer> {
        let (engine, plan) = (self.engine, &self.engine.plan);
        let slot = &engine.slots[0];
        let each = self.pairs_per_sample(per) > 1;
        let dispatches = per * plan.chunks();
        let mut encoder =
            engine
                .ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("kernel timing"),
                });
        engine.ctx.checked(&self.label, || {
            for i in 0..dispatches {
                {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("fill_nan (untimed)"),
                        timestamp_writes: None,
                    });
                    engine.encode_fill(&mut pass, 0);
                }
                let writes = self.queries.zip(first).map(|(q, pair)| {
                    if each {
                        q.writes(pair + i)
                    } else {
                        let w = q.writes(pair);
                        wgpu::ComputePassTimestampWrites {
                            beginning_of_pass_write_index: w
                                .beginning_of_pass_write_index
                                .filter(|_| i == 0),
                            end_of_pass_write_index: w
                                .end_of_pass_write_index
                                .filter(|_| i + 1 == dispatches),
                            ..w
                        }
                    }
                });
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(engine.spec.kernel().name()),
                    timestamp_writes: writes,
                });
                let c = i % plan.chunks();
                let rows = plan.chunk(c).len() as u32;
                let groups = if rows == plan.chunk_tokens {
                    &slot.bind_groups[..]
                } else {
                    self.last_groups
                };
                engine.encode_dispatches(&mut pass, groups, rows);
                engine.encode_epilogue(&mut pass, groups, rows);
            }
            encoder.finish()
        })
    }

    /// `count` samples of `per` batches each, their durations as measured: with timestamps,
    /// the sum of each sample's kernel passes (in rounds of as many samples as the query set
    /// holds); on the host clock, each sample's submit-and-wait, the NaN fills included.
    async fn measure(&self, count: u32, per: u32) -> Result<Vec<Duration>> {
        let (ctx, label) = (self.engine.ctx, &self.label);
        if let Some(q) = self.queries {
            let each = self.pairs_per_sample(per);
            let per_round = (q.pairs() / each).max(1);
            let mut samples = Vec::with_capacity(count as usize);
            while (samples.len() as u32) < count {
                let round = per_round.min(count - samples.len() as u32);
                for i in 0..round {
                    let commands = self.encode(Some(i * each), per)?;
                    ctx.checked(label, || ctx.queue.submit([commands]))?;
                }
                let mut encoder =
                    ctx.device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                            label: Some("kernel timing resolve"),
                        });
                q.resolve(&mut encoder, round * each);
                let index = ctx.checked(label, || ctx.queue.submit([encoder.finish()]))?;
                ctx.finished(index, label).await?;
                let mut ticks = vec![0u64; 2 * (round * each) as usize];
                ctx.read_mapped_async(q.readback(), &mut ticks, label)
                    .await?;
                let passes = q.durations(&ticks);
                samples.extend(
                    passes
                        .chunks(each as usize)
                        .map(|p| p.iter().sum::<Duration>()),
                );
            }
            Ok(samples)
        } else {
            // Host clock: each sample's submit-and-wait (the warm-ups are still queued ahead
            // of the first one).
            let mut samples = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let commands = self.encode(None, per)?;
                let start = Instant::now();
                let index = ctx.checked(label, || ctx.queue.submit([commands]))?;
                ctx.finished(index, label).await?;
                samples.push(start.elapsed());
            }
            Ok(samples)
        }
    }

    /// Batches per sample: 1, or where the clocks are coarse, grown until a sample lasts
    /// long enough.
    async fn batches_per_sample(&self) -> Result<u32> {
        let mut per = 1;
        if self.engine.ctx.summary.coarse_clocks() {
            loop {
                let one = self.measure(1, per).await?[0];
                if one >= COARSE_SAMPLE || per >= MAX_PER_SAMPLE {
                    break;
                }
                let grow = if one.is_zero() {
                    16
                } else {
                    (COARSE_SAMPLE.as_secs_f64() / one.as_secs_f64()).ceil() as u32 + 1
                };
                per = per.saturating_mul(grow.max(2)).min(MAX_PER_SAMPLE);
            }
        }
        Ok(per)
    }
}

/// Untimed repeats to run before timing a batch whose kernel took about `estimate`: on a
/// GPU, enough for about half a second of work (at least 3), so that clocks have risen from
/// idle; on a CPU driver, which has no such clocks, none.
pub(super) fn steady_warmups(on_cpu: bool, estimate: Duration) -> u32 {
    if on_cpu {
        return 0;
    }
    let per = estimate.as_secs_f64().max(1e-6);
    ((0.5 / per).ceil() as u32).clamp(3, MAX_REPEATS)
}
