//! The streaming engine: pipelines compiled and buffers bound once for a plan, then a batch
//! pushed through chunk by chunk. Each chunk's Q, K and V are filled with NaN on the GPU
//! before its dispatch, so an element the kernel never writes reads back as NaN.
//!
//! Two ways through: [`Engine::stream`] here, one thread (the browser's, and natively
//! `--no-stream`'s: with two buffer sets, chunk i+1 is uploaded and chunk i-1 read back while
//! the kernel runs on chunk i), and natively the threaded pipeline
//! ([`super::pipeline`]) over three or more buffer sets.

use super::buffers::{Pending, Slot, Upload, WeightBuffers};
use super::epilogue::EpiloguePass;
use super::timing::{KernelTimer, RunTimings};
use crate::binding::{BindingKind, Params};
use crate::context::GpuContext;
use crate::epilogue::{Epilogue, Heads};
use crate::error::{Error, Result};
use crate::host::{Elements, ElementsMut};
use crate::kernels::{KernelSpec, FILL_NAN};
use crate::layout::OutputLayout;
use crate::plan::ChunkPlan;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use web_time::Instant;

/// One chunk's Q, K and V as read back, with the X rows they came from.
#[derive(Debug)]
pub struct ChunkOutput<'a> {
    /// Which chunk (0-based) of how many.
    pub index: u32,
    /// Of how many chunks.
    pub of: u32,
    /// Its token rows within the batch.
    pub rows: Range<u32>,
    /// Q [rows, q_width] (or the chunk's whole sequences in the head layout) in the storage
    /// type, as read back (no copy, no conversion).
    pub q: Elements<'a>,
    /// K [rows, kv_width] (likewise).
    pub k: Elements<'a>,
    /// V [rows, kv_width] (likewise).
    pub v: Elements<'a>,
}

/// "chunk 3 of 49 (tokens 16384..24576)": how every error names the chunk it happened in.
pub(super) fn chunk_label(index: u32, of: u32, rows: &Range<u32>) -> String {
    format!(
        "chunk {} of {of} (tokens {}..{})",
        index + 1,
        rows.start,
        rows.end
    )
}

/// Whether a plan's streamed runs go through the threaded pipeline (natively, with
/// streaming; the browser has one thread).
fn threaded(plan: &ChunkPlan) -> bool {
    cfg!(not(target_arch = "wasm32")) && plan.streaming
}

/// Pipelines, weights and chunk buffer sets of one (plan, spec).
pub(super) struct Engine<'c> {
    pub(super) ctx: &'c GpuContext,
    pub(super) spec: KernelSpec,
    pub(super) plan: ChunkPlan,
    pipeline: Arc<wgpu::ComputePipeline>,
    /// The split-K kernel's second pass.
    reduce_pipeline: Option<Arc<wgpu::ComputePipeline>>,
    fill_pipeline: Arc<wgpu::ComputePipeline>,
    /// QK-norm and RoPE after the kernel, where asked for.
    pub(super) epilogue: Option<EpiloguePass>,
    pub(super) weights: WeightBuffers,
    pub(super) slots: Vec<Slot>,
    /// How X reaches the GPU.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the pipeline's, native only
    pub(super) upload: Upload,
}

