//! The host side of one projection shape: buffers, bind groups and pipeline made once, then
//! many runs of upload X -> fused dispatch -> read Q, K, V back, each phase timed.
//!
//! A batch larger than the device's buffers runs in token chunks (and, where W alone is too
//! large, column blocks), planned by [`crate::plan`]. Chunks stream through two sets of chunk
//! buffers, so that the upload of chunk i+1 and the readback of chunk i-1 overlap the kernel
//! on chunk i. [`Projector::stream`] takes X from a source and hands each chunk's Q, K, V to
//! a sink (a file writer, a validator), so host memory is bounded by the chunks;
//! [`Projector::run`] is the same over slices in memory.
//!
//! Every chunk's Q, K and V buffers are filled with NaN on the GPU before its dispatch, so an
//! element the kernel never writes reads back as NaN and fails validation.

use crate::context::GpuContext;
use crate::error::{Error, Result};
use crate::kernels::{Kernel, KernelConfig, FILL_NAN};
use crate::layout::OutputLayout;
pub use crate::plan::check_fits;
use crate::plan::{ChunkOptions, ChunkPlan};
use crate::shape::QkvShape;
use crate::weights::FusedWeights;
use serde::Serialize;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The uniform every projection kernel reads; mirrors `struct Params` in `shaders/qkv_*.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    tokens: u32,
    d_model: u32,
    q_width: u32,
    kv_width: u32,
    seq_len: u32,
    q_head_dim: u32,
    kv_head_dim: u32,
    w_stride: u32,
    col0: u32,
    n_cols: u32,
}

/// Bind group layouts and pipeline layouts shared by all kernels of a context, so one bind
/// group serves every variant.
#[derive(Debug)]
pub(crate) struct Layouts {
    projection_group: wgpu::BindGroupLayout,
    pub(crate) projection: wgpu::PipelineLayout,
    textured_group: wgpu::BindGroupLayout,
    pub(crate) textured: wgpu::PipelineLayout,
    split_group: wgpu::BindGroupLayout,
    pub(crate) split: wgpu::PipelineLayout,
    fill_group: wgpu::BindGroupLayout,
    pub(crate) fill: wgpu::PipelineLayout,
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl Layouts {
    /// Storage buffers one projection kernel binds: x, w, bias, q, k, v.
    pub(crate) const STORAGE_BUFFERS: u32 = 6;

    /// Bindings of every `shaders/qkv_*.wgsl`: 0 params (uniform), 1 x, 2 w, 3 bias
    /// (read-only storage), 4 q, 5 k, 6 v (read-write storage); the texture kernels bind x
    /// and w as unfilterable float 2-D textures instead; the split-K kernel adds 7, its
    /// partial sums (read-write storage). `fill_nan.wgsl`: 0 data.
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: wgpu::BufferSize::new(std::mem::size_of::<Params>() as u64),
            },
            count: None,
        }];
        entries.extend((1..=3).map(|b| storage_entry(b, true)));
        entries.extend((4..=6).map(|b| storage_entry(b, false)));
        let projection_group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("projection bind group layout"),
            entries: &entries,
        });
        let projection = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("projection pipeline layout"),
            bind_group_layouts: &[Some(&projection_group)],
            immediate_size: 0,
        });
        let mut split_entries = entries.clone();
        split_entries.push(storage_entry(7, false));
        let split_group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("projection (split-K) bind group layout"),
            entries: &split_entries,
        });
        let split = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("projection (split-K) pipeline layout"),
            bind_group_layouts: &[Some(&split_group)],
            immediate_size: 0,
        });
        for binding in [1, 2] {
            entries[binding] = wgpu::BindGroupLayoutEntry {
                binding: binding as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled: false,
                },
                count: None,
            };
        }
        let textured_group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("projection (textures) bind group layout"),
            entries: &entries,
        });
        let textured = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("projection (textures) pipeline layout"),
            bind_group_layouts: &[Some(&textured_group)],
            immediate_size: 0,
        });
        let fill_group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("fill_nan bind group layout"),
            entries: &[storage_entry(0, false)],
        });
        let fill = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("fill_nan pipeline layout"),
            bind_group_layouts: &[Some(&fill_group)],
            immediate_size: 0,
        });
        Self {
            projection_group,
            projection,
            textured_group,
            textured,
            split_group,
            split,
            fill_group,
            fill,
        }
    }

    /// The bind group and pipeline layouts `kernel` is compiled and bound with.
    fn for_kernel(&self, kernel: Kernel) -> (&wgpu::BindGroupLayout, &wgpu::PipelineLayout) {
        if kernel.reads_textures() {
            (&self.textured_group, &self.textured)
        } else if kernel.reduce_pass().is_some() {
            (&self.split_group, &self.split)
        } else {
            (&self.projection_group, &self.projection)
        }
    }
}

/// How the texture kernels (`texture`, `subgroup-texture`) hold X and W: `rgba32float`
/// textures, one texel = 4 consecutive f32 of a row, zero-padded so that their d_model loop
/// needs no bounds checks (the contract is in the shaders' headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextureLayout {
    /// X: (texels per row, rows) = (ceil(d_model / 32) * 8, tokens).
    pub x: (u32, u32),
    /// W: (texels per row, rows) = (w_stride / 4, ceil(d_model / 32) * 32).
    pub w: (u32, u32),
}

impl TextureLayout {
    /// The textures of `shape` for a kernel reading W rows `w_stride` elements wide.
    pub fn of(shape: &QkvShape, w_stride: u32) -> Self {
        let d_pad = shape.d_model.div_ceil(32) * 32;
        Self {
            x: (d_pad / 4, shape.tokens),
            w: (w_stride.div_ceil(4), d_pad),
        }
    }
}

/// Where a kernel reads X or W from.
enum Operand {
    Buffer(wgpu::Buffer),
    Texture(wgpu::Texture, wgpu::TextureView),
}

impl Operand {
    /// A storage buffer of `elems` f32, or an `rgba32float` texture `(width, height)` texels.
    fn new(
        device: &wgpu::Device,
        label: &str,
        textures: bool,
        elems: usize,
        (width, height): (u32, u32),
    ) -> Self {
        if textures {
            let texture = device.create_texture(&wgpu::TextureDescriptor {
                label: Some(label),
                size: wgpu::Extent3d {
                    width,
                    height,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            let view = texture.create_view(&wgpu::TextureViewDescriptor {
                label: Some(label),
                ..Default::default()
            });
            Operand::Texture(texture, view)
        } else {
            Operand::Buffer(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: elems as u64 * 4,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }))
        }
    }

    /// Writes a matrix of `row_len`-element rows: as it is into a buffer; into a texture with
    /// each row zero-padded to the texture's width (a copy only where rows need padding).
    fn write(&self, queue: &wgpu::Queue, data: &[f32], row_len: usize) {
        match self {
            Operand::Buffer(b) => queue.write_buffer(b, 0, bytemuck::cast_slice(data)),
            Operand::Texture(t, _) => {
                let (width, height) = (t.width(), t.height());
                let padded_len = width as usize * 4;
                let padded: Vec<f32>;
                let rows = data.len() / row_len.max(1);
                let texels: &[f32] = if padded_len == row_len && rows == height as usize {
                    data
                } else {
                    let mut p = vec![0f32; padded_len * height as usize];
                    for (dst, src) in p
                        .chunks_exact_mut(padded_len)
                        .zip(data.chunks_exact(row_len))
                    {
                        dst[..row_len].copy_from_slice(src);
                    }
                    padded = p;
                    &padded
                };
                queue.write_texture(
                    wgpu::TexelCopyTextureInfo {
                        texture: t,
                        mip_level: 0,
                        origin: wgpu::Origin3d::ZERO,
                        aspect: wgpu::TextureAspect::All,
                    },
                    bytemuck::cast_slice(texels),
                    wgpu::TexelCopyBufferLayout {
                        offset: 0,
                        bytes_per_row: Some(width * 16),
                        rows_per_image: Some(height),
                    },
                    t.size(),
                );
            }
        }
    }

    fn resource(&self) -> wgpu::BindingResource<'_> {
        match self {
            Operand::Buffer(b) => b.as_entire_binding(),
            Operand::Texture(_, view) => wgpu::BindingResource::TextureView(view),
        }
    }
}

/// How a kernel time was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
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
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RunTimings {
    /// Host clock: writing X into its GPU buffer (without streaming, also waiting for the
    /// copy).
    pub upload: Duration,
    /// The fused dispatches alone.
    pub kernel: Duration,
    /// How `kernel` was measured.
    pub kernel_timer: KernelTimer,
    /// Host clock: waiting for dispatches to finish (without streaming, submit-and-wait of
    /// each dispatch, which equals `kernel` under the host timer).
    pub dispatch_wall: Duration,
    /// Host clock: from a chunk's results being ready to the sink having taken them (copy
    /// out, and whatever the sink does: storing, validating, writing a file).
    pub readback: Duration,
    /// Host clock: the source producing X chunks (copying, reading a file, generating).
    pub input: Duration,
    /// Host clock: the whole run, start to end.
    pub wall: Duration,
    /// Token chunks the batch ran in.
    pub chunks: u32,
    /// Column blocks per chunk (1 unless W was split to fit the device).
    pub col_blocks: u32,
    /// Whether chunks were streamed (two buffer sets, transfers overlapping kernels).
    pub streamed: bool,
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

    /// The part of [`transfers`](Self::transfers) that ran while kernels did, i.e. did not
    /// add to the wall time: (kernel + transfers - wall), within [0, transfers].
    pub fn hidden(&self) -> Duration {
        (self.kernel + self.transfers())
            .saturating_sub(self.wall)
            .min(self.transfers())
    }
}

/// Q [tokens, q_width], K and V [tokens, kv_width] (or in the projector's head layout), as
/// read back from the GPU.
#[derive(Debug, Clone)]
pub struct QkvOutput {
    /// Q, row-major.
    pub q: Vec<f32>,
    /// K, row-major.
    pub k: Vec<f32>,
    /// V, row-major.
    pub v: Vec<f32>,
    /// Where the time went.
    pub timings: RunTimings,
}

struct Timestamps {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    period_ns: f64,
}

/// One chunk's Q, K and V as read back, with the X rows they came from.
#[derive(Debug)]
pub struct ChunkOutput<'a> {
    /// Which chunk (0-based) of how many.
    pub index: u32,
    /// Of how many chunks.
    pub of: u32,
    /// Its token rows within the batch.
    pub rows: Range<u32>,
    /// X [rows, d_model].
    pub x: &'a [f32],
    /// Q [rows, q_width] (or the chunk's whole sequences in the head layout).
    pub q: &'a [f32],
    /// K [rows, kv_width] (likewise).
    pub k: &'a [f32],
    /// V [rows, kv_width] (likewise).
    pub v: &'a [f32],
}

/// A submitted chunk whose results have not been read yet.
struct Pending {
    index: u32,
    rows: Range<u32>,
    submission: wgpu::SubmissionIndex,
}

/// One set of chunk buffers. Streaming uses two, so one chunk's transfers overlap the other's
/// kernel.
struct Slot {
    x: Operand,
    x_host: Vec<f32>,
    outputs: [wgpu::Buffer; 3],
    staging: [wgpu::Buffer; 3],
    /// Per column block: its params uniform and its bind group.
    params: Vec<wgpu::Buffer>,
    bind_groups: Vec<wgpu::BindGroup>,
    fill_groups: Vec<(wgpu::BindGroup, u64)>,
    /// Split-K partial sums (only for kernels with a reduce pass).
    scratch: Option<wgpu::Buffer>,
    timestamps: Option<Timestamps>,
    pending: Option<Pending>,
}

/// What a set of projection bind groups binds besides each column block's params.
struct Bound<'a> {
    x: &'a Operand,
    /// W per column block.
    w: &'a [Operand],
    bias: &'a wgpu::Buffer,
    outputs: &'a [wgpu::Buffer; 3],
    /// Split-K partial sums, for kernels that have them.
    scratch: Option<&'a wgpu::Buffer>,
}

/// One bind group per column block: params, X, that block's W, bias, Q, K, V (and partial
/// sums).
fn projection_bind_groups(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    params: &[wgpu::Buffer],
    bound: &Bound<'_>,
) -> Vec<wgpu::BindGroup> {
    let Bound {
        x,
        w,
        bias,
        outputs,
        scratch,
    } = bound;
    params
        .iter()
        .zip(w.iter())
        .map(|(params, w)| {
            let entries: Vec<wgpu::BindGroupEntry> = [
                params.as_entire_binding(),
                x.resource(),
                w.resource(),
                bias.as_entire_binding(),
            ]
            .into_iter()
            .chain(outputs.iter().map(|b| b.as_entire_binding()))
            .chain(scratch.map(|b| b.as_entire_binding()))
            .enumerate()
            .map(|(i, resource)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource,
            })
            .collect();
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("projection bind group"),
                layout,
                entries: &entries,
            })
        })
        .collect()
}

/// Kernel times of back-to-back dispatches of the whole batch (see
/// [`Projector::time_kernel`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelTimes {
    /// One time per timed repeat: every chunk's dispatches of the batch.
    pub samples: Vec<Duration>,
    /// Untimed repeats run just before, back to back with the timed ones.
    pub warmups: u32,
    /// How the samples were measured.
    pub timer: KernelTimer,
}

impl KernelTimes {
    /// (median, min, max) of the samples.
    pub fn spread(&self) -> (Duration, Duration, Duration) {
        let mut v = self.samples.clone();
        v.sort();
        (v[v.len() / 2], v[0], v[v.len() - 1])
    }

    /// The median sample.
    pub fn median(&self) -> Duration {
        self.spread().0
    }
}

/// One projection shape on one context with one kernel: made once, run many times.
pub struct Projector<'c> {
    ctx: &'c GpuContext,
    shape: QkvShape,
    config: KernelConfig,
    layout: OutputLayout,
    plan: ChunkPlan,
    streaming: bool,
    pipeline: Arc<wgpu::ComputePipeline>,
    /// The split-K kernel's second pass.
    reduce_pipeline: Option<Arc<wgpu::ComputePipeline>>,
    fill_pipeline: Arc<wgpu::ComputePipeline>,
    /// W per column block.
    w: Vec<Operand>,
    bias: wgpu::Buffer,
    slots: Vec<Slot>,
    /// (seq_len, q_head_dim, kv_head_dim) as the kernels read them.
    heads: (u32, u32, u32),
    weights_loaded: bool,
}

impl std::fmt::Debug for Projector<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("shape", &self.shape)
            .field("config", &self.config)
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl<'c> Projector<'c> {
    /// Allocates the buffers for `shape` and compiles (or reuses) `kernel`'s pipeline; Q, K
    /// and V come back token-major. A batch past the device's limits is chunked.
    /// Fails with [`Error::DeviceLimit`] only if not even one token fits.
    pub fn new(
        ctx: &'c GpuContext,
        shape: QkvShape,
        config: impl Into<KernelConfig>,
    ) -> Result<Self> {
        Self::with_options(
            ctx,
            shape,
            config,
            OutputLayout::Tokens,
            &ChunkOptions::default(),
        )
    }

    /// As [`Projector::new`], with Q, K and V written by the kernel in `layout`.
    pub fn with_layout(
        ctx: &'c GpuContext,
        shape: QkvShape,
        config: impl Into<KernelConfig>,
        layout: OutputLayout,
    ) -> Result<Self> {
        Self::with_options(ctx, shape, config, layout, &ChunkOptions::default())
    }

    /// As [`Projector::with_layout`], chunked as `opts` says.
    pub fn with_options(
        ctx: &'c GpuContext,
        shape: QkvShape,
        config: impl Into<KernelConfig>,
        layout: OutputLayout,
        opts: &ChunkOptions,
    ) -> Result<Self> {
        let config = config.into();
        config.check().map_err(Error::Input)?;
        if let Some(why) = config.unsupported_on(&ctx.summary) {
            return Err(Error::Input(why));
        }
        let heads = match layout {
            OutputLayout::Tokens => (shape.tokens, shape.q_width, shape.kv_width),
            OutputLayout::Heads(h) => {
                // Re-check: a HeadSplit may have been built for another shape.
                let h = crate::layout::HeadSplit::new(&shape, h.seq_len, h.heads, h.kv_heads)?;
                (h.seq_len, h.q_head_dim(&shape), h.kv_head_dim(&shape))
            }
        };
        let plan = ChunkPlan::new(ctx, &shape, config, layout, opts)?;
        // One buffer set suffices when there is only one chunk.
        let streaming = opts.streaming && plan.chunks() > 1;
        let layouts = ctx.layouts();
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let mut constants = vec![
            ("HAS_BIAS", flag(shape.bias)),
            (
                "HEAD_LAYOUT",
                flag(matches!(layout, OutputLayout::Heads(_))),
            ),
        ];
        constants.extend(config.constants());
        let textures = config.kernel.reads_textures();
        let (group_layout, pipeline_layout) = layouts.for_kernel(config.kernel);
        let pipeline = ctx.pipeline(config.kernel.source(), &constants, pipeline_layout)?;
        let reduce_pipeline = match config.kernel.reduce_pass() {
            Some(source) => Some(ctx.pipeline(source, &constants, pipeline_layout)?),
            None => None,
        };
        let fill_pipeline = ctx.pipeline(FILL_NAN, &[], &layouts.fill)?;

        let device = &ctx.device;
        let chunk = plan.chunk_tokens;
        let chunk_shape = QkvShape {
            tokens: chunk,
            ..shape
        };
        let d = shape.d_model as usize;
        let during =
            format!("allocating buffers for {shape} in chunks of {chunk} tokens (out of memory?)");
        let (w, bias) = ctx.checked(&during, || {
            let w = plan
                .col_blocks
                .iter()
                .map(|&(_, n_cols)| {
                    let stride = config.w_stride(n_cols);
                    let tex = TextureLayout::of(&chunk_shape, stride);
                    Operand::new(
                        device,
                        "w (fused Wq|Wk|Wv, one column block)",
                        textures,
                        d * stride as usize,
                        tex.w,
                    )
                })
                .collect::<Vec<_>>();
            // Without a bias the binding still needs a buffer; HAS_BIAS=false never reads it.
            let bias_len = if shape.bias {
                shape.n_out() as usize
            } else {
                1
            };
            let bias = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("bias"),
                size: bias_len as u64 * 4,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (w, bias)
        })?;

        let mut slots = Vec::new();
        for slot in 0..if streaming { 2 } else { 1 } {
            let during = format!("{during}, buffer set {slot}");
            let s = ctx.checked(&during, || {
                let storage = |label: &str, elems: usize, usage: wgpu::BufferUsages| {
                    device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(label),
                        size: elems as u64 * 4,
                        usage: wgpu::BufferUsages::STORAGE | usage,
                        mapped_at_creation: false,
                    })
                };
                let tex = TextureLayout::of(&chunk_shape, 4);
                let x = Operand::new(
                    device,
                    "x (one chunk)",
                    textures,
                    chunk_shape.x_len(),
                    tex.x,
                );
                let out_usage = wgpu::BufferUsages::COPY_SRC;
                let outputs = [
                    storage("q (one chunk)", chunk_shape.q_len(), out_usage),
                    storage("k (one chunk)", chunk_shape.kv_len(), out_usage),
                    storage("v (one chunk)", chunk_shape.kv_len(), out_usage),
                ];
                // A MAP_READ buffer may only be a COPY_DST, so results come back through these.
                let staging = [
                    ("q staging", chunk_shape.q_len()),
                    ("k staging", chunk_shape.kv_len()),
                    ("v staging", chunk_shape.kv_len()),
                ]
                .map(|(label, len)| {
                    device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(label),
                        size: len as u64 * 4,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                });
                let params: Vec<wgpu::Buffer> = plan
                    .col_blocks
                    .iter()
                    .map(|_| {
                        device.create_buffer(&wgpu::BufferDescriptor {
                            label: Some("params (one column block)"),
                            size: std::mem::size_of::<Params>() as u64,
                            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                            mapped_at_creation: false,
                        })
                    })
                    .collect();
                // Split-K partial sums: [splits, chunk tokens, widest column block].
                let scratch = config.kernel.reduce_pass().map(|_| {
                    let widest = plan.col_blocks.iter().map(|b| b.1).max().unwrap_or(0);
                    storage(
                        "partial sums (split-K)",
                        config.wg as usize * chunk as usize * widest as usize,
                        wgpu::BufferUsages::empty(),
                    )
                });
                let bind_groups = projection_bind_groups(
                    device,
                    group_layout,
                    &params,
                    &Bound {
                        x: &x,
                        w: &w,
                        bias: &bias,
                        outputs: &outputs,
                        scratch: scratch.as_ref(),
                    },
                );
                let fill_groups = outputs
                    .iter()
                    .map(|b| {
                        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some("fill_nan bind group"),
                            layout: &layouts.fill_group,
                            entries: &[wgpu::BindGroupEntry {
                                binding: 0,
                                resource: b.as_entire_binding(),
                            }],
                        });
                        (group, b.size() / 4)
                    })
                    .collect();
                let timestamps = ctx.has_timestamps().then(|| Timestamps {
                    set: device.create_query_set(&wgpu::QuerySetDescriptor {
                        label: Some("kernel timestamps"),
                        ty: wgpu::QueryType::Timestamp,
                        count: 2,
                    }),
                    resolve: device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("timestamp resolve"),
                        size: 16,
                        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                        mapped_at_creation: false,
                    }),
                    readback: device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("timestamp readback"),
                        size: 16,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    }),
                    period_ns: ctx.queue.get_timestamp_period() as f64,
                });
                Slot {
                    x,
                    x_host: vec![0.0; chunk_shape.x_len()],
                    outputs,
                    staging,
                    params,
                    bind_groups,
                    fill_groups,
                    scratch,
                    timestamps,
                    pending: None,
                }
            })?;
            slots.push(s);
        }

        let projector = Self {
            ctx,
            shape,
            config,
            layout,
            plan,
            streaming,
            pipeline,
            reduce_pipeline,
            fill_pipeline,
            w,
            bias,
            slots,
            heads,
            weights_loaded: false,
        };

        // Some drivers (lavapipe among them) compile a shader at its first dispatch, not at
        // pipeline creation. One workgroup on the fresh (zeroed) buffers forces that here,
        // outside every timed region; every run poisons the outputs before its own dispatch.
        projector.write_params(0, 1)?;
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("pipeline warm-up"),
            });
        ctx.checked("warming up the pipeline", || {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("pipeline warm-up"),
                timestamp_writes: None,
            });
            pass.set_bind_group(0, &projector.slots[0].bind_groups[0], &[]);
            pass.set_pipeline(&projector.pipeline);
            pass.dispatch_workgroups(1, 1, 1);
            if let Some(reduce) = &projector.reduce_pipeline {
                pass.set_pipeline(reduce);
                pass.dispatch_workgroups(1, 1, 1);
            }
        })?;
        ctx.submit_and_wait(encoder, "warming up the pipeline")?;
        Ok(projector)
    }

    /// The shape this projector was made for.
    pub fn shape(&self) -> &QkvShape {
        &self.shape
    }

    /// The layout Q, K and V are written in.
    pub fn layout(&self) -> OutputLayout {
        self.layout
    }

    /// The kernel variant it dispatches.
    pub fn kernel(&self) -> Kernel {
        self.config.kernel
    }

    /// The variant and its tuning parameters.
    pub fn config(&self) -> KernelConfig {
        self.config
    }

    /// How the batch is split into chunks and column blocks.
    pub fn plan(&self) -> &ChunkPlan {
        &self.plan
    }

    /// Whether chunks stream through two buffer sets (only with more than one chunk).
    pub fn streaming(&self) -> bool {
        self.streaming
    }

    /// Writes the params of every column block of `slot` for a chunk of `rows` tokens.
    fn write_params(&self, slot: usize, rows: u32) -> Result<()> {
        self.write_params_to(&self.slots[slot].params, rows)
    }

    /// Writes the params of every column block for a chunk of `rows` tokens into `buffers`
    /// (one per column block).
    fn write_params_to(&self, buffers: &[wgpu::Buffer], rows: u32) -> Result<()> {
        let (seq_len, q_head_dim, kv_head_dim) = self.heads;
        let s = &self.shape;
        self.ctx.checked("writing the kernel parameters", || {
            for (buffer, &(col0, n_cols)) in buffers.iter().zip(&self.plan.col_blocks) {
                let params = Params {
                    tokens: rows,
                    d_model: s.d_model,
                    q_width: s.q_width,
                    kv_width: s.kv_width,
                    seq_len: if matches!(self.layout, OutputLayout::Heads(_)) {
                        seq_len
                    } else {
                        rows
                    },
                    q_head_dim,
                    kv_head_dim,
                    w_stride: self.config.w_stride(n_cols),
                    col0,
                    n_cols,
                };
                self.ctx
                    .queue
                    .write_buffer(buffer, 0, bytemuck::bytes_of(&params));
            }
        })
    }

    /// Uploads the fused weights (and bias); they stay on the GPU for every later run.
    /// Returns the host time the upload took.
    pub fn set_weights(&mut self, weights: &FusedWeights) -> Result<Duration> {
        let s = &self.shape;
        if (weights.d_model, weights.q_width, weights.kv_width)
            != (s.d_model, s.q_width, s.kv_width)
        {
            return Err(Error::Shape(format!(
                "weights are d_model {} -> {}+{}+{} but the projector was made for d_model {} -> \
                 {}+{}+{}",
                weights.d_model,
                weights.q_width,
                weights.kv_width,
                weights.kv_width,
                s.d_model,
                s.q_width,
                s.kv_width,
                s.kv_width
            )));
        }
        if weights.w.len() != s.w_len() {
            return Err(Error::Shape(format!(
                "W has {} elements; [{}, {}] needs {}",
                weights.w.len(),
                s.d_model,
                s.n_out(),
                s.w_len()
            )));
        }
        match (&weights.bias, s.bias) {
            (Some(b), true) if b.len() != s.n_out() as usize => {
                return Err(Error::Shape(format!(
                    "bias has {} elements; it needs {}",
                    b.len(),
                    s.n_out()
                )))
            }
            (Some(_), false) => {
                return Err(Error::Shape(
                    "weights carry a bias but the projector was made without one".into(),
                ))
            }
            (None, true) => {
                return Err(Error::Shape(
                    "the projector was made with a bias but the weights have none".into(),
                ))
            }
            _ => {}
        }
        let start = Instant::now();
        let n_out = s.n_out() as usize;
        for (operand, &(col0, n_cols)) in self.w.iter().zip(&self.plan.col_blocks) {
            let stride = self.config.w_stride(n_cols) as usize;
            let (c0, n) = (col0 as usize, n_cols as usize);
            // Each block's rows hold its columns, zero-padded to the stride the kernel reads
            // (a multiple of 4 for the vec4 kernels); no copy where that is all of W as it is.
            let block: Vec<f32>;
            let w: &[f32] = if n == n_out && stride == n_out {
                &weights.w
            } else {
                block = weights
                    .w
                    .chunks_exact(n_out)
                    .flat_map(|row| {
                        row[c0..c0 + n]
                            .iter()
                            .copied()
                            .chain(std::iter::repeat_n(0.0, stride - n))
                    })
                    .collect();
                &block
            };
            self.ctx.checked("uploading weights", || {
                operand.write(&self.ctx.queue, w, stride)
            })?;
        }
        if let Some(b) = &weights.bias {
            self.ctx.checked("uploading the bias", || {
                self.ctx
                    .queue
                    .write_buffer(&self.bias, 0, bytemuck::cast_slice(b))
            })?;
        }
        let index = self.ctx.queue.submit([]);
        self.ctx.wait(index, "uploading weights")?;
        self.weights_loaded = true;
        Ok(start.elapsed())
    }

    /// Projects X [tokens, d_model] held in memory and returns Q, K, V in memory: fills each
    /// chunk's Q, K, V with NaN, uploads X, runs the fused dispatch, reads Q, K, V back.
    /// Weights must have been set.
    pub fn run(&mut self, x: &[f32]) -> Result<QkvOutput> {
        if x.len() != self.shape.x_len() {
            return Err(Error::Shape(format!(
                "X has {} elements; [{}, {}] needs {}",
                x.len(),
                self.shape.tokens,
                self.shape.d_model,
                self.shape.x_len()
            )));
        }
        let s = self.shape;
        let d = s.d_model as usize;
        let (qw, kvw) = (s.q_width as usize, s.kv_width as usize);
        let mut q = vec![0f32; s.q_len()];
        let mut k = vec![0f32; s.kv_len()];
        let mut v = vec![0f32; s.kv_len()];
        // A chunk holds whole sequences, so in either layout its outputs are one contiguous
        // range starting at its first token.
        let timings = self.stream(
            |rows, dst| {
                dst.copy_from_slice(&x[rows.start as usize * d..rows.end as usize * d]);
                Ok(())
            },
            |c| {
                let r = c.rows.start as usize;
                q[r * qw..r * qw + c.q.len()].copy_from_slice(c.q);
                k[r * kvw..r * kvw + c.k.len()].copy_from_slice(c.k);
                v[r * kvw..r * kvw + c.v.len()].copy_from_slice(c.v);
                Ok(())
            },
            |_| {},
        )?;
        Ok(QkvOutput { q, k, v, timings })
    }

    /// Times the kernel alone at steady state: every chunk's dispatches of the batch, run
    /// `warmups` times untimed and then `repeats` times timed, all queued back to back so the
    /// GPU never idles between them (no uploads, readbacks or host work in between). The
    /// dispatches read the X rows last uploaded (call [`run`](Self::run) or
    /// [`stream`](Self::stream) first; they validate) and overwrite the outputs with the same
    /// values.
    ///
    /// Why: a GPU lowers its clocks when idle, and a run's host work between dispatches
    /// (copying, validating) is long enough for that. One dispatch after such a gap can run
    /// several times slower than the same dispatch in a busy stream (seen on an H100: 5x), so
    /// per-run timestamps measure the clock governor, not the kernel. Use
    /// [`steady_warmups`](Self::steady_warmups) for `warmups`.
    pub fn time_kernel(&mut self, warmups: u32, repeats: u32) -> Result<KernelTimes> {
        if !self.weights_loaded {
            return Err(Error::Input(
                "no weights uploaded: call set_weights before timing".into(),
            ));
        }
        if !(1..=2000).contains(&repeats) {
            return Err(Error::Input(format!(
                "kernel timing repeats must be 1 to 2000, not {repeats}"
            )));
        }
        let ctx = self.ctx;
        let device = &ctx.device;
        let plan = self.plan.clone();
        let full = plan.chunk_tokens;
        let last = plan.chunk(plan.chunks() - 1).len() as u32;
        // Params for a full chunk and, when the last chunk is shorter, for it, bound to the
        // first buffer set.
        let during = "setting up kernel timing";
        let make_params = || -> Vec<wgpu::Buffer> {
            plan.col_blocks
                .iter()
                .map(|_| {
                    device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("params (timing)"),
                        size: std::mem::size_of::<Params>() as u64,
                        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                })
                .collect()
        };
        let (group_layout, _) = ctx.layouts().for_kernel(self.config.kernel);
        let slot = &self.slots[0];
        let (full_params, last_params) = ctx.checked(during, || (make_params(), make_params()))?;
        let (full_groups, last_groups) = ctx.checked(during, || {
            let groups = |params: &[wgpu::Buffer]| {
                projection_bind_groups(
                    device,
                    group_layout,
                    params,
                    &Bound {
                        x: &slot.x,
                        w: &self.w,
                        bias: &self.bias,
                        outputs: &slot.outputs,
                        scratch: slot.scratch.as_ref(),
                    },
                )
            };
            (groups(&full_params), groups(&last_params))
        })?;
        self.write_params_to(&full_params, full)?;
        self.write_params_to(&last_params, last)?;
        let timestamps = ctx.has_timestamps();
        let queries = ctx.checked(during, || {
            timestamps.then(|| {
                let bytes = 16 * repeats as u64;
                (
                    device.create_query_set(&wgpu::QuerySetDescriptor {
                        label: Some("kernel timing"),
                        ty: wgpu::QueryType::Timestamp,
                        count: 2 * repeats,
                    }),
                    device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("kernel timing resolve"),
                        size: bytes,
                        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                        mapped_at_creation: false,
                    }),
                    device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("kernel timing readback"),
                        size: bytes,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    }),
                )
            })
        })?;
        let label = format!("timing kernel {}", self.config);
        // One submission per repeat: all are queued before waiting, so they run back to back,
        // and no single submission runs long enough to trip a driver watchdog.
        let encode = |timed: Option<u32>| -> Result<wgpu::CommandBuffer> {
            let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("kernel timing"),
            });
            ctx.checked(&label, || {
                {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(self.config.kernel.name()),
                        timestamp_writes: match (&queries, timed) {
                            (Some((set, _, _)), Some(i)) => {
                                Some(wgpu::ComputePassTimestampWrites {
                                    query_set: set,
                                    beginning_of_pass_write_index: Some(2 * i),
                                    end_of_pass_write_index: Some(2 * i + 1),
                                })
                            }
                            _ => None,
                        },
                    });
                    for c in 0..plan.chunks() {
                        let rows = plan.chunk(c).len() as u32;
                        let groups = if rows == full {
                            &full_groups
                        } else {
                            &last_groups
                        };
                        self.encode_dispatches(&mut pass, groups, rows);
                    }
                }
                encoder.finish()
            })
        };
        let mut samples = Vec::with_capacity(repeats as usize);
        for _ in 0..warmups {
            let commands = encode(None)?;
            ctx.checked(&label, || ctx.queue.submit([commands]))?;
        }
        if let Some((set, resolve, readback)) = &queries {
            for i in 0..repeats {
                let commands = encode(Some(i))?;
                ctx.checked(&label, || ctx.queue.submit([commands]))?;
            }
            let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("kernel timing resolve"),
            });
            encoder.resolve_query_set(set, 0..2 * repeats, resolve, 0);
            encoder.copy_buffer_to_buffer(resolve, 0, readback, 0, 16 * repeats as u64);
            ctx.submit_and_wait(encoder, &label)?;
            let mut ticks = vec![0u64; 2 * repeats as usize];
            ctx.read_mapped(readback, &mut ticks, &label)?;
            let period = ctx.queue.get_timestamp_period() as f64;
            for pair in ticks.chunks_exact(2) {
                let ns = pair[1].saturating_sub(pair[0]) as f64 * period;
                samples.push(Duration::from_nanos(ns as u64));
            }
        } else {
            // Host clock: each repeat's submit-and-wait (the warm-ups are still queued ahead
            // of the first one).
            for _ in 0..repeats {
                let commands = encode(None)?;
                let start = Instant::now();
                let index = ctx.checked(&label, || ctx.queue.submit([commands]))?;
                ctx.wait(index, &label)?;
                samples.push(start.elapsed());
            }
        }
        Ok(KernelTimes {
            samples,
            warmups,
            timer: if timestamps {
                KernelTimer::GpuTimestamp
            } else {
                KernelTimer::Host
            },
        })
    }

    /// Untimed repeats to run before timing a batch whose kernel took about `estimate`: on
    /// a GPU, enough for about half a second of work (at least 3), so that clocks have risen
    /// from idle; on a CPU driver, which has no such clocks, none.
    pub fn steady_warmups(&self, estimate: Duration) -> u32 {
        if self.ctx.is_cpu() {
            return 0;
        }
        let per = estimate.as_secs_f64().max(1e-6);
        ((0.5 / per).ceil() as u32).clamp(3, 2000)
    }

    /// Projects the whole batch chunk by chunk: `source(rows, dst)` fills X for the token
    /// `rows` into `dst` [rows, d_model]; `sink` receives each chunk's Q, K, V in token order;
    /// `progress` is told the tokens done after each chunk. With streaming, chunk i+1 is
    /// uploaded and chunk i-1 read back while the kernel runs on chunk i.
    ///
    /// Host memory is what the chunks need, whatever the batch. An error names the chunk it
    /// happened in; chunks already handed to the sink stay with the sink, which must not treat
    /// them as a complete result (`qkv project` writes to temporary files and renames them
    /// only after the last chunk).
    pub fn stream(
        &mut self,
        mut source: impl FnMut(Range<u32>, &mut [f32]) -> Result<()>,
        mut sink: impl FnMut(ChunkOutput<'_>) -> Result<()>,
        mut progress: impl FnMut(u32),
    ) -> Result<RunTimings> {
        if !self.weights_loaded {
            return Err(Error::Input(
                "no weights uploaded: call set_weights before run".into(),
            ));
        }
        let wall = Instant::now();
        let mut t = RunTimings {
            kernel_timer: if self.slots[0].timestamps.is_some() {
                KernelTimer::GpuTimestamp
            } else {
                KernelTimer::Host
            },
            chunks: self.plan.chunks(),
            col_blocks: self.plan.col_blocks.len() as u32,
            streamed: self.streaming,
            ..Default::default()
        };
        let n = self.plan.chunks();
        let result = (|| {
            for i in 0..n {
                let slot = i as usize % self.slots.len();
                // With two slots, this slot's previous chunk (i-2) was finished last round.
                if let Some(p) = self.slots[slot].pending.take() {
                    self.finish(slot, p, &mut sink, &mut t)?;
                }
                let rows = self.plan.chunk(i);
                let label = format!(
                    "chunk {} of {n} (tokens {}..{})",
                    i + 1,
                    rows.start,
                    rows.end
                );
                let len = rows.len() * self.shape.d_model as usize;
                let start = Instant::now();
                source(rows.clone(), &mut self.slots[slot].x_host[..len])?;
                t.input += start.elapsed();
                self.submit(slot, i, rows.clone(), &label, &mut t)?;
                if self.streaming {
                    let other = 1 - slot;
                    if let Some(p) = self.slots[other].pending.take() {
                        self.finish(other, p, &mut sink, &mut t)?;
                    }
                } else {
                    let p = self.slots[slot].pending.take().expect("just submitted");
                    self.finish(slot, p, &mut sink, &mut t)?;
                }
                progress(rows.end);
            }
            // The last chunk (and, with streaming, possibly none other) is still out.
            for slot in 0..self.slots.len() {
                if let Some(p) = self.slots[slot].pending.take() {
                    self.finish(slot, p, &mut sink, &mut t)?;
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            // Leave no chunk half-tracked: a later run starts clean.
            for s in &mut self.slots {
                s.pending = None;
            }
            let _ = self.ctx.device.poll(wgpu::PollType::wait_indefinitely());
            return Err(e);
        }
        t.wall = wall.elapsed();
        Ok(t)
    }

    /// Uploads X of chunk `index` from its slot's host buffer and submits NaN fill, dispatch
    /// and the copies to staging.
    fn submit(
        &mut self,
        slot: usize,
        index: u32,
        rows: Range<u32>,
        label: &str,
        t: &mut RunTimings,
    ) -> Result<()> {
        let ctx = self.ctx;
        let count = rows.len() as u32;
        let d = self.shape.d_model as usize;
        let s = &self.slots[slot];
        let start = Instant::now();
        ctx.checked(&format!("{label}: uploading X"), || {
            s.x.write(&ctx.queue, &s.x_host[..count as usize * d], d)
        })?;
        self.write_params(slot, count)?;
        if !self.streaming {
            let index = ctx.queue.submit([]);
            ctx.wait(index, &format!("{label}: uploading X"))?;
        }
        t.upload += start.elapsed();

        let s = &self.slots[slot];
        let kernel_label = format!("{label}: dispatch of kernel {}", self.config);
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("projection"),
            });
        let chunk_shape = QkvShape {
            tokens: count,
            ..self.shape
        };
        ctx.checked(&kernel_label, || {
            {
                // Untimed: poison the outputs so an unwritten element cannot pass.
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("fill_nan"),
                    timestamp_writes: None,
                });
                self.encode_fill(&mut pass, slot);
            }
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(self.config.kernel.name()),
                    timestamp_writes: s.timestamps.as_ref().map(|t| {
                        wgpu::ComputePassTimestampWrites {
                            query_set: &t.set,
                            beginning_of_pass_write_index: Some(0),
                            end_of_pass_write_index: Some(1),
                        }
                    }),
                });
                self.encode_dispatches(&mut pass, &s.bind_groups, count);
            }
            if let Some(ts) = &s.timestamps {
                encoder.resolve_query_set(&ts.set, 0..2, &ts.resolve, 0);
                encoder.copy_buffer_to_buffer(&ts.resolve, 0, &ts.readback, 0, 16);
            }
            for ((src, dst), len) in s.outputs.iter().zip(&s.staging).zip([
                chunk_shape.q_len(),
                chunk_shape.kv_len(),
                chunk_shape.kv_len(),
            ]) {
                encoder.copy_buffer_to_buffer(src, 0, dst, 0, len as u64 * 4);
            }
        })?;
        let start = Instant::now();
        let submission = ctx.checked(&kernel_label, || ctx.queue.submit([encoder.finish()]))?;
        if !self.streaming {
            ctx.wait(submission.clone(), &kernel_label)?;
            t.dispatch_wall += start.elapsed();
        }
        self.slots[slot].pending = Some(Pending {
            index,
            rows,
            submission,
        });
        Ok(())
    }

    /// Dispatches the kernel over a chunk of `rows` tokens, one column block per bind group
    /// (and, for split-K, each block's reduce pass after it).
    fn encode_dispatches(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        groups: &[wgpu::BindGroup],
        rows: u32,
    ) {
        let (cols_per_group, rows_per_group) = self.config.workgroup_tile();
        let splits = match self.reduce_pipeline {
            Some(_) => self.config.wg,
            None => 1,
        };
        let max_groups = self
            .ctx
            .limits()
            .max_compute_workgroups_per_dimension
            .min(4096) as u64;
        for (group, &(_, n_cols)) in groups.iter().zip(&self.plan.col_blocks) {
            pass.set_bind_group(0, group, &[]);
            pass.set_pipeline(&self.pipeline);
            pass.dispatch_workgroups(
                n_cols.div_ceil(cols_per_group),
                rows.div_ceil(rows_per_group),
                splits,
            );
            if let Some(reduce) = &self.reduce_pipeline {
                // A grid-stride loop: any number of groups covers the block.
                let elements = rows as u64 * n_cols as u64;
                pass.set_pipeline(reduce);
                pass.dispatch_workgroups(elements.div_ceil(256).clamp(1, max_groups) as u32, 1, 1);
            }
        }
    }

    fn encode_fill(&self, pass: &mut wgpu::ComputePass<'_>, slot: usize) {
        pass.set_pipeline(&self.fill_pipeline);
        // The shader's grid-stride loop covers any size with any number of groups, so stay
        // within both a modest grid and the device's per-dimension limit.
        let max_groups = self
            .ctx
            .limits()
            .max_compute_workgroups_per_dimension
            .min(4096) as u64;
        for (group, words) in &self.slots[slot].fill_groups {
            pass.set_bind_group(0, group, &[]);
            pass.dispatch_workgroups(words.div_ceil(256).clamp(1, max_groups) as u32, 1, 1);
        }
    }

    /// Waits for a submitted chunk, reads its kernel time and hands Q, K, V to the sink.
    fn finish(
        &mut self,
        slot: usize,
        p: Pending,
        sink: &mut impl FnMut(ChunkOutput<'_>) -> Result<()>,
        t: &mut RunTimings,
    ) -> Result<()> {
        let ctx = self.ctx;
        let n = self.plan.chunks();
        let label = format!(
            "chunk {} of {n} (tokens {}..{}): reading Q, K, V back",
            p.index + 1,
            p.rows.start,
            p.rows.end
        );
        let s = &self.slots[slot];
        let count = p.rows.len();
        let lens = [
            count * self.shape.q_width as usize,
            count * self.shape.kv_width as usize,
            count * self.shape.kv_width as usize,
        ];
        let mut buffers: Vec<(&wgpu::Buffer, u64)> = s
            .staging
            .iter()
            .zip(lens)
            .map(|(b, len)| (b, len as u64 * 4))
            .collect();
        if let Some(ts) = &s.timestamps {
            buffers.push((&ts.readback, 16));
        }
        let start = Instant::now();
        let receivers: Vec<_> = buffers
            .iter()
            .map(|&(b, bytes)| {
                let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
                b.slice(..bytes).map_async(wgpu::MapMode::Read, move |r| {
                    sender.send(r).ok();
                });
                receiver
            })
            .collect();
        // Wait for this chunk only: with streaming the next one is already queued behind it.
        ctx.wait(p.submission, &label)?;
        for r in receivers {
            match pollster::block_on(r.receive()) {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(Error::Readback(format!("{label}: {e}"))),
                None => return Err(Error::Readback(format!("{label}: mapping never completed"))),
            }
        }
        if self.streaming {
            t.dispatch_wall += start.elapsed();
        }
        let start = Instant::now();
        let result = (|| {
            let views = buffers
                .iter()
                .map(|&(b, bytes)| {
                    b.slice(..bytes)
                        .get_mapped_range()
                        .map_err(|e| Error::Readback(format!("{label}: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            if let Some(ts) = &s.timestamps {
                let ticks: &[u64] = bytemuck::cast_slice(&views[3]);
                let ns = ticks[1].saturating_sub(ticks[0]) as f64 * ts.period_ns;
                t.kernel += Duration::from_nanos(ns as u64);
            }
            let d = self.shape.d_model as usize;
            sink(ChunkOutput {
                index: p.index,
                of: n,
                rows: p.rows.clone(),
                x: &s.x_host[..count * d],
                q: bytemuck::cast_slice(&views[0]),
                k: bytemuck::cast_slice(&views[1]),
                v: bytemuck::cast_slice(&views[2]),
            })
        })();
        for (b, _) in &buffers {
            b.unmap();
        }
        result?;
        t.readback += start.elapsed();
        if s.timestamps.is_none() {
            // Host timer: without streaming, the dispatch's submit-and-wait.
            t.kernel = t.dispatch_wall;
        }
        Ok(())
    }

    /// Fills the first buffer set's Q, K and V on the GPU with NaN (bit pattern 0x7fc00000).
    /// Every chunk does this before its dispatch; it is public so that tests can show an
    /// unwritten element reads NaN.
    pub fn poison_outputs(&mut self) -> Result<()> {
        let ctx = self.ctx;
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("fill outputs with NaN"),
            });
        ctx.checked("filling outputs with NaN", || {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("fill_nan"),
                timestamp_writes: None,
            });
            self.encode_fill(&mut pass, 0);
        })?;
        ctx.submit_and_wait(encoder, "filling outputs with NaN")
    }

    /// Copies the first buffer set's Q, K and V (one chunk's worth) as they are now on the GPU
    /// into host vectors.
    pub fn read_outputs(&mut self) -> Result<[Vec<f32>; 3]> {
        let ctx = self.ctx;
        let s = &self.slots[0];
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        ctx.checked("copying Q, K, V for readback", || {
            for (src, dst) in s.outputs.iter().zip(&s.staging) {
                encoder.copy_buffer_to_buffer(src, 0, dst, 0, src.size());
            }
        })?;
        ctx.submit_and_wait(encoder, "copying Q, K, V for readback")?;
        let mut out = s
            .outputs
            .each_ref()
            .map(|b| vec![0f32; (b.size() / 4) as usize]);
        for ((staging, buf), name) in
            s.staging
                .iter()
                .zip(out.iter_mut())
                .zip(["reading Q", "reading K", "reading V"])
        {
            ctx.read_mapped(staging, buf, name)?;
        }
        Ok(out)
    }
}
