//! What this adapter can do through WGSL, measured (`qkv peak`): the f32 FMA rate, the
//! multiply-add rate of each cooperative-matrix configuration it offers, and device memory
//! bandwidth from a copy. Each is a kernel built to reach the limit and nothing else
//! (registers only and independent chains for the arithmetic, 16-byte coalesced loads and
//! stores over buffers far past any cache for the copy), timed by GPU timestamps where the
//! adapter has them, on enough workgroups to fill the GPU, after warm-ups on a GPU (whose
//! clocks ramp from idle), the fastest of [`SAMPLES`] samples (a peak: noise from other work
//! on the machine only ever slows a sample down).
//!
//! A kernel's figure divided by the peak of its arithmetic ([`Peak::compute_for`]) is its
//! share of what this GPU does through WGSL; divided by the roofline
//! ([`Peak::roofline_for`]: the compute peak or the bandwidth times the bytes the shape must
//! move at least, whichever is lower) it says how far the kernel is from the bound that
//! applies to its shape. `qkv run` and `qkv bench` print both once a peak is cached.

use crate::adapter::{AdapterSummary, CoopMatrix};
use crate::binding::{Layout, Slot};
use crate::context::GpuContext;
use crate::error::{Error, Result};
use crate::kernels::{Arithmetic, KernelSpec, ShaderSource, PEAK_COOPMAT_SOURCES};
use crate::projector::timing::Queries;
use crate::projector::KernelTimer;
use crate::shape::QkvShape;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use web_time::Instant;

mod share;
pub use share::{fell, Share, FELL_BELOW};

/// Timed samples per measurement; the fastest is kept.
pub const SAMPLES: u32 = 5;

/// Bumped when the measuring kernels change, so that a cached peak of older kernels is
/// measured again.
pub const VERSION: u32 = 2;

/// The range a measured compute rate can fall in, GFLOP/s: from a millionth of a GFLOP/s
/// to ten PFLOP/s.
pub const PLAUSIBLE_GFLOPS: (f64, f64) = (1e-3, 1e7);

/// The range a measured bandwidth can fall in, GB/s.
pub const PLAUSIBLE_GBS: (f64, f64) = (1e-3, 1e6);

/// One cooperative-matrix configuration's measured rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoopPeak {
    /// M = N = K of the matrices.
    pub tile: u32,
    /// An f32 accumulator (else f16).
    pub f32_accumulator: bool,
    /// Multiply-adds of f16 inputs, as GFLOP/s (2 flops each).
    pub gflops: f64,
}

impl CoopPeak {
    /// As `qkv adapters` names the configuration: `16x16x16 f16 -> f32`.
    pub fn name(&self) -> String {
        CoopMatrix::f16_inputs(self.tile, self.f32_accumulator).to_string()
    }
}

/// What an adapter does through WGSL, measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peak {
    /// [`VERSION`] of the kernels that measured it.
    pub version: u32,
    /// The adapter, backend and driver it was measured on.
    pub adapter: String,
    /// The backend.
    pub backend: String,
    /// The driver and its version.
    pub driver: String,
    /// How the samples were timed.
    pub timer: KernelTimer,
    /// f32 FMAs, as GFLOP/s (2 flops each).
    pub f32_fma_gflops: f64,
    /// Each cooperative-matrix configuration with f16 inputs the adapter offers.
    pub coop: Vec<CoopPeak>,
    /// Device memory bandwidth, GB/s: bytes read plus bytes written by a copy, per second.
    pub copy_gbs: f64,
}

/// The peak compute rate that applies to a kernel, and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputePeak {
    /// GFLOP/s.
    pub gflops: f64,
    /// "f32 FMA", or the cooperative-matrix configuration.
    pub what: String,
}

impl Peak {
    /// The cache key of an adapter: name, backend and driver (a driver update measures again).
    pub fn key(summary: &AdapterSummary) -> String {
        format!(
            "{} | {} | {}",
            summary.name, summary.backend, summary.driver
        )
    }

