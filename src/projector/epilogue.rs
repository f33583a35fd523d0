//! [`crate::epilogue`]'s norm and RoPE on the GPU, fused into the kernel's store where its
//! tile holds whole heads, else as a pass of its own.
//!
//! - **Fused**: `blocktile` ([`KernelSpec::with_rope_norm`]) stages each 128 x 128 tile in
//!   workgroup memory after its main loop and normalizes and rotates every head in it before
//!   the store (`shaders/parts/tile_rope_norm.wgsl`). That needs every head inside one tile:
//!   128 a multiple of the head size, column blocks that start and end on a head, and a norm
//!   per head, not over the width ([`unfused_because`]).
//! - **A pass**: every other kernel and case. The kernel, compiled with `QK_SCRATCH`, leaves
//!   Q and K in f32 scratch buffers, token-major; after every column block of the chunk,
//!   `shaders/qkv_epilogue.wgsl` normalizes and rotates them. A head's norm needs the whole
//!   head (a per-width norm the whole row), which other tiles or column blocks do not hold.
//!
//! Both go through `shaders/parts/rope_norm.wgsl`: the same arithmetic in f32, then the store
//! every kernel shares, in the storage type and layout.
//!
//! The angles: each pair's cos and sin at position p = hi·2^b + lo come from two tables
//! computed in f64 and rounded once to f32 (hi's and lo's), combined by the angle-sum
//! formulas: a few units of f32 rounding at any position, where an f32 angle p·f would err
//! by p·2^-24 radians and WGSL's `cos` is only accurate within [-π, π]
//! ([`crate::validate::Tolerance::with_epilogue`] has the bound).

use crate::binding::BindingKind;
use crate::binding::EpilogueParams;
use crate::context::GpuContext;
use crate::epilogue::{Epilogue, Heads, NormScope, Positions, RopePairs};
use crate::error::{Error, Result};
use crate::kernels::{KernelSpec, EPILOGUE, FILL_NAN};
use crate::layout::OutputLayout;
use crate::plan::ChunkPlan;
use std::sync::Arc;

/// Invocations per workgroup of the pass (every device allows 64).
const WG: u32 = 64;

/// The epilogue of one projector: its tables, weights and positions on the GPU, and the
/// pass's pipelines unless the kernel applies it itself.
pub(super) struct EpiloguePass {
    /// The pass and the f32 NaN fill of its scratch (the outputs' fill writes the storage
    /// type's NaN); None where the epilogue is fused into the kernel.
    pass: Option<Pipelines>,
    /// The angle tables, the norm weights, the positions ([`EpilogueParams`] says where).
    aux: wgpu::Buffer,
    /// The uniform but for `row0`, which each chunk sets.
    params: EpilogueParams,
    /// Invocations per row: Q's spans and K's (heads, or one each for a norm over the width).
    spans: u32,
    /// What it applies, over which heads.
    pub(super) settings: (Epilogue, Heads),
}

struct Pipelines {
    pass: Arc<wgpu::ComputePipeline>,
    fill: Arc<wgpu::ComputePipeline>,
    group_layout: wgpu::BindGroupLayout,
}

/// One buffer set's part: the uniform, and for the pass Q and K as the kernel left them.
pub(super) struct EpilogueBuffers {
    uniform: wgpu::Buffer,
    pub(super) scratch: Option<Scratch>,
}

/// Q and K in f32 between the kernel and the pass.
pub(super) struct Scratch {
    pub(super) q_in: wgpu::Buffer,
    pub(super) k_in: wgpu::Buffer,
    /// Their `fill_nan` groups, with their lengths in words (the buffer set's to make).
    pub(super) fill_groups: Vec<(wgpu::BindGroup, u64)>,
}

/// Why a kernel with the epilogue fused into its store ([`KernelSpec::with_rope_norm`] of
/// `spec`) cannot apply `ep` over `heads` on `plan`, if it cannot: it needs every head inside
/// one of its tiles (the tile's columns a multiple of the head size, every column block
/// starting and ending on a head; Q's and K's widths are whole heads) and the norm, if any,
/// per head.
pub(super) fn unfused_because(
    spec: &KernelSpec,
    plan: &ChunkPlan,
    ep: &Epilogue,
    heads: &Heads,
) -> Option<String> {
    let d = heads.head_dim;
    let fused = match spec.clone().with_rope_norm() {
        Ok(f) => f,
        Err(_) => return Some(format!("kernel {spec} has no store that applies it")),
    };
    if d == 0 || !fused.tile.0.is_multiple_of(d) {
        return Some(format!(
            "heads of {d} straddle {spec}'s tiles of {} columns",
            fused.tile.0
        ));
    }
    let cut = |&(c0, n): &(u32, u32)| !c0.is_multiple_of(d) || !n.is_multiple_of(d);
    if plan.col_blocks.iter().any(cut) {
        let widths: Vec<String> = plan.col_blocks.iter().map(|b| b.1.to_string()).collect();
        return Some(format!(
            "W's column blocks of {} columns (the device's limits) cut heads of {d}",
            widths.join(", ")
        ));
    }
    if ep
        .qk_norm
        .as_ref()
        .is_some_and(|n| n.scope == NormScope::Width)
    {
        return Some("the norm spans the whole width, past one tile".into());
    }
    None
}

