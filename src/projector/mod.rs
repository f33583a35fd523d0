//! The host side of one projection shape: pipelines, buffers and bind groups made once for a
//! plan, then many runs of upload X -> fused dispatch -> read Q, K, V back, each phase timed.
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
//!
//! The parts, from the ground up: [`timing`] (timers, run timings, the median, timestamp
//! queries), `buffers` (GPU memory and bind groups), `epilogue` (QK-norm and RoPE after the
//! kernel), `engine` (pipelines and the chunk stream), `steady` (back-to-back kernel
//! timing); this file is the API over them.

mod buffers;
mod engine;
mod epilogue;
mod operand;
#[cfg(not(target_arch = "wasm32"))]
mod pipeline;
mod steady;
pub mod timing;

use crate::context::GpuContext;
use crate::element::{ElementType, OperandTypes};
use crate::epilogue::{Epilogue, Heads};
use crate::error::{Error, Result};
use crate::host::{Elements, ElementsMut};
use crate::kernels::{Kernel, KernelConfig, KernelSpec};
use crate::layout::OutputLayout;
use crate::plan::{ChunkOptions, ChunkPlan};
use crate::shape::QkvShape;
use crate::weights::FusedWeights;
use engine::Engine;
use std::ops::Range;
use std::time::Duration;
use web_time::Instant;

pub use engine::ChunkOutput;
pub use steady::MAX_REPEATS;
pub use timing::{spread, KernelTimer, KernelTimes, RunTimings};

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

/// Words after one of Q, K, V that a run changed ([`Projector::guard_damage`]): the kernel
/// wrote past the output's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardDamage {
    /// "Q", "K" or "V".
    pub part: &'static str,
    /// 32-bit words changed.
    pub words: u64,
    /// The first changed word, counted from the output's end (0: the word just past it).
    pub first: u64,
}

/// Checks that X holds [tokens, d_model] of `s`.
fn check_x(s: &QkvShape, x: &[f32]) -> Result<()> {
    if x.len() == s.x_len() {
        return Ok(());
    }
    Err(Error::Shape(format!(
        "X has {} elements; [{}, {}] needs {}",
        x.len(),
        s.tokens,
        s.d_model,
        s.x_len()
    )))
}

/// The source of X held in memory: its rows, rounded into the storage type.
fn x_source<'x>(
    s: &QkvShape,
    x: &'x [f32],
) -> impl FnMut(Range<u32>, ElementsMut<'_>) -> Result<()> + Send + 'x {
    let d = s.d_model;
    move |rows, mut dst| {
        let x = &x[(rows.start * d) as usize..(rows.end * d) as usize];
        dst.put_f32(0, x).map_err(|e| e.in_rows("X", rows.start, d))
    }
}

/// Q, K, V gathered in memory, widened to f32, from the chunks as they come.
struct Outputs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl Outputs {
    fn new(s: &QkvShape) -> Self {
        Self {
            q: vec![0f32; s.q_len()],
            k: vec![0f32; s.kv_len()],
            v: vec![0f32; s.kv_len()],
        }
    }

    /// Copies one chunk in. A chunk holds whole sequences, so in either layout its outputs
    /// are one contiguous range starting at its first token.
    fn take(&mut self, s: &QkvShape, c: ChunkOutput<'_>) -> Result<()> {
        let r = c.rows.start as usize;
        let (qw, kvw) = (s.q_width as usize, s.kv_width as usize);
        for (out, at, part) in [
            (&mut self.q, r * qw, c.q),
            (&mut self.k, r * kvw, c.k),
            (&mut self.v, r * kvw, c.v),
        ] {
            let dst = &mut out[at..at + part.len()];
            match part {
                Elements::F32(p) => dst.copy_from_slice(p),
                Elements::Half(e, p) => e.decode(bytemuck::cast_slice(p), dst),
            }
        }
        Ok(())
    }

    fn done(self, timings: RunTimings) -> QkvOutput {
        QkvOutput {
            q: self.q,
            k: self.k,
            v: self.v,
            timings,
        }
    }
}

/// One projection shape on one context with one kernel: made once, run many times.
pub struct Projector<'c> {
    engine: Engine<'c>,
    steady: steady::SteadyTiming,
    weights_loaded: bool,
}

