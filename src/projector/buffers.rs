//! The GPU memory of a projector: X and W ([`Operand`]: buffers or textures), the
//! weights and bias uploaded once ([`WeightBuffers`]), and the chunk buffer sets runs stream
//! through ([`Slot`]), each with its bind groups made once.

use super::epilogue::{EpilogueBuffers, EpiloguePass};
use super::operand::{storage_bytes, Operand};
use super::timing::Queries;
use crate::binding::{Layout, Params, TextureLayout};
use crate::context::GpuContext;
use crate::element::ElementType;
use crate::error::{Error, Result};
use crate::host::ElementVec;
use crate::kernels::{KernelSpec, OperandLayout, W_PART_ALIGN};
use crate::plan::ChunkPlan;
use crate::shape::QkvShape;
use crate::weights::{FusedWeights, WeightData};
use std::ops::Range;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// W per column block and the bias, on the GPU for every run.
pub(super) struct WeightBuffers {
    /// W per column block.
    w: Vec<Operand>,
    bias: wgpu::Buffer,
}

impl WeightBuffers {
    pub(super) fn new(device: &wgpu::Device, spec: &KernelSpec, plan: &ChunkPlan) -> Self {
        let chunk_shape = plan.chunk_shape();
        let d = plan.shape.d_model as usize;
        let kind = (spec.reads_textures(), spec.types.w);
        let texels = spec.binding.w_texels();
        let stored = spec.w_block_bytes(&plan.shape).map(|bytes| {
            let label = "w (Wq, Wk, Wv as stored, in their formats)";
            if texels {
                return Operand::texels(device, label, bytes);
            }
            Operand::Buffer(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.div_ceil(16) * 16,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }))
        });
        let w = stored.into_iter().collect::<Vec<_>>();
        let w = if !w.is_empty() {
            w
        } else {
            plan.col_blocks
                .iter()
                .map(|&(_, n_cols)| {
                    let stride = spec.w_stride(d as u32, n_cols);
                    let tex = TextureLayout::of(&chunk_shape, stride);
                    let label = "w (fused Wq|Wk|Wv, one column block)";
                    let len = spec.w_len(d as u32, n_cols);
                    if texels {
                        return Operand::texels(device, label, storage_bytes(spec.types.w, len));
                    }
                    Operand::new(device, label, kind, len as usize, tex.w)
                })
                .collect()
        };
        // Without a bias the binding still needs a buffer; HAS_BIAS=false never reads it.
        let bias_len = if plan.shape.bias {
            plan.shape.n_out() as usize
        } else {
            1
        };
        let bias = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("bias"),
            size: bias_len as u64 * 4,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self { w, bias }
    }

    /// Writes the fused weights (already checked against the plan's shape, and against the
    /// range of the run's type and of W's) into every column block in W's type, and the
    /// bias rounded to the run's type (it is stored as f32, exactly).
    pub(super) fn write(
        &self,
        ctx: &GpuContext,
        spec: &KernelSpec,
        plan: &ChunkPlan,
        weights: &FusedWeights,
    ) -> Result<()> {
        if let Some(parts) = &weights.stored {
            // As stored: each part's bytes on the next 16 bytes, as w_blocks.wgsl finds them.
            let buffer = match self.w.as_slice() {
                [Operand::Buffer(b)] => b,
                [Operand::Texels(t, _)] => {
                    let mut bytes = Vec::new();
                    for p in parts.iter() {
                        bytes.extend_from_slice(&p.bytes);
                        bytes.resize(bytes.len().next_multiple_of(W_PART_ALIGN as usize), 0);
                    }
                    ctx.checked("uploading weights", || {
                        Operand::write_texels(t, &ctx.queue, &bytes)
                    })?;
                    return self.write_bias(ctx, spec, weights);
                }
                _ => {
                    return Err(Error::Input(format!(
                        "kernel {} was not planned for W in its stored formats",
                        spec
                    )))
                }
            };
            let mut at = 0u64;
            for p in parts.iter() {
                let bytes = &p.bytes;
                let whole = bytes.len() / 4 * 4;
                let mut tail = bytes[whole..].to_vec();
                tail.resize(tail.len().div_ceil(4) * 4, 0);
                ctx.checked("uploading weights", || {
                    if whole > 0 {
                        ctx.queue.write_buffer(buffer, at, &bytes[..whole]);
                    }
                    if !tail.is_empty() {
                        ctx.queue.write_buffer(buffer, at + whole as u64, &tail);
                    }
                })?;
                at += (bytes.len() as u64).div_ceil(W_PART_ALIGN) * W_PART_ALIGN;
            }
        } else {
            self.write_fused(ctx, spec, plan, weights)?;
        }
        self.write_bias(ctx, spec, weights)
    }

    /// Writes the bias rounded to the run's type (see [`write`](Self::write)).
    fn write_bias(
        &self,
        ctx: &GpuContext,
        spec: &KernelSpec,
        weights: &FusedWeights,
    ) -> Result<()> {
        if let Some(b) = &weights.bias {
            let mut rounded = b.clone();
            // Added in f32 by every kernel: rounded to the run's type only.
            spec.dtype().round_slice(&mut rounded);
            ctx.checked("uploading the bias", || {
                ctx.queue
                    .write_buffer(&self.bias, 0, bytemuck::cast_slice(&rounded))
            })?;
        }
        Ok(())
    }

    /// Writes a fused W into every column block (see [`write`](Self::write)).
    fn write_fused(
        &self,
        ctx: &GpuContext,
        spec: &KernelSpec,
        plan: &ChunkPlan,
        weights: &FusedWeights,
    ) -> Result<()> {
        let n_out = plan.shape.n_out() as usize;
        let mut scratch = Vec::new();
        let input = spec.types.w;
        // Patterns of another half type than W's are converted first (rounded or widened);
        // f32 is rounded as it is written, and patterns of W's type are written as they are.
        // A kernel that reads W in another type than the run's (`coopmat`: f16) gets the
        // run's values converted, as X is: rounded to the run's type first, then to W's.
        let converted;
        let data = match &weights.w {
            w if input != spec.dtype() => {
                converted = w.to_element_via(spec.dtype(), input);
                &converted
            }
            WeightData::Half(e, _) if *e != input => {
                converted = weights.w.to_element(input);
                &converted
            }
            w => w,
        };
        let d = plan.shape.d_model as usize;
        for (operand, &(col0, n_cols)) in self.w.iter().zip(&plan.col_blocks) {
            let stride = spec.w_stride(d as u32, n_cols) as usize;
            let (c0, n) = (col0 as usize, n_cols as usize);
            let transposed = spec.operands == OperandLayout::KMajor;
            let whole = n == n_out && stride == n_out && !transposed;
            // Each block's rows hold its columns, zero-padded to the stride the kernel reads
            // (a multiple of 4 for the vec4 kernels); no copy where that is all of W as it is.
            // A transposed W has one row per column of the block, along d_model, padded by
            // `write` to the stride.
            fn block<T: Copy + Default>(
                w: &[T],
                n_out: usize,
                (c0, n): (usize, usize),
                stride: usize,
                transposed: bool,
            ) -> Vec<T> {
                if transposed {
                    let d = w.len() / n_out.max(1);
                    return (c0..c0 + n)
                        .flat_map(|c| (0..d).map(move |k| w[k * n_out + c]))
                        .collect();
                }
                w.chunks_exact(n_out)
                    .flat_map(|row| {
                        row[c0..c0 + n]
                            .iter()
                            .copied()
                            .chain(std::iter::repeat_n(T::default(), stride - n))
                    })
                    .collect()
            }
            let blocked;
            let host = match data {
                _ if whole => data.as_ref(),
                WeightData::F32(w) => {
                    blocked = ElementVec::F32(block(w, n_out, (c0, n), stride, transposed));
                    blocked.as_ref()
                }
                WeightData::Half(e, w) => {
                    blocked = ElementVec::Half(*e, block(w, n_out, (c0, n), stride, transposed));
                    blocked.as_ref()
                }
            };
            // Rows as the GPU holds them: d_model of them `stride` wide, or (transposed) n
            // of them, d_model long, padded to `stride`.
            let row = if transposed {
                (d, stride)
            } else {
                (stride, stride)
            };
            ctx.checked("uploading weights", || {
                operand.write(&ctx.queue, (host, input), row, &mut scratch)
            })?;
        }
        Ok(())
    }
}