    /// Whether this peak was measured on `summary`'s adapter and driver by the current
    /// kernels.
    pub fn is_for(&self, summary: &AdapterSummary) -> bool {
        self.version == VERSION
            && (
                self.adapter.as_str(),
                self.backend.as_str(),
                self.driver.as_str(),
            ) == (
                summary.name.as_str(),
                summary.backend.as_str(),
                summary.driver.as_str(),
            )
    }

    /// Why this peak cannot be a measurement, if it cannot: a rate that is not finite, not
    /// positive, or outside [`PLAUSIBLE_GFLOPS`] / [`PLAUSIBLE_GBS`] (a cache file edited or
    /// damaged: 0 would print every share as infinite, a negative one as negative).
    pub fn implausible(&self) -> Option<String> {
        let rates = std::iter::once(("f32 FMA", self.f32_fma_gflops, PLAUSIBLE_GFLOPS, "GFLOP/s"))
            .chain(self.coop.iter().map(|c| {
                (
                    "a cooperative-matrix",
                    c.gflops,
                    PLAUSIBLE_GFLOPS,
                    "GFLOP/s",
                )
            }))
            .chain(std::iter::once((
                "copy",
                self.copy_gbs,
                PLAUSIBLE_GBS,
                "GB/s",
            )));
        for (what, v, (lo, hi), unit) in rates {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return Some(format!(
                    "its {what} rate is {v:e} {unit}, outside {lo:e} to {hi:e}"
                ));
            }
        }
        None
    }

    /// The rate of the arithmetic `spec` runs on: its cooperative-matrix configuration's, or
    /// the f32 FMA rate (every other kernel multiplies and adds in f32, whatever it stores);
    /// None for a configuration that was not measured.
    pub fn compute_for(&self, spec: &KernelSpec) -> Option<ComputePeak> {
        match spec.arithmetic {
            Arithmetic::Matrix {
                tile,
                f32_accumulator,
            } => self
                .coop
                .iter()
                .find(|c| c.tile == tile && c.f32_accumulator == f32_accumulator)
                .map(|c| ComputePeak {
                    gflops: c.gflops,
                    what: c.name(),
                }),
            Arithmetic::F32Fma => Some(ComputePeak {
                gflops: self.f32_fma_gflops,
                what: "f32 FMA".into(),
            }),
        }
    }

    /// The roofline of `spec` on `shape`, GFLOP/s: the lower of its compute peak and the
    /// bandwidth times the shape's arithmetic intensity (its flops over the bytes it must
    /// move at least: X and W each read once in its own type (W kept in a checkpoint's
    /// formats: its stored bytes, [`KernelSpec::w_block_bytes`]), Q, K and V written once in
    /// theirs ([`KernelSpec::types`]), the bias read once, in f32).
    pub fn roofline_for(&self, spec: &KernelSpec, shape: &QkvShape) -> Option<f64> {
        let compute = self.compute_for(spec)?.gflops;
        let size = |e: crate::element::ElementType| e.size() as f64;
        let n_out = shape.n_out() as f64;
        let w_bytes = match spec.w_block_bytes(shape) {
            // Less the padding, never read as data.
            Some(b) => b.saturating_sub(crate::kernels::W_BLOCK_PAD) as f64,
            None => shape.w_len() as f64 * size(spec.types.w),
        };
        let bytes = shape.x_len() as f64 * size(spec.types.x)
            + w_bytes
            + shape.tokens as f64 * n_out * size(spec.types.out)
            + if shape.bias { n_out * 4.0 } else { 0.0 };
        let bound = self.copy_gbs * shape.flops() / bytes;
        Some(compute.min(bound))
    }
}

