//! How projections are timed: the kinds of timer, where a run's time went, the samples of
//! steady-state kernel timing, the one median every report uses, and [`Queries`], the one
//! timestamp-query type behind both in-run and steady-state kernel times.

use serde::Serialize;
use std::time::Duration;

/// How a kernel time was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelTimer {
    /// GPU timestamps written at the start and end of the compute pass.
    GpuTimestamp,
    /// Host clock around submit-and-wait of the dispatch alone (includes submission overhead;
    /// used where the adapter has no TIMESTAMP_QUERY).
    #[default]
    Host,
}

/// Where the time of one run went, summed over its chunks. `total()` is the end-to-end time a
/// caller waits.
///
/// A run is four stages: producing X (the source), uploading it (host work that gets a
/// chunk onto the GPU: the queue's copy, or unmapping the staging buffer the source wrote and
/// encoding the chunk), the GPU (the copies over the bus and the kernel), and consuming Q, K, V
/// (the sink). `input`, `upload`, `dispatch_wall` and `readback` are each stage's busy time;
/// streamed, they overlap, and the run can go no faster than the busiest ([`bound`](Self::bound)).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RunTimings {
    /// Host clock: getting X onto the GPU: writing it through the queue (without streaming,
    /// also waiting for the copy); in the pipeline, unmapping the staging buffer the source
    /// wrote X into, and encoding and submitting the chunk.
    pub upload: Duration,
    /// The fused dispatches alone.
    pub kernel: Duration,
    /// Of `kernel`, the epilogue pass (QK-norm, RoPE: [`crate::epilogue`]) in its own timed
    /// pass; zero without an epilogue, or without GPU timestamps (the host timer cannot tell
    /// the passes apart).
    pub epilogue: Duration,
    /// How `kernel` was measured.
    pub kernel_timer: KernelTimer,
    /// Host clock: the GPU stage (without streaming, submit-and-wait of each dispatch, which
    /// equals `kernel` under the host timer; in the pipeline, the time any chunk was on the
    /// GPU, from its submission to its results mapped: the copies over the bus and the
    /// kernel).
    pub dispatch_wall: Duration,
    /// Host clock: from a chunk's results being ready to the sink having taken them (read in
    /// place from the mapped memory by whatever the sink does: storing, validating, writing a
    /// file).
    pub readback: Duration,
    /// Host clock: the source producing X chunks (copying, reading a file, generating).
    pub input: Duration,
    /// Host clock: the whole run, start to end.
    pub wall: Duration,
    /// Token chunks the batch ran in.
    pub chunks: u32,
    /// Column blocks per chunk (1 unless W was split to fit the device).
    pub col_blocks: u32,
    /// Whether chunks were streamed (stages overlapping).
    pub streamed: bool,
    /// Chunk buffer sets in flight (1 without streaming).
    pub buffer_sets: u32,
    /// Whether the stages ran on threads of their own (the native pipeline) rather than one
    /// after another on one thread.
    pub threaded: bool,
}

impl RunTimings {
    /// The end-to-end time of the run (host clock).
    pub fn total(&self) -> Duration {
        self.wall
    }

    /// Host-side transfer and I/O work: upload + readback + input.
    pub fn transfers(&self) -> Duration {
        self.upload + self.readback + self.input
    }