/// A submitted chunk whose results have not been read yet.
pub(super) struct Pending {
    pub(super) index: u32,
    pub(super) rows: Range<u32>,
    pub(super) submission: wgpu::SubmissionIndex,
}

/// How X reaches a buffer set's X on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upload {
    /// The source writes the host copy; the queue uploads it (`Queue::write_buffer` or
    /// `write_texture`). The browser's way, the sequential path's, and textures'.
    Queued,
    /// The source writes straight into a staging buffer mapped for writing, in the type and
    /// layout the kernel reads; the chunk's command buffer copies it to X.
    Mapped,
    /// As `Mapped`, through the host copy: the kernel reads another type or a padded stride,
    /// so the producer converts and pads the source's rows into the mapped staging buffer.
    MappedConverted,
}

/// One set of chunk buffers. Streaming uses several (the pipeline three or more), so that one
/// chunk's transfers and host work overlap the others' kernels.
pub(super) struct Slot {
    pub(super) x: Operand,
    /// X of the chunk as the source wrote it, in the storage type (empty where the source
    /// writes into `x_up` directly).
    pub(super) x_host: Mutex<ElementVec>,
    /// The bytes X is uploaded from, where it is not uploaded as it is.
    pub(super) x_bytes: Mutex<Vec<u8>>,
    /// The staging buffer X is written into, mapped for writing between chunks
    /// ([`Upload::Mapped`] and [`Upload::MappedConverted`]).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the pipeline's, native only
    pub(super) x_up: Option<wgpu::Buffer>,
    /// Whether `x_up` is mapped now (wgpu 30 cannot be asked).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(super) x_up_mapped: Arc<AtomicBool>,
    pub(super) outputs: [wgpu::Buffer; 3],
    pub(super) staging: [wgpu::Buffer; 3],
    /// Per column block: its params uniform and its bind group (then the epilogue pass's,
    /// where there is one: see [`Slot::bind`]).
    pub(super) params: Vec<wgpu::Buffer>,
    pub(super) bind_groups: Vec<wgpu::BindGroup>,
    /// Q and K in f32 before the epilogue pass, where there is one.
    pub(super) epilogue: Option<EpilogueBuffers>,
    pub(super) fill_groups: Vec<(wgpu::BindGroup, u64)>,
    /// Split-K partial sums (only for kernels with a reduce pass).
    scratch: Option<wgpu::Buffer>,
    /// The kernel pass's timestamps (where the adapter has them).
    pub(super) timestamps: Option<Queries>,
    pub(super) pending: Option<Pending>,
}