/// The peak cache, `peak.json` beside the tuning cache (`dir`, else as
/// [`crate::tune::cache_dir`] finds it); None where no cache directory is known.
#[cfg(feature = "native")]
pub fn cache(dir: Option<std::path::PathBuf>) -> Option<crate::tune::cache::Cache<Peak>> {
    let dir = crate::tune::cache_dir(dir)?;
    Some(crate::tune::cache::Cache::of(
        dir.join("peak.json"),
        "peak cache",
        "measure",
    ))
}

/// The cached peak of `summary`'s adapter and driver, measured by the current kernels, if
/// there is one; and notes on anything wrong with the cache.
#[cfg(feature = "native")]
pub fn cached(
    summary: &AdapterSummary,
    dir: Option<std::path::PathBuf>,
) -> (Option<Peak>, Vec<String>) {
    let Some(cache) = cache(dir) else {
        return (None, Vec::new());
    };
    let (mut entries, mut notes) = cache.load();
    let peak = entries
        .remove(&Peak::key(summary))
        .filter(|p| p.is_for(summary));
    match peak.as_ref().and_then(Peak::implausible) {
        Some(why) => {
            notes.push(format!(
                "the cached peak of this adapter is not a measurement ({why}): ignored;                  `qkv peak` measures it again"
            ));
            (None, notes)
        }
        None => (peak, notes),
    }
}

/// Keeps `peak` in the cache (`dir` as for [`cache`]); notes, or why it could not.
#[cfg(feature = "native")]
pub fn store(
    peak: &Peak,
    dir: Option<std::path::PathBuf>,
) -> std::result::Result<Vec<String>, String> {
    let cache = cache(dir).ok_or_else(|| {
        "no cache directory is known (set QKV_CACHE_DIR): the next run will measure again"
            .to_string()
    })?;
    let key = format!("{} | {} | {}", peak.adapter, peak.backend, peak.driver);
    cache.store(&key, peak.clone())
}

/// Progress of a measurement: what is being measured now.
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// Measures `ctx`'s adapter (a few seconds on a GPU; up to a minute on a CPU driver).
#[cfg(not(target_arch = "wasm32"))]
pub fn measure(ctx: &GpuContext, progress: Progress<'_>) -> Result<Peak> {
    pollster::block_on(measure_async(ctx, progress))
}

/// As [`measure`], as a future.
pub async fn measure_async(ctx: &GpuContext, progress: Progress<'_>) -> Result<Peak> {
    let bench = Bench::new(ctx)?;
    let s = &ctx.summary;
    progress("f32 FMA");
    let fma = bench.rate(&Work::fma(ctx)).await?;
    let mut coop = Vec::new();
    for c in &s.cooperative_matrix {
        if c.inputs != "f16" || !matches!(c.size, 8 | 16) {
            continue;
        }
        let f32_accumulator = c.accumulator == "f32";
        progress(&format!("cooperative matrices {c}"));
        let work = Work::coop(ctx, c.size, f32_accumulator);
        coop.push(CoopPeak {
            tile: c.size,
            f32_accumulator,
            gflops: bench.rate(&work).await? / 1e9,
        });
    }
    progress("memory bandwidth (copy)");
    let copy = bench.rate(&Work::copy(ctx)).await?;
    Ok(Peak {
        version: VERSION,
        adapter: s.name.clone(),
        backend: s.backend.clone(),
        driver: s.driver.clone(),
        timer: if ctx.has_timestamps() {
            KernelTimer::GpuTimestamp
        } else {
            KernelTimer::Host
        },
        f32_fma_gflops: fma / 1e9,
        coop,
        copy_gbs: copy / 1e9,
    })
}

/// The shaders that measure, with the work one workgroup does.
pub const FMA_SOURCE: ShaderSource = crate::kernels::PEAK_FMA;
/// The copy kernel.
pub const COPY_SOURCE: ShaderSource = crate::kernels::PEAK_COPY;