impl<'c> Engine<'c> {
    /// Compiles (or reuses) the spec's pipelines and allocates what the plan needs, Q, K and
    /// V each followed by `guard` words, with the `epilogue` pass over its heads if any.
    pub(super) fn new(
        ctx: &'c GpuContext,
        spec: KernelSpec,
        plan: ChunkPlan,
        guard: u32,
        epilogue: Option<(&Epilogue, Heads)>,
    ) -> Result<Self> {
        let shape = plan.shape;
        if spec.binding == BindingKind::RopeNorm && epilogue.is_none() {
            return Err(Error::Input(format!(
                "kernel {spec} applies QK-norm and RoPE in its store and needs them: make it \
                 with Projector::with_epilogue"
            )));
        }
        let layout = ctx.layout(spec.binding)?;
        let epilogue = match epilogue {
            Some(e) => Some(EpiloguePass::new(ctx, &spec, &plan, e)?),
            None => None,
        };
        let mut constants =
            spec.pipeline_constants(shape.bias, matches!(plan.layout, OutputLayout::Heads(_)));
        constants.extend(spec.device_constants(&ctx.summary));
        match &epilogue {
            Some(e) if e.fused() => {
                constants.extend(super::epilogue::constants(&e.settings.0, &e.settings.1))
            }
            Some(_) => constants.push(("QK_SCRATCH", 1.0)),
            None => {}
        }
        let utility_wg = ctx.grid_stride_workgroup();
        if spec.reduce.is_some() {
            constants.push(("REDUCE_WG", utility_wg as f64));
        }
        let pipeline = ctx.kernel_pipeline(&spec, spec.source, &constants, &layout.pipeline)?;
        let reduce_pipeline = match spec.reduce {
            Some(source) => {
                Some(ctx.kernel_pipeline(&spec, source, &constants, &layout.pipeline)?)
            }
            None => None,
        };
        let fill_pipeline = ctx.pipeline(
            FILL_NAN,
            &[
                ("WG", utility_wg as f64),
                ("NAN_WORD", spec.types.out.nan_word() as f64),
            ],
            &ctx.fill_layout().pipeline,
        )?;

        let during = format!(
            "allocating buffers for {shape} in chunks of {} tokens (out of memory?)",
            plan.chunk_tokens
        );
        let weights = ctx.checked(&during, || WeightBuffers::new(&ctx.device, &spec, &plan))?;
        // Natively, a streamed batch goes through the threaded pipeline, X written into mapped
        // staging memory (textures are written by the queue); the browser streams on its one
        // thread through two buffer sets.
        let threaded = threaded(&plan);
        let upload = if !threaded || spec.x_texture() {
            Upload::Queued
        } else if spec.types.x == spec.dtype() && spec.x_stride(shape.d_model) == shape.d_model {
            Upload::Mapped
        } else {
            Upload::MappedConverted
        };
        let sets = if threaded {
            plan.buffer_sets
        } else {
            plan.buffer_sets.min(2)
        };
        let mut slots = Vec::new();
        for slot in 0..sets {
            let during = format!("{during}, buffer set {slot}");
            slots.push(ctx.checked(&during, || {
                Slot::new(
                    ctx,
                    (&spec, &plan, guard),
                    (&weights, epilogue.as_ref()),
                    (layout, upload),
                )
            })?);
        }
        let engine = Self {
            ctx,
            spec,
            plan,
            pipeline,
            reduce_pipeline,
            fill_pipeline,
            epilogue,
            weights,
            slots,
            upload,
        };

        engine.warm_up()?;
        Ok(engine)
    }

    /// Some drivers (lavapipe among them) compile a shader at its first dispatch, not at
    /// pipeline creation. One workgroup of each pipeline on the fresh (zeroed) buffers forces
    /// that here, outside every timed region; every run poisons the outputs before its own
    /// dispatch.
    fn warm_up(&self) -> Result<()> {
        self.write_params(&self.slots[0].params, 1)?;
        let groups = &self.slots[0].bind_groups;
        self.ctx.run_pass("warming up the pipeline", |pass| {
            pass.set_bind_group(0, &groups[0], &[]);
            pass.set_pipeline(&self.pipeline);
            pass.dispatch_workgroups(1, 1, 1);
            if let Some(reduce) = &self.reduce_pipeline {
                pass.set_pipeline(reduce);
                pass.dispatch_workgroups(1, 1, 1);
            }
            self.encode_epilogue(pass, groups, 1);
        })
    }

    /// Writes the params of every column block for a chunk of `rows` tokens into `buffers`
    /// (one per column block).
    pub(super) fn write_params(&self, buffers: &[wgpu::Buffer], rows: u32) -> Result<()> {
        let plan = &self.plan;
        self.ctx.checked("writing the kernel parameters", || {
            for (buffer, &block) in buffers.iter().zip(&plan.col_blocks) {
                let params = Params::new(
                    &plan.shape,
                    plan.layout,
                    rows,
                    block,
                    self.spec.w_stride(plan.shape.d_model, block.1),
                );
                self.ctx
                    .queue
                    .write_buffer(buffer, 0, bytemuck::bytes_of(&params));
            }
        })
    }