/// Uniform buffers for the params of each column block.
pub(super) fn params_buffers(device: &wgpu::Device, plan: &ChunkPlan) -> Vec<wgpu::Buffer> {
    plan.col_blocks
        .iter()
        .map(|_| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params (one column block)"),
                size: std::mem::size_of::<Params>() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
        .collect()
}

/// One chunk's Q, K, V in `element` on the GPU, each followed by `guard` 32-bit words
/// (bound with it: see [`super::Projector::from_plan_guarded`]), and the staging buffers
/// they are read back through (a MAP_READ buffer may only be a COPY_DST).
fn output_buffers(
    device: &wgpu::Device,
    element: ElementType,
    chunk_shape: &QkvShape,
    guard: u32,
) -> ([wgpu::Buffer; 3], [wgpu::Buffer; 3]) {
    let (q_len, kv_len) = (chunk_shape.q_len() as u64, chunk_shape.kv_len() as u64);
    let guard = guard as u64 * 4;
    let (q_bytes, kv_bytes) = (
        storage_bytes(element, q_len) + guard,
        storage_bytes(element, kv_len) + guard,
    );
    let buffer = |label: &str, size: u64, usage: wgpu::BufferUsages| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let out = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let read = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
    (
        [
            buffer("q (one chunk)", q_bytes, out),
            buffer("k (one chunk)", kv_bytes, out),
            buffer("v (one chunk)", kv_bytes, out),
        ],
        [
            buffer("q staging", q_bytes, read),
            buffer("k staging", kv_bytes, read),
            buffer("v staging", kv_bytes, read),
        ],
    )
}

/// The `fill_nan` bind group of each buffer, with its length in 32-bit words.
fn fill_groups(ctx: &GpuContext, outputs: &[wgpu::Buffer]) -> Vec<(wgpu::BindGroup, u64)> {
    outputs
        .iter()
        .map(|b| {
            let group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("fill_nan bind group"),
                layout: &ctx.fill_layout().group,
                entries: &[wgpu::BindGroupEntry {
                    binding: 0,
                    resource: b.as_entire_binding(),
                }],
            });
            (group, b.size() / 4)
        })
        .collect()
}