/// One measuring kernel: its pipeline constants, its workgroup, and the work (flops or
/// bytes) of one dispatch of `groups` workgroups.
struct Work {
    what: &'static str,
    source: ShaderSource,
    constants: Vec<(&'static str, f64)>,
    /// Work per workgroup (flops), or None for the copy, whose work is fixed per dispatch.
    per_group: Option<f64>,
    /// The copy's bytes per dispatch and its fixed grid.
    copy: Option<(u64, u32)>,
}

impl Work {
    fn fma(ctx: &GpuContext) -> Self {
        let wg = ctx.grid_stride_workgroup();
        let iters = 1024;
        Self {
            what: "the f32 FMA rate",
            source: FMA_SOURCE,
            constants: vec![("WG", wg as f64), ("ITERS", iters as f64)],
            per_group: Some(64.0 * iters as f64 * wg as f64),
            copy: None,
        }
    }

    fn coop(ctx: &GpuContext, tile: u32, f32_accumulator: bool) -> Self {
        let sg = ctx.summary.subgroup_size.0.max(1);
        // Four subgroups, as the probe that found the rate ran; within the device's limit.
        let subgroups = (4 * sg).min(ctx.grid_stride_workgroup().max(sg)) / sg;
        let iters = 256;
        let i = if tile == 16 { 2 } else { 0 } + if f32_accumulator { 0 } else { 1 };
        Self {
            what: "the cooperative-matrix rate",
            source: PEAK_COOPMAT_SOURCES[i],
            constants: vec![("WG", (subgroups * sg) as f64), ("ITERS", iters as f64)],
            per_group: Some(2.0 * (tile as f64).powi(3) * 16.0 * iters as f64 * subgroups as f64),
            copy: None,
        }
    }

    fn copy(ctx: &GpuContext) -> Self {
        let l = ctx.limits();
        // Far past any GPU's cache (an H200's L2 is 50 MB); smaller on a CPU driver, whose
        // "device memory" is the host's and whose copy is slow.
        let want: u64 = if ctx.is_cpu() { 32 << 20 } else { 256 << 20 };
        let bytes = want
            .min(l.max_storage_buffer_binding_size)
            .min(l.max_buffer_size)
            .min(16 * u32::MAX as u64)
            / 16
            * 16;
        let wg = ctx.grid_stride_workgroup();
        let groups = if ctx.is_cpu() { 64 } else { 4096 }
            .min(l.max_compute_workgroups_per_dimension)
            .max(1);
        Self {
            what: "memory bandwidth",
            source: COPY_SOURCE,
            constants: vec![("WG", wg as f64), ("N", (bytes / 16) as f64)],
            per_group: None,
            copy: Some((bytes, groups)),
        }
    }
}

/// What every measurement shares: the layout (two read-write buffers), the control word
/// (data[0] = 0, so the measuring kernels' stores never run) and timestamp queries.
struct Bench<'a> {
    ctx: &'a GpuContext,
    layout: Layout,
    data: wgpu::Buffer,
    queries: Option<Queries>,
}

