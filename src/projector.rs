//! The host side of one projection shape: buffers, bind groups and pipeline made once, then
//! many runs of upload X -> fused dispatch -> read Q, K, V back, each phase timed.
//!
//! Every run first fills Q, K and V with NaN on the GPU (untimed), so an element the kernel
//! never writes reads back as NaN and fails validation.

use crate::context::GpuContext;
use crate::error::{fmt_bytes, Error, Result};
use crate::kernels::{Kernel, KernelConfig, FILL_NAN};
use crate::layout::OutputLayout;
use crate::shape::QkvShape;
use crate::weights::FusedWeights;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wgpu::util::DeviceExt;

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
}

/// Bind group layouts and pipeline layouts shared by all kernels of a context, so one bind
/// group serves every variant.
#[derive(Debug)]
pub(crate) struct Layouts {
    projection_group: wgpu::BindGroupLayout,
    pub(crate) projection: wgpu::PipelineLayout,
    textured_group: wgpu::BindGroupLayout,
    pub(crate) textured: wgpu::PipelineLayout,
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
    /// and w as unfilterable float 2-D textures instead. `fill_nan.wgsl`: 0 data.
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
            fill_group,
            fill,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelTimer {
    /// GPU timestamps written at the start and end of the compute pass.
    GpuTimestamp,
    /// Host clock around submit-and-wait of the dispatch alone (includes submission overhead;
    /// used where the adapter has no TIMESTAMP_QUERY).
    Host,
}

/// Where the time of one run went. `total()` is the end-to-end time a caller waits.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RunTimings {
    /// Host clock: writing X into its GPU buffer and waiting for the copy.
    pub upload: Duration,
    /// The fused dispatch alone.
    pub kernel: Duration,
    /// How `kernel` was measured.
    pub kernel_timer: KernelTimer,
    /// Host clock: dispatch submit-and-wait (equals `kernel` under the host timer).
    pub dispatch_wall: Duration,
    /// Host clock: copying Q, K, V to mappable buffers, mapping and copying them out.
    pub readback: Duration,
}

impl RunTimings {
    /// Upload + dispatch + readback, host clock.
    pub fn total(&self) -> Duration {
        self.upload + self.dispatch_wall + self.readback
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

/// One projection shape on one context with one kernel: made once, run many times.
pub struct Projector<'c> {
    ctx: &'c GpuContext,
    shape: QkvShape,
    config: KernelConfig,
    layout: OutputLayout,
    pipeline: Arc<wgpu::ComputePipeline>,
    fill_pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    fill_groups: Vec<(wgpu::BindGroup, u64)>,
    x: Operand,
    w: Operand,
    bias: wgpu::Buffer,
    outputs: [wgpu::Buffer; 3],
    staging: [wgpu::Buffer; 3],
    timestamps: Option<Timestamps>,
    weights_loaded: bool,
}

impl std::fmt::Debug for Projector<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("shape", &self.shape)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Checks that every buffer and the dispatch grid of `shape` fit the device's limits, with
/// an error naming the first that does not. [`Projector::new`] runs it too; callers run it
/// first to fail before preparing large inputs.
pub fn check_fits(
    ctx: &GpuContext,
    shape: &QkvShape,
    config: impl Into<KernelConfig>,
) -> Result<()> {
    let config = config.into();
    let limits = ctx.limits();
    let textures = config.kernel.reads_textures();
    let binding = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    let limit_name = if limits.max_storage_buffer_binding_size <= limits.max_buffer_size {
        "max_storage_buffer_binding_size"
    } else {
        "max_buffer_size"
    };
    let x_what = "X [tokens, d_model]";
    let w_what = "the fused W [d_model, q_width + 2*kv_width]";
    if textures {
        let max = limits.max_texture_dimension_2d;
        let t = TextureLayout::of(shape, config.w_stride(shape.n_out()));
        for (what, (width, height)) in [(x_what, t.x), (w_what, t.w)] {
            if width.max(height) > max {
                return Err(Error::DeviceLimit {
                    what: format!("{what} as a texture (kernel {config})"),
                    needed: format!("{width} x {height} texels"),
                    limit: format!("{max} x {max}"),
                    limit_name: "max_texture_dimension_2d",
                    hint: " (fewer tokens, or a kernel that reads storage buffers)".into(),
                });
            }
        }
    }
    let mut buffers = vec![
        ("Q [tokens, q_width]", shape.q_len()),
        ("K and V [tokens, kv_width]", shape.kv_len()),
    ];
    if !textures {
        buffers.insert(0, (x_what, shape.x_len()));
        buffers.insert(
            1,
            (
                w_what,
                shape.d_model as usize * config.w_stride(shape.n_out()) as usize,
            ),
        );
    }
    for (what, elems) in buffers {
        let bytes = elems as u64 * 4;
        if bytes > binding {
            return Err(Error::DeviceLimit {
                what: what.to_string(),
                needed: fmt_bytes(bytes),
                limit: fmt_bytes(binding),
                limit_name,
                hint: " (fewer tokens, or a narrower d_model or width)".into(),
            });
        }
    }
    let (cols, rows) = config.workgroup_tile();
    let max_groups = limits.max_compute_workgroups_per_dimension;
    for (what, n, per) in [
        ("the dispatch over output columns", shape.n_out(), cols),
        ("the dispatch over tokens", shape.tokens, rows),
    ] {
        let groups = n.div_ceil(per);
        if groups > max_groups {
            return Err(Error::DeviceLimit {
                what: what.to_string(),
                needed: format!("{groups} workgroups"),
                limit: format!("{max_groups}"),
                limit_name: "max_compute_workgroups_per_dimension",
                hint: String::new(),
            });
        }
    }
    Ok(())
}

impl<'c> Projector<'c> {
    /// Allocates the buffers for `shape` and compiles (or reuses) `kernel`'s pipeline; Q, K
    /// and V come back token-major.
    /// Fails with [`Error::DeviceLimit`] if a buffer or the dispatch exceeds the device.
    pub fn new(
        ctx: &'c GpuContext,
        shape: QkvShape,
        config: impl Into<KernelConfig>,
    ) -> Result<Self> {
        Self::with_layout(ctx, shape, config, OutputLayout::Tokens)
    }