impl Slot {
    /// Allocates one buffer set for the plan's chunks (Q, K, V each followed by `guard`
    /// words, and the scratch of the `epilogue` pass if any), with X uploaded as `upload`
    /// says, and binds it with `weights`.
    pub(super) fn new(
        ctx: &GpuContext,
        (spec, plan, guard): (&KernelSpec, &ChunkPlan, u32),
        (weights, epilogue): (&WeightBuffers, Option<&EpiloguePass>),
        (layout, upload): (&Layout, Upload),
    ) -> Self {
        let device = &ctx.device;
        let chunk_shape = plan.chunk_shape();
        let storage = |label: &str, bytes: u64, usage: wgpu::BufferUsages| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE | usage,
                mapped_at_creation: false,
            })
        };
        let tex = TextureLayout::of(&chunk_shape, 4);
        let textures = spec.x_texture();
        let x = Operand::new(
            device,
            "x (one chunk)",
            (textures, spec.types.x),
            chunk_shape.tokens as usize * spec.x_stride(chunk_shape.d_model) as usize,
            tex.x,
        );
        let (outputs, staging) = output_buffers(device, spec.types.out, &chunk_shape, guard);
        let params = params_buffers(device, plan);
        let scratch = spec.reduce.map(|_| {
            // f32: the partial sums are the accumulators'.
            storage(
                "partial sums (split-K)",
                spec.scratch_len(plan.chunk_tokens, plan.widest_block()) * 4,
                wgpu::BufferUsages::empty(),
            )
        });
        let fill_groups = fill_groups(ctx, &outputs);
        let timestamps = ctx.has_timestamps().then(|| {
            // The kernel's pass, and the epilogue's apart.
            let pairs = 1 + u32::from(epilogue.is_some_and(|e| !e.fused()));
            Queries::new(device, &ctx.queue, pairs, "kernel timestamps")
        });
        let x_up = (upload != Upload::Queued).then(|| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("x staging (one chunk, mapped for writing)"),
                size: x.size(),
                usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                // Mapped from the start, ready for the first chunk's producer.
                mapped_at_creation: true,
            })
        });
        let host_len = if upload == Upload::Mapped {
            0
        } else {
            chunk_shape.x_len()
        };
        let mut slot = Slot {
            x,
            // X as the source fills it: in the run's type.
            x_host: Mutex::new(ElementVec::zeros(spec.dtype(), host_len)),
            x_bytes: Mutex::new(Vec::new()),
            x_up_mapped: Arc::new(AtomicBool::new(x_up.is_some())),
            x_up,
            outputs,
            staging,
            params,
            bind_groups: Vec::new(),
            epilogue: epilogue.map(|e| {
                let mut b = e.buffers(ctx, plan);
                if let Some(s) = &mut b.scratch {
                    s.fill_groups = self::fill_groups(ctx, &[s.q_in.clone(), s.k_in.clone()]);
                }
                b
            }),
            fill_groups,
            scratch,
            timestamps,
            pending: None,
        };
        slot.bind_groups = slot.bind(device, layout, &slot.params, (weights, epilogue));
        slot
    }

    /// One bind group per column block: `params` (one per block), this slot's X, that
    /// block's W, the bias, this slot's Q, K, V (and partial sums); with an `epilogue`
    /// fused, its uniform and tables; with its pass, Q and K are its scratch, and its pass's
    /// group comes last.
    pub(super) fn bind(
        &self,
        device: &wgpu::Device,
        layout: &Layout,
        params: &[wgpu::Buffer],
        (weights, epilogue): (&WeightBuffers, Option<&EpiloguePass>),
    ) -> Vec<wgpu::BindGroup> {
        let outputs = match self.epilogue.as_ref().and_then(|e| e.scratch.as_ref()) {
            Some(e) => [&e.q_in, &e.k_in, &self.outputs[2]],
            None => [&self.outputs[0], &self.outputs[1], &self.outputs[2]],
        };
        let fused = epilogue.filter(|e| e.fused()).zip(self.epilogue.as_ref());
        let mut groups: Vec<wgpu::BindGroup> = params
            .iter()
            .zip(&weights.w)
            .map(|(params, w)| {
                let entries: Vec<wgpu::BindGroupEntry> = [
                    params.as_entire_binding(),
                    self.x.resource(),
                    w.resource(),
                    weights.bias.as_entire_binding(),
                ]
                .into_iter()
                .chain(outputs.iter().map(|b| b.as_entire_binding()))
                .chain(self.scratch.as_ref().map(|b| b.as_entire_binding()))
                .chain(fused.into_iter().flat_map(|(e, b)| e.resources(b)))
                .enumerate()
                .map(|(i, resource)| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource,
                })
                .collect();
                device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("projection bind group"),
                    layout: &layout.group,
                    entries: &entries,
                })
            })
            .collect();
        if let (Some(pass), Some(b)) = (epilogue, &self.epilogue) {
            groups.extend(pass.bind(device, &params[0], &self.outputs, b));
        }
        groups
    }
}