    /// Each stage's name and busy time: producing X, uploading, the GPU, consuming Q, K, V.
    pub fn stages(&self) -> [(&'static str, Duration); 4] {
        [
            ("produce X", self.input),
            ("upload", self.upload),
            ("GPU", self.dispatch_wall),
            ("consume Q, K, V", self.readback),
        ]
    }

    /// The busiest stage: what bounds a streamed run (the others wait for it). The first of
    /// equals.
    pub fn bound(&self) -> (&'static str, Duration) {
        self.stages()
            .into_iter()
            .fold(("produce X", Duration::ZERO), |best, s| {
                if s.1 > best.1 {
                    s
                } else {
                    best
                }
            })
    }

    /// The part of [`transfers`](Self::transfers) that ran while kernels did, i.e. did not
    /// add to the wall time: (kernel + transfers - wall), within [0, transfers].
    pub fn hidden(&self) -> Duration {
        (self.kernel + self.transfers())
            .saturating_sub(self.wall)
            .min(self.transfers())
    }
}

/// (median, min, max) of `values` (non-empty; NaN for none). The median of an even count is
/// the mean of the middle two. Every median the crate and the CLI report comes from here.
pub fn spread(values: &[f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

/// Kernel times of back-to-back dispatches of the whole batch (see
/// [`Projector::time_kernel`](super::Projector::time_kernel)).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelTimes {
    /// One time per timed repeat: every chunk's dispatches of the batch.
    pub samples: Vec<Duration>,
    /// Batches each sample ran back to back, its time divided among them: 1, except where
    /// the clocks are coarse (the browser's, rounded to 100 µs), where a sample lasts at
    /// least 10 ms.
    pub per_sample: u32,
    /// Untimed repeats run just before, back to back with the timed ones.
    pub warmups: u32,
    /// How the samples were measured.
    pub timer: KernelTimer,
}

impl KernelTimes {
    /// (median, min, max) of the samples, by [`spread`].
    pub fn spread(&self) -> (Duration, Duration, Duration) {
        // In whole nanoseconds, which f64 holds exactly.
        let ns: Vec<f64> = self.samples.iter().map(|d| d.as_nanos() as f64).collect();
        let (median, min, max) = spread(&ns);
        let d = |ns: f64| Duration::from_nanos(ns.max(0.0).round() as u64);
        (d(median), d(min), d(max))
    }

    /// The median sample.
    pub fn median(&self) -> Duration {
        self.spread().0
    }
}

/// Timestamp queries in pairs (start and end of one compute pass each), with the buffers to
/// resolve and read them: used for the kernel time of each chunk in a run and for
/// steady-state timing alike.
#[derive(Debug)]
pub(crate) struct Queries {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    pairs: u32,
    period_ns: f64,
}

impl Queries {
    /// Room for `pairs` timed passes.
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue, pairs: u32, label: &str) -> Self {
        let bytes = Self::bytes(pairs);
        Self {
            set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some(label),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * pairs,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&format!("{label} resolve")),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&format!("{label} readback")),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            pairs,
            period_ns: queue.get_timestamp_period() as f64,
        }
    }

    /// Bytes of `pairs` resolved pairs (two u64 ticks each).
    pub(crate) const fn bytes(pairs: u32) -> u64 {
        16 * pairs as u64
    }

    /// How many passes it can time.
    pub(crate) fn pairs(&self) -> u32 {
        self.pairs
    }

    /// The timestamp writes of pass `pair`.
    pub(crate) fn writes(&self, pair: u32) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(2 * pair),
            end_of_pass_write_index: Some(2 * pair + 1),
        }
    }

    /// Encodes the resolve of the first `pairs` pairs and their copy into the readback buffer.
    pub(crate) fn resolve(&self, encoder: &mut wgpu::CommandEncoder, pairs: u32) {
        encoder.resolve_query_set(&self.set, 0..2 * pairs, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, Self::bytes(pairs));
    }

    /// The MAP_READ buffer the ticks land in.
    pub(crate) fn readback(&self) -> &wgpu::Buffer {
        &self.readback
    }

    /// The duration of each pass from its (start, end) ticks.
    pub(crate) fn durations(&self, ticks: &[u64]) -> Vec<Duration> {
        ticks
            .chunks_exact(2)
            .map(|pair| {
                let ns = pair[1].saturating_sub(pair[0]) as f64 * self.period_ns;
                Duration::from_nanos(ns as u64)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_median_for_odd_and_even_counts() {
        assert_eq!(spread(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
        assert!(spread(&[]).0.is_nan());
        let times = KernelTimes {
            samples: [4, 1, 2, 3].map(Duration::from_millis).to_vec(),
            per_sample: 1,
            warmups: 0,
            timer: KernelTimer::Host,
        };
        assert_eq!(times.median(), Duration::from_micros(2500));
    }
}