impl std::fmt::Debug for Projector<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("spec", &self.engine.spec)
            .field("plan", &self.engine.plan)
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

    /// As [`Projector::with_layout`], chunked as `opts` says: resolves the configuration's
    /// spec, plans the batch on the device's limits, and builds the projector for that plan.
    pub fn with_options(
        ctx: &'c GpuContext,
        shape: QkvShape,
        config: impl Into<KernelConfig>,
        layout: OutputLayout,
        opts: &ChunkOptions,
    ) -> Result<Self> {
        Self::typed(ctx, shape, config, ElementType::F32, layout, opts)
    }

    /// As [`Projector::with_options`], for a run in `element`: Q, K, V in it, X and W in the
    /// types the kernel reads it as ([`KernelSpec::types`]; f32 inputs rounded to nearest
    /// even as they are written; [`run`](Self::run) widens the
    /// results back to f32, [`stream`](Self::stream) hands them over in the type).
    pub fn typed(
        ctx: &'c GpuContext,
        shape: QkvShape,
        config: impl Into<KernelConfig>,
        element: ElementType,
        layout: OutputLayout,
        opts: &ChunkOptions,
    ) -> Result<Self> {
        let spec =
            KernelSpec::resolve(config.into(), element, &ctx.summary).map_err(Error::Input)?;
        Self::with_spec(ctx, shape, spec, layout, opts)
    }

    /// The projector for a spec already resolved on this context ([`KernelSpec::resolve`],
    /// or the tuner's [`crate::tune::Choice::spec`]), taken as it is.
    pub fn with_spec(
        ctx: &'c GpuContext,
        shape: QkvShape,
        spec: KernelSpec,
        layout: OutputLayout,
        opts: &ChunkOptions,
    ) -> Result<Self> {
        let plan = ChunkPlan::new(&ctx.limits(), &shape, &spec, layout, opts)?;
        Self::from_plan(ctx, spec, plan)
    }

    /// The projector for a batch already planned for `spec` on this context's limits
    /// ([`ChunkPlan::new`]).
    pub fn from_plan(ctx: &'c GpuContext, spec: KernelSpec, plan: ChunkPlan) -> Result<Self> {
        Self::from_plan_guarded(ctx, spec, plan, 0)
    }

    /// As [`from_plan`](Self::from_plan), with `guard` 32-bit words after each of Q, K and V
    /// in every buffer set, bound with it, so that a write a little past an output's end
    /// lands in them (and, where the backend clamps an index to its binding, any write past
    /// it: on the last guard word) instead of going unseen. Every chunk fills them with NaN
    /// with the outputs; [`guard_damage`](Self::guard_damage) tells which changed.
    pub fn from_plan_guarded(
        ctx: &'c GpuContext,
        spec: KernelSpec,
        plan: ChunkPlan,
        guard: u32,
    ) -> Result<Self> {
        Self::build(ctx, spec, plan, guard, None)
    }

    /// As [`with_spec`](Self::with_spec), with Q and K normalized and rotated after the
    /// projection as `epilogue` says ([`crate::epilogue`]), over `heads` (which must tile Q
    /// and K, and match a head layout's). Fused into the kernel's store where the kernel can
    /// ([`KernelSpec::with_rope_norm`]: `blocktile`, heads that fit its tile) and `opts` does
    /// not ask for Q and K in f32 ([`ChunkOptions::qk_f32`]); else a pass after the kernel,
    /// planned with room for them. Only the built-in kernels take an epilogue.
    pub fn with_epilogue(
        ctx: &'c GpuContext,
        shape: QkvShape,
        spec: KernelSpec,
        (layout, opts): (OutputLayout, &ChunkOptions),
        (epilogue, heads): (&Epilogue, Heads),
    ) -> Result<Self> {
        let e = Some((epilogue, heads));
        // Fused into the kernel's store where it can be (no scratch to plan room for).
        let fused = spec.clone().with_rope_norm().ok().filter(|f| {
            !opts.qk_f32
                && ctx.layout(f.binding).is_ok()
                && f.unsupported_on(&ctx.summary).is_none()
        });
        if let Some(fused) = fused {
            // W's column blocks on heads, where the device's limits allow a head in a block.
            let on_heads = ChunkOptions {
                col_multiple: heads.head_dim,
                ..*opts
            };
            let plan = ChunkPlan::new(&ctx.limits(), &shape, &fused, layout, &on_heads)?;
            if epilogue::unfused_because(&fused, &plan, epilogue, &heads).is_none() {
                return Self::build(ctx, fused, plan, 0, e);
            }
        }
        let opts = ChunkOptions {
            qk_f32: true,
            ..*opts
        };
        let plan = ChunkPlan::new(&ctx.limits(), &shape, &spec, layout, &opts)?;
        Self::build(ctx, spec, plan, 0, e)
    }

    /// Whether the kernel applies the epilogue in its own store (`blocktile` where every
    /// head lies in one tile), rather than a pass after it; false without an epilogue.
    pub fn epilogue_fused(&self) -> bool {
        self.engine.epilogue.as_ref().is_some_and(|e| e.fused())
    }

    /// Where the epilogue runs, in words: fused into the kernel's store, or a pass after the
    /// kernel and why (None without an epilogue).
    pub fn epilogue_plan(&self) -> Option<String> {
        let (e, engine) = (self.engine.epilogue.as_ref()?, &self.engine);
        let spec = &engine.spec;
        if e.fused() {
            return Some(format!("fused into {spec}'s store"));
        }
        let (ep, heads) = (&e.settings.0, &e.settings.1);
        let why = epilogue::unfused_because(spec, &engine.plan, ep, heads).unwrap_or_else(|| {
            if engine
                .ctx
                .layout(crate::binding::BindingKind::RopeNorm)
                .is_err()
            {
                "the device binds too few storage buffers for the fused store".into()
            } else {
                "asked for (ChunkOptions::qk_f32)".into()
            }
        });
        Some(format!("a pass after the kernel, as {why}"))
    }

    fn build(
        ctx: &'c GpuContext,
        spec: KernelSpec,
        plan: ChunkPlan,
        guard: u32,
        epilogue: Option<(&Epilogue, Heads)>,
    ) -> Result<Self> {
        if let Some(why) = spec.unsupported_on(&ctx.summary) {
            return Err(Error::Input(why));
        }
        Ok(Self {
            engine: Engine::new(ctx, spec, plan, guard, epilogue)?,
            steady: steady::SteadyTiming::default(),
            weights_loaded: false,
        })
    }

    /// The shape this projector was made for.
    pub fn shape(&self) -> &QkvShape {
        &self.engine.plan.shape
    }

    /// The norm and RoPE applied to Q and K after the projection, over which heads, if any
    /// ([`with_epilogue`](Self::with_epilogue)).
    pub fn epilogue(&self) -> Option<(&Epilogue, &Heads)> {
        self.engine
            .epilogue
            .as_ref()
            .map(|e| (&e.settings.0, &e.settings.1))
    }

    /// Moves the tokens of the next runs to `positions` (a decode step's offset, or one
    /// position per token), keeping everything else: the epilogue's tables are written
    /// again. Refused without an epilogue that rotates, and for positions its checks refuse.
    pub fn set_positions(&mut self, positions: crate::epilogue::Positions) -> Result<()> {
        let engine = &mut self.engine;
        let tokens = engine.plan.shape.tokens;
        let Some(e) = engine
            .epilogue
            .as_mut()
            .filter(|e| e.settings.0.rope.is_some())
        else {
            return Err(Error::Input(
                "positions apply to RoPE, and this projector rotates nothing".into(),
            ));
        };
        let (ctx, fits) = (engine.ctx, e.set_positions(engine.ctx, positions, tokens)?);
        // Timing's groups for a shorter last chunk were bound to the old tables.
        self.steady = steady::SteadyTiming::default();
        let layout = ctx.layout(engine.spec.binding)?;
        let engine = &mut self.engine;
        let e = engine.epilogue.as_ref().expect("an epilogue, found above");
        for s in &mut engine.slots {
            let b = s.epilogue.as_ref().expect("an epilogue's buffers");
            // Every set's uniform names the new tables (a run rewrites its row0 chunk by
            // chunk; kernel timing does not); a new table buffer is bound again.
            e.write(&ctx.queue, b, 0);
            if !fits {
                s.bind_groups = s.bind(&ctx.device, layout, &s.params, (&engine.weights, Some(e)));
            }
        }
        Ok(())
    }

    /// The layout Q, K and V are written in.
    pub fn layout(&self) -> OutputLayout {
        self.engine.plan.layout
    }

    /// The run's type ([`KernelSpec::dtype`]): that of Q, K, V, and what X, W and the bias
    /// are rounded to before any conversion to the types the kernel reads.
    pub fn dtype(&self) -> ElementType {
        self.engine.spec.dtype()
    }

    /// The type each of X, W and Q, K, V is stored in on the GPU (`coopmat` reads X and W
    /// as f16, converted on upload). The reference must be computed from inputs rounded to
    /// them.
    pub fn types(&self) -> OperandTypes {
        self.engine.spec.types
    }

    /// The kernel variant it dispatches.
    pub fn kernel(&self) -> Kernel {
        self.engine.spec.kernel()
    }

    /// The variant and its tuning parameters.
    pub fn config(&self) -> KernelConfig {
        self.engine.spec.config
    }

    /// Everything about the kernel it dispatches.
    pub fn spec(&self) -> &KernelSpec {
        &self.engine.spec
    }

    /// How the batch is split into chunks and column blocks.
    pub fn plan(&self) -> &ChunkPlan {
        &self.engine.plan
    }

    /// Whether chunks stream through two buffer sets (only with more than one chunk).
    pub fn streaming(&self) -> bool {
        self.engine.plan.streaming
    }

    /// Uploads the fused weights (and bias), rounded to the run's type (W then to its own
    /// type, where the kernel reads it in another); they stay on the GPU for every later run.
    /// Returns the host time the upload took (in the browser, which cannot wait here, the
    /// time to queue it: the queue runs it before any later dispatch). A value either type
    /// cannot hold is an [`Error::Input`] naming the matrix, row and column.
    pub fn set_weights(&mut self, weights: &FusedWeights) -> Result<Duration> {
        let e = &self.engine;
        buffers::check_weights(&e.spec, &e.plan, weights)?;
        weights.check_range(e.spec.dtype())?;
        weights.check_range_read_as(e.spec.dtype(), e.spec.types.w)?;
        let start = Instant::now();
        e.weights.write(e.ctx, &e.spec, &e.plan, weights)?;
        let index = e.ctx.queue.submit([]);
        e.ctx.wait(index, "uploading weights")?;
        self.weights_loaded = true;
        Ok(start.elapsed())
    }

    /// Projects X [tokens, d_model] held in memory and returns Q, K, V in memory: fills each
    /// chunk's Q, K, V with NaN, uploads X, runs the fused dispatch, reads Q, K, V back
    /// (streamed through the pipeline, as [`stream`](Self::stream)). Weights must have been
    /// set.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&mut self, x: &[f32]) -> Result<QkvOutput> {
        let s = *self.shape();
        check_x(&s, x)?;
        let mut out = Outputs::new(&s);
        let timings = self.stream(x_source(&s, x), |c| out.take(&s, c), |_| {})?;
        Ok(out.done(timings))
    }

    /// As [`run`](Self::run), as a future, on one thread: the browser's way.
    pub async fn run_async(&mut self, x: &[f32]) -> Result<QkvOutput> {
        let s = *self.shape();
        check_x(&s, x)?;
        let mut out = Outputs::new(&s);
        let timings = self
            .stream_async(x_source(&s, x), |c| out.take(&s, c), |_| {})
            .await?;
        Ok(out.done(timings))
    }

    /// Projects the whole batch chunk by chunk: `source(rows, dst)` fills X for the token
    /// `rows` into `dst` [rows, d_model], in the storage type (rounding f32 with
    /// [`ElementsMut::put_f32`], which refuses values the type cannot hold, or writing the
    /// type's patterns directly); `sink` receives each chunk's Q, K, V in token order, as
    /// they lie in the memory they were read back into; `progress` is told the tokens done
    /// after each chunk.
    ///
    /// Streamed (the default where there is more than one chunk), the stages run on threads
    /// of their own, the source and the sink each on one (so they must be `Send`), through
    /// [`ChunkPlan::buffer_sets`] sets of buffers: the source writes X straight into GPU
    /// staging memory mapped for writing while the GPU works on earlier chunks and the sink
    /// takes still earlier ones, so that the run goes at the pace of its slowest stage
    /// ([`RunTimings::bound`]). Without streaming, one stage after another.
    ///
    /// Host memory is what the chunks need, whatever the batch. An error (the source's, the
    /// GPU's, the sink's, or a panic in either closure) stops the run and names the chunk it
    /// happened in; chunks already handed to the sink stay with the sink, which must not
    /// treat them as a complete result (`qkv project` writes to temporary files and renames
    /// them only after the last chunk).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn stream(
        &mut self,
        source: impl FnMut(Range<u32>, ElementsMut<'_>) -> Result<()> + Send,
        sink: impl FnMut(ChunkOutput<'_>) -> Result<()> + Send,
        progress: impl FnMut(u32),
    ) -> Result<RunTimings> {
        self.check_loaded("run")?;
        if self.engine.threaded() {
            return self.engine.pipeline(source, sink, progress);
        }
        pollster::block_on(self.engine.stream(source, sink, progress))
    }

    /// As [`stream`](Self::stream), as a future, with every stage on the calling thread (two
    /// buffer sets streamed, overlapping transfers with kernels): the browser's way.
    pub async fn stream_async(
        &mut self,
        source: impl FnMut(Range<u32>, ElementsMut<'_>) -> Result<()>,
        sink: impl FnMut(ChunkOutput<'_>) -> Result<()>,
        progress: impl FnMut(u32),
    ) -> Result<RunTimings> {
        self.check_loaded("run")?;
        self.engine.stream(source, sink, progress).await
    }

    /// An error unless weights have been set.
    fn check_loaded(&self, what: &str) -> Result<()> {
        if self.weights_loaded {
            return Ok(());
        }
        Err(Error::Input(format!(
            "no weights uploaded: call set_weights before {what}"
        )))
    }

    /// Times the kernel alone at steady state: every chunk's dispatches of the batch, run
    /// `warmups` times untimed and then `repeats` (1 to [`MAX_REPEATS`]) times timed, all
    /// queued back to back so the GPU never idles between them (no uploads, readbacks or
    /// host work in between). The dispatches read the X rows last uploaded (call
    /// [`run`](Self::run) or [`stream`](Self::stream) first; they validate) and overwrite the
    /// outputs with the same values. Use [`steady_warmups`](Self::steady_warmups) for
    /// `warmups`. What timing needs is made on the first call and reused.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time_kernel(&mut self, warmups: u32, repeats: u32) -> Result<KernelTimes> {
        pollster::block_on(self.time_kernel_async(warmups, repeats))
    }

    /// As [`time_kernel`](Self::time_kernel), as a future.
    pub async fn time_kernel_async(&mut self, warmups: u32, repeats: u32) -> Result<KernelTimes> {
        self.check_loaded("timing")?;
        steady::time_kernel(&self.engine, &mut self.steady, warmups, repeats).await
    }

    /// Untimed repeats to run before timing a batch whose kernel took about `estimate`: on
    /// a GPU, enough for about half a second of work (at least 3), so that clocks have risen
    /// from idle; on a CPU driver, which has no such clocks, none.
    pub fn steady_warmups(&self, estimate: Duration) -> u32 {
        steady::steady_warmups(self.engine.ctx.is_cpu(), estimate)
    }

    /// Fills the first buffer set's Q, K and V on the GPU with the storage type's NaN.
    /// Every chunk does this before its dispatch; it is public so that tests can show an
    /// unwritten element reads NaN.
    pub fn poison_outputs(&mut self) -> Result<()> {
        let engine = &self.engine;
        engine.ctx.run_pass("filling outputs with NaN", |pass| {
            engine.encode_fill(pass, 0)
        })
    }

    /// The outputs a kernel wrote past the end of, in the last chunk each buffer set ran:
    /// for each of Q, K and V whose words after its last full chunk's elements (the padding
    /// to 16 bytes and the guard words of
    /// [`from_plan_guarded`](Self::from_plan_guarded)) no longer hold the NaN every chunk
    /// fills them with. A shorter last chunk's own tail is not looked at.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn guard_damage(&mut self) -> Result<Vec<GuardDamage>> {
        pollster::block_on(self.guard_damage_async())
    }

    /// As [`guard_damage`](Self::guard_damage), as a future.
    pub async fn guard_damage_async(&mut self) -> Result<Vec<GuardDamage>> {
        let element = self.engine.spec.types.out;
        let chunk = self.engine.plan.chunk_shape();
        let lens = [chunk.q_len(), chunk.kv_len(), chunk.kv_len()];
        let mut found: Vec<GuardDamage> = Vec::new();
        for slot in 0..self.engine.slots.len() {
            let all = self.output_words(slot, "the guard words").await?;
            for ((words, len), part) in all.iter().zip(lens).zip(["Q", "K", "V"]) {
                let end = (element.buffer_bytes(len as u64) / 4) as usize;
                let changed: Vec<usize> = (end..words.len())
                    .filter(|&i| words[i] != element.nan_word())
                    .collect();
                if let Some(&first) = changed.first() {
                    match found.iter_mut().find(|d| d.part == part) {
                        Some(d) => d.words += changed.len() as u64,
                        None => found.push(GuardDamage {
                            part,
                            words: changed.len() as u64,
                            first: (first - end) as u64,
                        }),
                    }
                }
            }
        }
        Ok(found)
    }

    /// Copies the first buffer set's Q, K and V (one full chunk's worth) as they are now on
    /// the GPU into host vectors, widened to f32.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_outputs(&mut self) -> Result<[Vec<f32>; 3]> {
        pollster::block_on(self.read_outputs_async())
    }

    /// As [`read_outputs`](Self::read_outputs), as a future.
    pub async fn read_outputs_async(&mut self) -> Result<[Vec<f32>; 3]> {
        let all = self.output_words(0, "Q, K, V").await?;
        let element = self.engine.spec.types.out;
        let chunk = self.engine.plan.chunk_shape();
        let mut out = [chunk.q_len(), chunk.kv_len(), chunk.kv_len()].map(|n| vec![0f32; n]);
        for (words, buf) in all.iter().zip(out.iter_mut()) {
            element.decode(bytemuck::cast_slice(words), buf);
        }
        Ok(out)
    }

    /// Buffer set `slot`'s Q, K and V buffers as they are now on the GPU, whole (guard words
    /// included), as 32-bit words; `what` names them in errors.
    async fn output_words(&self, slot: usize, what: &str) -> Result<[Vec<u32>; 3]> {
        let ctx = self.engine.ctx;
        let s = &self.engine.slots[slot];
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        let during = format!("copying {what} for readback");
        ctx.checked(&during, || {
            for (src, dst) in s.outputs.iter().zip(&s.staging) {
                encoder.copy_buffer_to_buffer(src, 0, dst, 0, src.size());
            }
        })?;
        ctx.submit_and_wait(encoder, &during)?;
        let mut out: [Vec<u32>; 3] = Default::default();
        for (staging, words) in s.staging.iter().zip(out.iter_mut()) {
            *words = vec![0u32; (staging.size() / 4) as usize];
            ctx.read_mapped_async(staging, words, &format!("reading {what}"))
                .await?;
        }
        Ok(out)
    }
}