/// Checks that `weights` are what a projector planned as `plan` takes.
pub(super) fn check_weights(
    spec: &KernelSpec,
    plan: &ChunkPlan,
    weights: &FusedWeights,
) -> Result<()> {
    let s = &plan.shape;
    if spec.w_formats != weights.w_formats() {
        let names = |f: Option<[crate::quant::WeightType; 3]>| match f {
            Some(f) => format!("Wq, Wk, Wv in {}", f.map(|t| t.name()).join(", ")),
            None => "a fused W".to_string(),
        };
        return Err(Error::Input(format!(
            "the weights hold {} but the projector was made for {}",
            names(weights.w_formats()),
            names(spec.w_formats)
        )));
    }
    if (weights.d_model, weights.q_width, weights.kv_width) != (s.d_model, s.q_width, s.kv_width) {
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
    if weights.stored.is_none() && weights.w.len() != s.w_len() {
        return Err(Error::Shape(format!(
            "W has {} elements; [{}, {}] needs {}",
            weights.w.len(),
            s.d_model,
            s.n_out(),
            s.w_len()
        )));
    }
    match (&weights.bias, s.bias) {
        (Some(b), true) if b.len() != s.n_out() as usize => Err(Error::Shape(format!(
            "bias has {} elements; it needs {}",
            b.len(),
            s.n_out()
        ))),
        (Some(_), false) => Err(Error::Shape(
            "weights carry a bias but the projector was made without one".into(),
        )),
        (None, true) => Err(Error::Shape(
            "the projector was made with a bias but the weights have none".into(),
        )),
        _ => Ok(()),
    }
}