/// The override constants of `rope_norm.wgsl` for `ep` over `heads`: the pass's and a fused
/// kernel's.
pub(super) fn constants(ep: &Epilogue, heads: &Heads) -> Vec<(&'static str, f64)> {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let norm = ep.qk_norm.as_ref();
    let rope = ep.rope.as_ref();
    vec![
        ("HEAD_DIM", heads.head_dim as f64),
        (
            "NORM",
            match norm.map(|n| n.scope) {
                None => 0.0,
                Some(NormScope::PerHead) => 1.0,
                Some(NormScope::Width) => 2.0,
            },
        ),
        ("PLUS_ONE", flag(norm.is_some_and(|n| n.plus_one))),
        (
            "ROPE",
            match rope.map(|r| r.pairs) {
                None => 0.0,
                Some(RopePairs::Half) => 1.0,
                Some(RopePairs::Adjacent) => 2.0,
            },
        ),
        ("ROTARY", rope.map_or(0, |r| r.rotary_dim) as f64),
    ]
}

/// Checks that `ep` can follow `spec` on `plan`: a built-in kernel, heads that tile Q and K,
/// a head layout (if any) of the same heads and sequences; fused, heads that fit the tile
/// ([`unfused_because`]); else a plan with room for the scratch.
fn check(spec: &KernelSpec, plan: &ChunkPlan, ep: &Epilogue, heads: &Heads) -> Result<()> {
    let s = &plan.shape;
    ep.check(heads, s.tokens)?;
    if ep.qk_norm.is_some() && spec.accumulates_in_f16() {
        return Err(Error::Input(format!(
            "QK-norm after kernel {spec}, which accumulates in f16: its sums err too much for \
             the norm's bound (which is first-order); run it with an f32 accumulator"
        )));
    }
    if spec.custom.is_some() {
        return Err(Error::Input(format!(
            "QK-norm and RoPE follow the built-in kernels only: kernel {spec} stores Q and K \
             itself"
        )));
    }
    if heads.heads * heads.head_dim != s.q_width || heads.kv_heads * heads.head_dim != s.kv_width {
        return Err(Error::Shape(format!(
            "{} heads and {} KV heads of {} do not make Q's width {} and K's {}",
            heads.heads, heads.kv_heads, heads.head_dim, s.q_width, s.kv_width
        )));
    }
    if let OutputLayout::Heads(h) = plan.layout {
        if h.q_head_dim(s) != heads.head_dim
            || h.seq_len != heads.seq
            || h.kv_heads != heads.kv_heads
        {
            return Err(Error::Shape(format!(
                "the head layout ({} and {} KV heads, sequences of {}) is not the epilogue's ({} \
                 and {} KV heads, sequences of {})",
                h.heads, h.kv_heads, h.seq_len, heads.heads, heads.kv_heads, heads.seq
            )));
        }
    }
    if spec.binding == BindingKind::RopeNorm {
        if let Some(why) = unfused_because(spec, plan, ep, heads) {
            return Err(Error::Input(format!(
                "kernel {spec} cannot apply this epilogue in its store: {why}; run it as a \
                 pass (the kernel without with_rope_norm)"
            )));
        }
    } else if !plan.qk_f32 {
        return Err(Error::Input(
            "the plan has no room for Q and K in f32 before the epilogue: plan it with \
             ChunkOptions::qk_f32"
                .into(),
        ));
    }
    Ok(())
}

/// The highest position any token takes, refused where it does not fit in 32 bits.
fn last_position(ep: &Epilogue, heads: &Heads) -> Result<u64> {
    let last = match &ep.positions {
        Positions::Offset(o) => *o as u64 + heads.seq.max(1) as u64 - 1,
        Positions::Given(p) => p.iter().copied().max().unwrap_or(0) as u64,
    };
    if last > u32::MAX as u64 {
        return Err(Error::Input(format!(
            "the offset takes positions up to {last}, past 32 bits"
        )));
    }
    Ok(last)
}