    /// Sets the first token of the chunk buffer set `slot` holds next, for the epilogue's
    /// positions (nothing without one).
    pub(super) fn write_epilogue(&self, slot: usize, row0: u32) {
        if let (Some(e), Some(b)) = (&self.epilogue, &self.slots[slot].epilogue) {
            e.write(&self.ctx.queue, b, row0);
        }
    }

    /// Dispatches the kernel over a chunk of `rows` tokens, one column block per bind group
    /// (and, for split-K, each block's reduce pass after it).
    pub(super) fn encode_dispatches(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        groups: &[wgpu::BindGroup],
        rows: u32,
    ) {
        let max_groups = self.max_grid();
        for (group, &(_, n_cols)) in groups.iter().zip(&self.plan.col_blocks) {
            pass.set_bind_group(0, group, &[]);
            pass.set_pipeline(&self.pipeline);
            let (x, y, z) = self.spec.grid(rows, n_cols);
            pass.dispatch_workgroups(x, y, z);
            if let (Some(reduce), Some(groups)) = (
                &self.reduce_pipeline,
                self.spec
                    .reduce_groups(rows, n_cols, max_groups, self.ctx.grid_stride_workgroup()),
            ) {
                pass.set_pipeline(reduce);
                pass.dispatch_workgroups(groups, 1, 1);
            }
        }
    }

    /// Dispatches the epilogue pass over a chunk of `rows` tokens, with the group after the
    /// column blocks' (nothing without an epilogue).
    pub(super) fn encode_epilogue(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        groups: &[wgpu::BindGroup],
        rows: u32,
    ) {
        if let Some(e) = self.epilogue.as_ref().filter(|e| !e.fused()) {
            e.encode(
                pass,
                &groups[self.plan.col_blocks.len()],
                rows,
                self.max_grid(),
            );
        }
    }

    /// Workgroups the grid-stride passes use at most: a modest grid within the device's
    /// per-dimension limit.
    fn max_grid(&self) -> u32 {
        self.ctx
            .limits()
            .max_compute_workgroups_per_dimension
            .min(4096)
    }

    /// Fills the outputs of buffer set `slot` with NaN (and the epilogue's scratch with
    /// f32 NaN).
    pub(super) fn encode_fill(&self, pass: &mut wgpu::ComputePass<'_>, slot: usize) {
        // The shader's grid-stride loop covers any size with any number of groups.
        let max_groups = self.max_grid() as u64;
        let wg = self.ctx.grid_stride_workgroup() as u64;
        let s = &self.slots[slot];
        let scratch = self.epilogue.as_ref().and_then(|e| e.fill());
        let scratch = scratch.zip(s.epilogue.as_ref().and_then(|b| b.scratch.as_ref()));
        let fills = [(&*self.fill_pipeline, &s.fill_groups)]
            .into_iter()
            .chain(scratch.map(|(fill, b)| (fill, &b.fill_groups)));
        for (pipeline, groups) in fills {
            pass.set_pipeline(pipeline);
            for (group, words) in groups {
                pass.set_bind_group(0, group, &[]);
                pass.dispatch_workgroups(words.div_ceil(wg).clamp(1, max_groups) as u32, 1, 1);
            }
        }
    }

    /// The timings of a run about to start: nothing timed yet.
    pub(super) fn timings(&self) -> RunTimings {
        RunTimings {
            kernel_timer: if self.slots[0].timestamps.is_some() {
                KernelTimer::GpuTimestamp
            } else {
                KernelTimer::Host
            },
            chunks: self.plan.chunks(),
            col_blocks: self.plan.col_blocks.len() as u32,
            streamed: self.plan.streaming,
            buffer_sets: self.slots.len() as u32,
            ..Default::default()
        }
    }