impl<'a> Bench<'a> {
    fn new(ctx: &'a GpuContext) -> Result<Self> {
        let device = &ctx.device;
        ctx.checked("setting up the peak measurement", || {
            let rw = Slot::Storage { read_only: false };
            Self {
                ctx,
                layout: Layout::new(device, "peak", &[rw, rw]),
                data: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("peak control word"),
                    size: 16,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                }),
                queries: ctx
                    .has_timestamps()
                    .then(|| Queries::new(device, &ctx.queue, 1, "peak timestamps")),
            }
        })
    }

    /// The rate of `work` (flops or bytes per second): sized until a sample lasts the
    /// target, warmed up on a GPU, then the fastest of [`SAMPLES`] samples.
    async fn rate(&self, work: &Work) -> Result<f64> {
        let ctx = self.ctx;
        let during = format!("measuring {}", work.what);
        let pipeline = ctx.pipeline(work.source, &work.constants, &self.layout.pipeline)?;
        let max_groups = ctx.limits().max_compute_workgroups_per_dimension.max(1);
        // The second binding: the copy's source (the first is its destination, so the
        // control word is not needed there), else the never-written sink.
        let (first, second) = match work.copy {
            Some((bytes, _)) => {
                let buffer = |label| {
                    ctx.checked(&during, || {
                        ctx.device.create_buffer(&wgpu::BufferDescriptor {
                            label: Some(label),
                            size: bytes,
                            usage: wgpu::BufferUsages::STORAGE,
                            mapped_at_creation: false,
                        })
                    })
                };
                (
                    Some(buffer("peak copy destination")?),
                    buffer("peak copy source")?,
                )
            }
            None => (
                None,
                ctx.checked(&during, || {
                    ctx.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("peak sink"),
                        size: 64 * 1024,
                        usage: wgpu::BufferUsages::STORAGE,
                        mapped_at_creation: false,
                    })
                })?,
            ),
        };
        let group = ctx.checked(&during, || {
            ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("peak bind group"),
                layout: &self.layout.group,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: first.as_ref().unwrap_or(&self.data).as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: second.as_entire_binding(),
                    },
                ],
            })
        })?;
        let sample = |groups: u32, dispatches: u32| {
            self.sample(&pipeline, &group, groups, dispatches, &during)
        };
        let work_of = |groups: u32, dispatches: u32| match work.copy {
            Some((bytes, _)) => 2.0 * bytes as f64 * dispatches as f64,
            None => work.per_group.unwrap_or(0.0) * groups as f64 * dispatches as f64,
        };
        let target = if ctx.is_cpu() {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(20)
        };
        // Size a sample: more workgroups (up to the device's limit), then more dispatches.
        let mut groups = match work.copy {
            Some((_, g)) => g,
            None if ctx.is_cpu() => 4,
            None => 1024,
        }
        .min(max_groups);
        let mut t = sample(groups, 1).await?;
        while work.copy.is_none() && t < target / 2 && groups < max_groups {
            let factor = (target.as_secs_f64() / t.as_secs_f64().max(1e-7)).clamp(2.0, 16.0);
            groups = ((groups as f64 * factor) as u32).min(max_groups);
            t = sample(groups, 1).await?;
        }
        let dispatches =
            ((target.as_secs_f64() / t.as_secs_f64().max(1e-7)).ceil() as u32).clamp(1, 1000);
        // A GPU lowers its clocks when idle: keep it busy for a third of a second first.
        if !ctx.is_cpu() {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(300) {
                sample(groups, dispatches).await?;
            }
        }
        let mut rates = Vec::new();
        for _ in 0..SAMPLES {
            let t = sample(groups, dispatches).await?;
            rates.push(work_of(groups, dispatches) / t.as_secs_f64().max(1e-9));
        }
        Ok(crate::projector::spread(&rates).2)
    }

    /// One sample: `dispatches` dispatches of `groups` workgroups in one compute pass, timed
    /// by the pass's timestamps, or by the host clock around submit-and-wait.
    async fn sample(
        &self,
        pipeline: &wgpu::ComputePipeline,
        group: &wgpu::BindGroup,
        groups: u32,
        dispatches: u32,
        during: &str,
    ) -> Result<Duration> {
        let ctx = self.ctx;
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some(during),
            });
        ctx.checked(during, || {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(during),
                timestamp_writes: self.queries.as_ref().map(|q| q.writes(0)),
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, group, &[]);
            for _ in 0..dispatches {
                pass.dispatch_workgroups(groups, 1, 1);
            }
        })?;
        if let Some(q) = &self.queries {
            q.resolve(&mut encoder, 1);
        }
        let start = Instant::now();
        let index = ctx.checked(during, || ctx.queue.submit([encoder.finish()]))?;
        ctx.finished(index, during).await?;
        let host = start.elapsed();
        match &self.queries {
            Some(q) => {
                let mut ticks = [0u64; 2];
                ctx.read_mapped_async(q.readback(), &mut ticks, during)
                    .await?;
                let t = q.durations(&ticks)[0];
                if t.is_zero() {
                    return Err(Error::Gpu {
                        during: during.into(),
                        message: "the timestamps of the pass were equal".into(),
                    });
                }
                Ok(t)
            }
            None => Ok(host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{CoopBlock, KernelConfig};

    fn peak() -> Peak {
        Peak {
            version: VERSION,
            adapter: "gpu".into(),
            backend: "Vulkan".into(),
            driver: "1".into(),
            timer: KernelTimer::GpuTimestamp,
            f32_fma_gflops: 50_000.0,
            coop: vec![CoopPeak {
                tile: 16,
                f32_accumulator: true,
                gflops: 600_000.0,
            }],
            copy_gbs: 4000.0,
        }
    }

    #[test]
    fn each_kernel_is_held_to_the_peak_of_its_arithmetic_and_its_roofline() {
        let p = peak();
        let blocktile = KernelSpec::try_from(crate::kernels::Kernel::Blocktile).unwrap();
        assert_eq!(p.compute_for(&blocktile).unwrap().what, "f32 FMA");
        let coop = KernelSpec::new(KernelConfig::coopmat(16, true, CoopBlock::default_for(16)))
            .unwrap()
            .with_element(crate::element::ElementType::F16)
            .unwrap();
        let c = p.compute_for(&coop).unwrap();
        assert_eq!(
            (c.gflops, c.what.as_str()),
            (600_000.0, "16x16x16 f16 -> f32")
        );
        let f16_acc =
            KernelSpec::new(KernelConfig::coopmat(16, false, CoopBlock::default_for(16))).unwrap();
        assert_eq!(p.compute_for(&f16_acc), None, "not measured");
        // GPT-2 at 16 tokens is bound by reading W (768 x 2304 f16, 3.5 MB): 4 TB/s over
        // 3.6 MB moves it in 0.9 µs for 56.6 MFLOP, about 63 TFLOP/s, below the compute peak.
        let small = QkvShape::new(16, 768, 768, 768, false).unwrap();
        let r = p.roofline_for(&coop, &small).unwrap();
        let bytes = (16.0 * 768.0 + 768.0 * 2304.0) * 2.0 + 16.0 * 2304.0 * 2.0;
        assert!((r - 4000.0 * small.flops() / bytes).abs() < 1e-6 * r, "{r}");
        let big = QkvShape::new(16384, 4096, 4096, 1024, false).unwrap();
        assert_eq!(p.roofline_for(&coop, &big), Some(600_000.0));
        // In f32, coopmat still reads X and W as f16 (2 bytes each) and writes Q, K, V in
        // f32 (4 bytes).
        let coop32 = coop.with_element(crate::element::ElementType::F32).unwrap();
        let r = p.roofline_for(&coop32, &small).unwrap();
        let bytes = (16.0 * 768.0 + 768.0 * 2304.0) * 2.0 + 16.0 * 2304.0 * 4.0;
        assert!((r - 4000.0 * small.flops() / bytes).abs() < 1e-6 * r, "{r}");
    }

    #[test]
    fn a_peak_is_for_one_adapter_driver_and_kernel_version() {
        let p = peak();
        let mut s = AdapterSummary {
            max_compute_workgroup_storage_size: 49152,
            ..AdapterSummary::described_gpu(&[])
        };
        assert!(p.is_for(&s));
        assert_eq!(Peak::key(&s), "gpu | Vulkan | 1");
        let old = Peak {
            version: VERSION - 1,
            ..p.clone()
        };
        assert!(!old.is_for(&s));
        s.driver = "2".into();
        assert!(!p.is_for(&s));
    }
}