/// `aux`'s words and the uniform (`row0` 0): the angle tables, the norm weights, the
/// positions.
fn tables(ep: &Epilogue, heads: &Heads) -> Result<(Vec<u32>, EpilogueParams)> {
    let mut words: Vec<u32> = Vec::new();
    let mut p = EpilogueParams {
        seq: heads.seq.max(1),
        // Counted from the offset, unless given below.
        positions: u32::MAX,
        ..Default::default()
    };
    if let Positions::Offset(o) = ep.positions {
        p.pos_offset = o;
    }
    if let Some(rope) = &ep.rope {
        let last = last_position(ep, heads)?;
        // Half the bits of the last position (rounded up): both tables stay near √last rows.
        let bits = (64 - last.leading_zeros()).div_ceil(2);
        let inv_freq = rope.inv_freq();
        let push = |words: &mut Vec<u32>, at: u64| {
            for f in &inv_freq {
                let (sin, cos) = (at as f64 * f).sin_cos();
                words.extend([(cos as f32).to_bits(), (sin as f32).to_bits()]);
            }
        };
        (0..(1u64 << bits).min(last + 1)).for_each(|lo| push(&mut words, lo));
        p.table_hi = words.len() as u32;
        (0..=(last >> bits)).for_each(|hi| push(&mut words, hi << bits));
        p.lo_bits = bits;
        p.lo_mask = ((1u64 << bits) - 1) as u32;
        if let Positions::Given(given) = &ep.positions {
            p.positions = words.len() as u32;
            words.extend_from_slice(given);
        }
    }
    if let Some(n) = &ep.qk_norm {
        p.q_weight = words.len() as u32;
        words.extend(n.q_weight.iter().map(|w| w.to_bits()));
        p.k_weight = words.len() as u32;
        words.extend(n.k_weight.iter().map(|w| w.to_bits()));
        p.eps = n.eps as f32;
        let (q, k) = match n.scope {
            NormScope::PerHead => (heads.head_dim, heads.head_dim),
            NormScope::Width => (
                heads.heads * heads.head_dim,
                heads.kv_heads * heads.head_dim,
            ),
        };
        p.q_inv_span = (1.0 / q as f64) as f32;
        p.k_inv_span = (1.0 / k as f64) as f32;
    }
    // A binding is never empty.
    if words.is_empty() {
        words.push(0);
    }
    Ok((words, p))
}

impl EpiloguePass {
    /// The epilogue `ep` over `heads` after `spec` on `plan` (see [`check`]): fused into the
    /// kernel where `spec` is bound as [`BindingKind::RopeNorm`], else a pass compiled for
    /// the run's layout and storage type.
    pub(super) fn new(
        ctx: &GpuContext,
        spec: &KernelSpec,
        plan: &ChunkPlan,
        (ep, heads): (&Epilogue, Heads),
    ) -> Result<Self> {
        check(spec, plan, ep, &heads)?;
        let (words, params) = tables(ep, &heads)?;
        let aux = Self::aux_buffer(ctx, words.len() as u64 * 4)?;
        let pass = if spec.binding == BindingKind::RopeNorm {
            None
        } else {
            let mut c = constants(ep, &heads);
            let flag = |b: bool| if b { 1.0 } else { 0.0 };
            c.extend([
                ("WG", WG as f64),
                (
                    "HEAD_LAYOUT",
                    flag(matches!(plan.layout, OutputLayout::Heads(_))),
                ),
                ("ELEM", spec.types.out.shader_code() as f64),
            ]);
            let layout = ctx.epilogue_layout();
            let fill = [
                ("WG", ctx.grid_stride_workgroup() as f64),
                ("NAN_WORD", f32::NAN.to_bits() as f64),
            ];
            Some(Pipelines {
                pass: ctx.pipeline(EPILOGUE, &c, &layout.pipeline)?,
                fill: ctx.pipeline(FILL_NAN, &fill, &ctx.fill_layout().pipeline)?,
                group_layout: layout.group.clone(),
            })
        };
        ctx.checked("uploading the epilogue's tables", || {
            ctx.queue
                .write_buffer(&aux, 0, bytemuck::cast_slice(&words))
        })?;
        let spans = match ep.qk_norm.as_ref().map(|n| n.scope) {
            Some(NormScope::Width) => 2,
            _ => heads.heads + heads.kv_heads,
        };
        Ok(Self {
            pass,
            aux,
            params,
            spans,
            settings: (ep.clone(), heads),
        })
    }

    /// Whether the kernel applies the epilogue in its store (no scratch, no pass).
    pub(super) fn fused(&self) -> bool {
        self.pass.is_none()
    }

    /// The pass's NaN fill of the scratch (None where fused).
    pub(super) fn fill(&self) -> Option<&wgpu::ComputePipeline> {
        self.pass.as_ref().map(|p| &*p.fill)
    }