    /// As [`Projector::new`], with Q, K and V written by the kernel in `layout`.
    pub fn with_layout(
        ctx: &'c GpuContext,
        shape: QkvShape,
        config: impl Into<KernelConfig>,
        layout: OutputLayout,
    ) -> Result<Self> {
        let config = config.into();
        config.check().map_err(Error::Input)?;
        if let Some(why) = config.unsupported_on(&ctx.summary) {
            return Err(Error::Input(why));
        }
        check_fits(ctx, &shape, config)?;
        let (seq_len, q_head_dim, kv_head_dim) = match layout {
            OutputLayout::Tokens => (shape.tokens, shape.q_width, shape.kv_width),
            OutputLayout::Heads(h) => {
                // Re-check: a HeadSplit may have been built for another shape.
                let h = crate::layout::HeadSplit::new(&shape, h.seq_len, h.heads, h.kv_heads)?;
                (h.seq_len, h.q_head_dim(&shape), h.kv_head_dim(&shape))
            }
        };
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
        let (group_layout, pipeline_layout) = if textures {
            (&layouts.textured_group, &layouts.textured)
        } else {
            (&layouts.projection_group, &layouts.projection)
        };
        let pipeline = ctx.pipeline(config.kernel.source(), &constants, pipeline_layout)?;
        let fill_pipeline = ctx.pipeline(FILL_NAN, &[], &layouts.fill)?;

        let device = &ctx.device;
        let during = format!("allocating buffers for {shape}");
        let (x, w, bias, outputs, staging, params) = ctx.checked(&during, || {
            let storage = |label: &str, elems: usize, usage: wgpu::BufferUsages| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: elems as u64 * 4,
                    usage: wgpu::BufferUsages::STORAGE | usage,
                    mapped_at_creation: false,
                })
            };
            let copy_dst = wgpu::BufferUsages::COPY_DST;
            let w_stride = config.w_stride(shape.n_out());
            let tex = TextureLayout::of(&shape, w_stride);
            let x = Operand::new(device, "x", textures, shape.x_len(), tex.x);
            let w_len = shape.d_model as usize * w_stride as usize;
            let w = Operand::new(device, "w (fused Wq|Wk|Wv)", textures, w_len, tex.w);
            // Without a bias the binding still needs a buffer; HAS_BIAS=false never reads it.
            let bias_len = if shape.bias {
                shape.n_out() as usize
            } else {
                1
            };
            let bias = storage("bias", bias_len, copy_dst);
            let out_usage = wgpu::BufferUsages::COPY_SRC;
            let outputs = [
                storage("q", shape.q_len(), out_usage),
                storage("k", shape.kv_len(), out_usage),
                storage("v", shape.kv_len(), out_usage),
            ];
            // A MAP_READ buffer may only be a COPY_DST, so results come back through these.
            let staging = ["q staging", "k staging", "v staging"].map(|label| {
                let len = if label.starts_with('q') {
                    shape.q_len()
                } else {
                    shape.kv_len()
                };
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: len as u64 * 4,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            });
            let params = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(&Params {
                    tokens: shape.tokens,
                    d_model: shape.d_model,
                    q_width: shape.q_width,
                    kv_width: shape.kv_width,
                    seq_len,
                    q_head_dim,
                    kv_head_dim,
                    w_stride: config.w_stride(shape.n_out()),
                }),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            (x, w, bias, outputs, staging, params)
        })?;

        let (bind_group, fill_groups) = ctx.checked("creating bind groups", || {
            let entries: Vec<wgpu::BindGroupEntry> = [
                params.as_entire_binding(),
                x.resource(),
                w.resource(),
                bias.as_entire_binding(),
            ]
            .into_iter()
            .chain(outputs.iter().map(|b| b.as_entire_binding()))
            .enumerate()
            .map(|(i, resource)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource,
            })
            .collect();
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("projection bind group"),
                layout: group_layout,
                entries: &entries,
            });
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
            (bind_group, fill_groups)
        })?;

        let timestamps = if ctx.has_timestamps() {
            Some(ctx.checked("creating timestamp queries", || Timestamps {
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
            })?)
        } else {
            None
        };

        // Some drivers (lavapipe among them) compile a shader at its first dispatch, not at
        // pipeline creation. One workgroup on the fresh (zeroed) buffers forces that here,
        // outside every timed region; every run poisons the outputs before its own dispatch.
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
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        })?;
        ctx.submit_and_wait(encoder, "warming up the pipeline")?;

        Ok(Self {
            ctx,
            shape,
            config,
            layout,
            pipeline,
            fill_pipeline,
            bind_group,
            fill_groups,
            x,
            w,
            bias,
            outputs,
            staging,
            timestamps,
            weights_loaded: false,
        })
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
        let stride = self.config.w_stride(s.n_out()) as usize;
        // Kernels that read W as vec4 get rows padded with zeros to a multiple of 4 columns.
        let padded: Vec<f32>;
        let w: &[f32] = if stride == n_out {
            &weights.w
        } else {
            padded = weights
                .w
                .chunks_exact(n_out)
                .flat_map(|row| {
                    row.iter()
                        .copied()
                        .chain(std::iter::repeat_n(0.0, stride - n_out))
                })
                .collect();
            &padded
        };
        self.ctx.checked("uploading weights", || {
            self.w.write(&self.ctx.queue, w, stride);
            if let Some(b) = &weights.bias {
                self.ctx
                    .queue
                    .write_buffer(&self.bias, 0, bytemuck::cast_slice(b));
            }
        })?;
        let index = self.ctx.queue.submit([]);
        self.ctx.wait(index, "uploading weights")?;
        self.weights_loaded = true;
        Ok(start.elapsed())
    }

    /// Projects X [tokens, d_model]: fills Q, K, V with NaN, uploads X, runs the fused
    /// dispatch, reads Q, K, V back. Weights must have been set.
    pub fn run(&mut self, x: &[f32]) -> Result<QkvOutput> {
        if !self.weights_loaded {
            return Err(Error::Input(
                "no weights uploaded: call set_weights before run".into(),
            ));
        }
        if x.len() != self.shape.x_len() {
            return Err(Error::Shape(format!(
                "X has {} elements; [{}, {}] needs {}",
                x.len(),
                self.shape.tokens,
                self.shape.d_model,
                self.shape.x_len()
            )));
        }
        let ctx = self.ctx;
        let kernel_label = format!("dispatch of kernel {}", self.config);

        // Untimed: poison the outputs so an unwritten element cannot pass.
        self.poison_outputs()?;

        // Upload.
        let start = Instant::now();
        let d_model = self.shape.d_model as usize;
        ctx.checked("uploading X", || self.x.write(&ctx.queue, x, d_model))?;
        let index = ctx.queue.submit([]);
        ctx.wait(index, "uploading X")?;
        let upload = start.elapsed();

        // The fused dispatch: Q, K and V in one.
        let (cols, rows) = self.config.workgroup_tile();
        let groups = (
            self.shape.n_out().div_ceil(cols),
            self.shape.tokens.div_ceil(rows),
        );
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("projection"),
            });
        ctx.checked(&kernel_label, || {
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(self.config.kernel.name()),
                    timestamp_writes: self.timestamps.as_ref().map(|t| {
                        wgpu::ComputePassTimestampWrites {
                            query_set: &t.set,
                            beginning_of_pass_write_index: Some(0),
                            end_of_pass_write_index: Some(1),
                        }
                    }),
                });
                pass.set_pipeline(&self.pipeline);
                pass.set_bind_group(0, &self.bind_group, &[]);
                pass.dispatch_workgroups(groups.0, groups.1, 1);
            }
            if let Some(t) = &self.timestamps {
                encoder.resolve_query_set(&t.set, 0..2, &t.resolve, 0);
                encoder.copy_buffer_to_buffer(&t.resolve, 0, &t.readback, 0, 16);
            }
        })?;
        let start = Instant::now();
        ctx.submit_and_wait(encoder, &kernel_label)?;
        let dispatch_wall = start.elapsed();
        let (kernel, kernel_timer) = match &self.timestamps {
            Some(t) => {
                let mut ticks = [0u64; 2];
                ctx.read_mapped(&t.readback, &mut ticks, "reading timestamps")?;
                let ns = ticks[1].saturating_sub(ticks[0]) as f64 * t.period_ns;
                (Duration::from_nanos(ns as u64), KernelTimer::GpuTimestamp)
            }
            None => (dispatch_wall, KernelTimer::Host),
        };

        // Readback.
        let start = Instant::now();
        let [q, k, v] = self.read_outputs()?;
        let readback = start.elapsed();

        Ok(QkvOutput {
            q,
            k,
            v,
            timings: RunTimings {
                upload,
                kernel,
                kernel_timer,
                dispatch_wall,
                readback,
            },
        })
    }

    /// Fills Q, K and V on the GPU with NaN (bit pattern 0x7fc00000). `run` does this before
    /// every dispatch; it is public so that tests can show an unwritten element reads NaN.
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
            pass.set_pipeline(&self.fill_pipeline);
            // The shader's grid-stride loop covers any size with any number of groups, so
            // stay within both a modest grid and the device's per-dimension limit.
            let max_groups = ctx.limits().max_compute_workgroups_per_dimension.min(4096) as u64;
            for (group, words) in &self.fill_groups {
                pass.set_bind_group(0, group, &[]);
                pass.dispatch_workgroups(words.div_ceil(256).clamp(1, max_groups) as u32, 1, 1);
            }
        })?;
        ctx.submit_and_wait(encoder, "filling outputs with NaN")
    }

    /// Copies Q, K and V as they are now on the GPU into host vectors.
    pub fn read_outputs(&mut self) -> Result<[Vec<f32>; 3]> {
        let ctx = self.ctx;
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        ctx.checked("copying Q, K, V for readback", || {
            for (src, dst) in self.outputs.iter().zip(&self.staging) {
                encoder.copy_buffer_to_buffer(src, 0, dst, 0, src.size());
            }
        })?;
        ctx.submit_and_wait(encoder, "copying Q, K, V for readback")?;
        let mut out = [
            vec![0f32; self.shape.q_len()],
            vec![0f32; self.shape.kv_len()],
            vec![0f32; self.shape.kv_len()],
        ];
        for ((staging, buf), name) in
            self.staging
                .iter()
                .zip(out.iter_mut())
                .zip(["reading Q", "reading K", "reading V"])
        {
            ctx.read_mapped(staging, buf, name)?;
        }
        Ok(out)
    }
}