    /// Whether streamed runs go through the threaded pipeline.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // asked natively only
    pub(super) fn threaded(&self) -> bool {
        threaded(&self.plan)
    }

    /// Refuses X of a chunk of `rows` where the kernel reads X in another type than the
    /// run's (`coopmat`: f16) and a value cannot be held in it, naming the row and column.
    pub(super) fn check_input_range(&self, x: Elements<'_>, rows: &Range<u32>) -> Result<()> {
        let input = self.spec.types.x;
        if input != self.spec.dtype() {
            if let Some(e) = input.check_range_of(x.values()) {
                return Err(e.in_rows("X", rows.start, self.plan.shape.d_model));
            }
        }
        Ok(())
    }

    /// Uploads X of a chunk of `rows` from set `slot`'s host copy through the queue,
    /// converted to the type the kernel reads (a value that type cannot hold is refused by
    /// name) and padded to its stride.
    pub(super) fn upload_queued(&self, slot: usize, rows: &Range<u32>, label: &str) -> Result<()> {
        let d = self.plan.shape.d_model as usize;
        let s = &self.slots[slot];
        let x_host = s.x_host.lock().expect("no panic holds it");
        let x = x_host.as_ref().slice(0..rows.len() * d);
        // A kernel that reads X in another type than the run's (`coopmat`: f16) gets it
        // converted on upload; a value that type cannot hold is refused by name.
        self.check_input_range(x, rows)?;
        let input = self.spec.types.x;
        let mut scratch = s.x_bytes.lock().expect("no panic holds it");
        self.ctx.checked(&format!("{label}: uploading X"), || {
            let stride = self.spec.x_stride(d as u32) as usize;
            s.x.write(&self.ctx.queue, (x, input), (d, stride), &mut scratch)
        })
    }