    /// Moves the tokens to `positions` (checked as [`EpiloguePass::new`] checks them, for
    /// `tokens`): the tables written again, into the same buffer where they fit (then true),
    /// else into a new one, which the caller must bind again (false).
    pub(super) fn set_positions(
        &mut self,
        ctx: &GpuContext,
        positions: Positions,
        tokens: u32,
    ) -> Result<bool> {
        let (ep, heads) = &self.settings;
        let ep = Epilogue {
            positions,
            ..ep.clone()
        };
        ep.check(heads, tokens)?;
        let (words, params) = tables(&ep, heads)?;
        let bytes = words.len() as u64 * 4;
        let fits = bytes <= self.aux.size();
        if !fits {
            self.aux = Self::aux_buffer(ctx, bytes)?;
        }
        ctx.checked("uploading the epilogue's tables", || {
            ctx.queue
                .write_buffer(&self.aux, 0, bytemuck::cast_slice(&words))
        })?;
        self.params = params;
        self.settings.0 = ep;
        Ok(fits)
    }

    /// A buffer for `bytes` of tables, weights and positions, within the binding limit.
    fn aux_buffer(ctx: &GpuContext, bytes: u64) -> Result<wgpu::Buffer> {
        let limit = ctx.limits().max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(Error::DeviceLimit {
                what: "RoPE's angle tables, the norm weights and the positions".into(),
                needed: format!("{bytes} bytes"),
                limit: format!("{limit} bytes"),
                limit_name: "max_storage_buffer_binding_size",
            });
        }
        ctx.checked("allocating the epilogue's tables", || {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("epilogue tables, weights, positions"),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// One buffer set's uniform and, for the pass, its scratch (a full chunk's Q and K in
    /// f32).
    pub(super) fn buffers(&self, ctx: &GpuContext, plan: &ChunkPlan) -> EpilogueBuffers {
        let chunk = plan.chunk_shape();
        let storage = |label: &str, elements: usize| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: elements as u64 * 4,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let scratch = (!self.fused()).then(|| {
            let q_in = storage("q before the epilogue (f32, one chunk)", chunk.q_len());
            let k_in = storage("k before the epilogue (f32, one chunk)", chunk.kv_len());
            Scratch {
                q_in,
                k_in,
                fill_groups: Vec::new(),
            }
        });
        let uniform = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("epilogue params"),
            size: std::mem::size_of::<EpilogueParams>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue
            .write_buffer(&uniform, 0, bytemuck::bytes_of(&self.params));
        EpilogueBuffers { uniform, scratch }
    }

    /// What a buffer set binds at 7 and 8, in the kernel's groups where fused and in the
    /// pass's otherwise: its uniform, and the tables.
    pub(super) fn resources<'a>(
        &'a self,
        b: &'a EpilogueBuffers,
    ) -> [wgpu::BindingResource<'a>; 2] {
        [b.uniform.as_entire_binding(), self.aux.as_entire_binding()]
    }

    /// The pass's bind group over a buffer set (None where fused): `params` (a column
    /// block's: the pass reads its rows, widths and layout), the set's outputs and scratch.
    pub(super) fn bind(
        &self,
        device: &wgpu::Device,
        params: &wgpu::Buffer,
        outputs: &[wgpu::Buffer; 3],
        b: &EpilogueBuffers,
    ) -> Option<wgpu::BindGroup> {
        let (pass, scratch) = (self.pass.as_ref()?, b.scratch.as_ref()?);
        let [uniform, aux] = self.resources(b);
        let resources = [
            params.as_entire_binding(),
            outputs[0].as_entire_binding(),
            outputs[1].as_entire_binding(),
            outputs[2].as_entire_binding(),
            uniform,
            aux,
            scratch.q_in.as_entire_binding(),
            scratch.k_in.as_entire_binding(),
        ];
        let entries: Vec<_> = crate::binding::EPILOGUE_SLOTS
            .iter()
            .zip(resources)
            .map(|(&(binding, _), resource)| wgpu::BindGroupEntry { binding, resource })
            .collect();
        Some(device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("epilogue bind group"),
            layout: &pass.group_layout,
            entries: &entries,
        }))
    }

    /// Sets the first token (in the batch) of the chunk a buffer set holds next.
    pub(super) fn write(&self, queue: &wgpu::Queue, b: &EpilogueBuffers, row0: u32) {
        let params = EpilogueParams {
            row0,
            ..self.params
        };
        queue.write_buffer(&b.uniform, 0, bytemuck::bytes_of(&params));
    }

    /// Dispatches the pass over a chunk of `rows` tokens with its `group`: an invocation per
    /// span of a row, in at most `max_grid` workgroups (the shader strides over the rest).
    /// Nothing where fused.
    pub(super) fn encode(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        group: &wgpu::BindGroup,
        rows: u32,
        max_grid: u32,
    ) {
        let Some(p) = &self.pass else {
            return;
        };
        pass.set_bind_group(0, group, &[]);
        pass.set_pipeline(&p.pass);
        let groups = (rows as u64 * self.spans as u64).div_ceil(WG as u64);
        pass.dispatch_workgroups(groups.clamp(1, max_grid as u64) as u32, 1, 1);
    }
}