    /// Projects the whole batch chunk by chunk (see
    /// [`Projector::stream`](super::Projector::stream)).
    pub(super) async fn stream(
        &mut self,
        mut source: impl FnMut(Range<u32>, ElementsMut<'_>) -> Result<()>,
        mut sink: impl FnMut(ChunkOutput<'_>) -> Result<()>,
        mut progress: impl FnMut(u32),
    ) -> Result<RunTimings> {
        // Whatever was queued before (the pipeline's warm-up, the weights) finishes outside
        // the run's clocks, and its errors are named here: natively it has been waited for
        // already; the browser could not wait when it was queued.
        let index = self.ctx.queue.submit([]);
        self.ctx
            .finished(index, "the work queued before this run")
            .await?;
        let wall = Instant::now();
        let mut t = self.timings();
        let n = self.plan.chunks();
        let result: Result<()> = async {
            for i in 0..n {
                let slot = i as usize % self.slots.len();
                // With two slots, this slot's previous chunk (i-2) was finished last round.
                if let Some(p) = self.slots[slot].pending.take() {
                    self.finish(slot, p, &mut sink, &mut t).await?;
                }
                let rows = self.plan.chunk(i);
                let label = chunk_label(i, n, &rows);
                let len = rows.len() * self.plan.shape.d_model as usize;
                let start = Instant::now();
                source(
                    rows.clone(),
                    self.slots[slot]
                        .x_host
                        .get_mut()
                        .expect("not shared on this path")
                        .as_mut()
                        .slice_mut(0..len),
                )?;
                t.input += start.elapsed();
                self.submit(slot, i, rows.clone(), &label, &mut t).await?;
                if self.plan.streaming {
                    // The previous chunk's set.
                    let other = (slot + self.slots.len() - 1) % self.slots.len();
                    if let Some(p) = self.slots[other].pending.take() {
                        self.finish(other, p, &mut sink, &mut t).await?;
                    }
                } else {
                    let p = self.slots[slot].pending.take().expect("just submitted");
                    self.finish(slot, p, &mut sink, &mut t).await?;
                }
                progress(rows.end);
            }
            // The last chunk (and, with streaming, possibly none other) is still out.
            for slot in 0..self.slots.len() {
                if let Some(p) = self.slots[slot].pending.take() {
                    self.finish(slot, p, &mut sink, &mut t).await?;
                }
            }
            Ok(())
        }
        .await;
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
    async fn submit(
        &mut self,
        slot: usize,
        index: u32,
        rows: Range<u32>,
        label: &str,
        t: &mut RunTimings,
    ) -> Result<()> {
        let ctx = self.ctx;
        let start = Instant::now();
        self.upload_queued(slot, &rows, label)?;
        self.write_params(&self.slots[slot].params, rows.len() as u32)?;
        self.write_epilogue(slot, rows.start);
        if !self.plan.streaming {
            let index = ctx.queue.submit([]);
            ctx.finished(index, &format!("{label}: uploading X"))
                .await?;
        }
        t.upload += start.elapsed();

        let kernel_label = format!("{label}: dispatch of kernel {}", self.spec);
        let encoder = self.encode_chunk(slot, rows.len() as u32, &kernel_label, |_| {})?;
        let start = Instant::now();
        let submission = ctx.checked(&kernel_label, || ctx.queue.submit([encoder.finish()]))?;
        if !self.plan.streaming {
            ctx.finished(submission.clone(), &kernel_label).await?;
            t.dispatch_wall += start.elapsed();
        }
        self.slots[slot].pending = Some(Pending {
            index,
            rows,
            submission,
        });
        Ok(())
    }

    /// Encodes the work of one chunk of `count` tokens in buffer set `slot`: `before` (the
    /// pipeline's copy of X from its staging buffer), the NaN fill of the outputs (untimed),
    /// the kernel's pass (timed where the adapter has timestamps) and the copies of Q, K, V
    /// to the staging buffers they are read back from.
    pub(super) fn encode_chunk(
        &self,
        slot: usize,
        count: u32,
        label: &str,
        before: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<wgpu::CommandEncoder> {
        let s = &self.slots[slot];
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("projection"),
            });
        let chunk_shape = crate::shape::QkvShape {
            tokens: count,
            ..self.plan.shape
        };
        self.ctx.checked(label, || {
            before(&mut encoder);
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
                    label: Some(self.spec.kernel().name()),
                    timestamp_writes: s.timestamps.as_ref().map(|q| q.writes(0)),
                });
                self.encode_dispatches(&mut pass, &s.bind_groups, count);
            }
            if self.epilogue.as_ref().is_some_and(|e| !e.fused()) {
                // A pass of its own, timed apart: the run reports what the epilogue costs.
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("epilogue"),
                    timestamp_writes: s.timestamps.as_ref().map(|q| q.writes(1)),
                });
                self.encode_epilogue(&mut pass, &s.bind_groups, count);
            }
            if let Some(q) = &s.timestamps {
                q.resolve(&mut encoder, q.pairs());
            }
            for ((src, dst), len) in s.outputs.iter().zip(&s.staging).zip([
                chunk_shape.q_len(),
                chunk_shape.kv_len(),
                chunk_shape.kv_len(),
            ]) {
                encoder.copy_buffer_to_buffer(
                    src,
                    0,
                    dst,
                    0,
                    self.spec.types.out.buffer_bytes(len as u64),
                );
            }
        })?;
        Ok(encoder)
    }

    /// The buffers a chunk of `count` tokens in set `slot` is read back from, with the bytes
    /// to map of each: Q, K, V's staging buffers, then the kernel's timestamps where there
    /// are any.
    pub(super) fn readback_buffers(&self, slot: usize, count: usize) -> Vec<(&wgpu::Buffer, u64)> {
        let s = &self.slots[slot];
        let mut buffers: Vec<(&wgpu::Buffer, u64)> = s
            .staging
            .iter()
            .zip(self.output_lens(count))
            .map(|(b, len)| (b, self.spec.types.out.buffer_bytes(len as u64)))
            .collect();
        if let Some(q) = &s.timestamps {
            buffers.push((q.readback(), super::timing::Queries::bytes(q.pairs())));
        }
        buffers
    }

    /// Elements of Q, K and V of a chunk of `count` tokens.
    fn output_lens(&self, count: usize) -> [usize; 3] {
        let shape = &self.plan.shape;
        [
            count * shape.q_width as usize,
            count * shape.kv_width as usize,
            count * shape.kv_width as usize,
        ]
    }

    /// Hands chunk `index` (token `rows`), read back into set `slot`'s staging buffers and
    /// mapped, to `sink` as it lies in the mapped memory, then unmaps them. Returns the
    /// GPU time of the kernel's pass and of the epilogue's where they were timed (else
    /// zero).
    pub(super) fn hand_over(
        &self,
        slot: usize,
        (index, rows): (u32, Range<u32>),
        sink: &mut impl FnMut(ChunkOutput<'_>) -> Result<()>,
        label: &str,
    ) -> Result<(Duration, Duration)> {
        let count = rows.len();
        let buffers = self.readback_buffers(slot, count);
        let lens = self.output_lens(count);
        let element = self.spec.types.out;
        let result = (|| {
            let views = buffers
                .iter()
                .map(|&(b, bytes)| {
                    b.slice(..bytes)
                        .get_mapped_range()
                        .map_err(|e| Error::Readback(format!("{label}: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            // The kernel's pass, then the epilogue's where there is one.
            let kernel = match &self.slots[slot].timestamps {
                Some(q) => {
                    let d = q.durations(bytemuck::cast_slice(&views[3]));
                    (d[0], d.get(1).copied().unwrap_or_default())
                }
                None => Default::default(),
            };
            let [q, k, v] = [0, 1, 2].map(|i| {
                let bytes = &views[i][..];
                // Whole words were read back: a half-typed output of odd length has one
                // element more. Mapped ranges are aligned far past 2 bytes.
                if element.is_half() {
                    Elements::Half(element, &bytemuck::cast_slice(bytes)[..lens[i]])
                } else {
                    Elements::F32(bytemuck::cast_slice(bytes))
                }
            });
            sink(ChunkOutput {
                index,
                of: self.plan.chunks(),
                rows,
                q,
                k,
                v,
            })?;
            Ok(kernel)
        })();
        for (b, _) in &buffers {
            b.unmap();
        }
        result
    }

    /// Waits for a submitted chunk, reads its kernel time and hands Q, K, V to the sink.
    async fn finish(
        &mut self,
        slot: usize,
        p: Pending,
        sink: &mut impl FnMut(ChunkOutput<'_>) -> Result<()>,
        t: &mut RunTimings,
    ) -> Result<()> {
        let ctx = self.ctx;
        let n = self.plan.chunks();
        let label = format!("{}: reading Q, K, V back", chunk_label(p.index, n, &p.rows));
        let buffers = self.readback_buffers(slot, p.rows.len());
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
        if let Err(e) = ctx.finished(p.submission, &label).await {
            // Unmapping aborts the maps still pending: the buffers stay usable.
            for (b, _) in &buffers {
                b.unmap();
            }
            return Err(e);
        }
        let mut mapped = Vec::with_capacity(receivers.len());
        for r in receivers {
            mapped.push(match r.receive().await {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(Error::Readback(format!("{label}: {e}"))),
                None => Err(Error::Readback(format!("{label}: mapping never completed"))),
            });
        }
        if let Some(failed) = mapped.iter().position(Result::is_err) {
            for ((b, _), m) in buffers.iter().zip(&mapped) {
                if m.is_ok() {
                    b.unmap();
                }
            }
            return mapped.swap_remove(failed);
        }
        if self.plan.streaming {
            t.dispatch_wall += start.elapsed();
        }
        let start = Instant::now();
        let (kernel, epilogue) = self.hand_over(slot, (p.index, p.rows), sink, &label)?;
        t.kernel += kernel + epilogue;
        t.epilogue += epilogue;
        t.readback += start.elapsed();
        if self.slots[slot].timestamps.is_none() {
            // Host timer: without streaming, the dispatch's submit-and-wait.
            t.kernel = t.dispatch_wall;
        }
        Ok(())
    }
}
