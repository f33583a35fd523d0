//! The GPU context: adapter, device and queue, made once and shared by every projection.
//! Creates the device on the adapter [`crate::adapter`] picks, asks it for the limits that
//! projection shapes scale with, turns wgpu's errors into [`Error`]s instead of panics, and
//! caches compiled pipelines by (shader, entry point, override constants).
//!
//! Natively a GPU wait blocks (the device is polled); in the browser nothing may block, so
//! every wait that brings data back is an `async fn` whose future the page's event loop
//! resolves. Natively those futures are ready once the poll returns, and the blocking API
//! (`Projector::run` and the rest) is the same code under `pollster::block_on`. Errors the
//! browser reports asynchronously (error scopes resolve later) are gathered at the next wait.

#[cfg(not(target_arch = "wasm32"))]
use crate::adapter::AdapterFilter;
use crate::adapter::AdapterSummary;
use crate::binding::{BindingKind, Layout, Layouts};
use crate::error::{Error, Result};
use crate::kernels::KernelSpec;
use crate::kernels::{ShaderSource, SUBGROUP_SIZE};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Error-scope results still to come, with what was being done (the browser's scopes
/// resolve after the GPU process has seen the commands).
#[cfg(target_arch = "wasm32")]
type PendingScopes = std::cell::RefCell<
    Vec<(
        String,
        std::pin::Pin<Box<dyn std::future::Future<Output = Option<wgpu::Error>>>>,
    )>,
>;

/// How to create the device.
#[derive(Debug, Clone, Default)]
pub struct ContextOptions {
    /// Exactly these limits instead of the adapter's best for the limits shapes scale with.
    /// Tests lower limits on purpose with this, so that limit paths run on small shapes.
    pub limits: Option<wgpu::Limits>,
    /// Time kernels with the host's clock even where the adapter has GPU timestamps (the
    /// device is created without TIMESTAMP_QUERY), so that path can be run and checked
    /// anywhere; results say which timer they used.
    pub host_timer: bool,
    /// Build the projection kernels whose every memory access the host's plan proves in
    /// bounds ([`KernelSpec::bounds_proven`]) without wgpu's runtime checks
    /// (`create_shader_module_trusted` with `ShaderRuntimeChecks::unchecked()`) and without
    /// zeroing their workgroup memory. Off by default: a GPU measurement must show it faster
    /// by more than the noise first. Other kernels and the utility shaders stay checked.
    pub unchecked_kernels: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    file: &'static str,
    entry_point: &'static str,
    constants: Vec<(&'static str, u64)>,
    unchecked: bool,
}

/// Adapter, device and queue, with error capture and a pipeline cache. Made once, shared by
/// every projector; `Send + Sync`.
pub struct GpuContext {
    /// The adapter in use.
    pub adapter: wgpu::Adapter,
    /// The logical device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// What `qkv adapters` would say about the adapter.
    pub summary: AdapterSummary,
    timestamps: bool,
    uncaptured: Arc<Mutex<Vec<String>>>,
    lost: Arc<Mutex<Option<String>>>,
    layouts: Layouts,
    modules: Mutex<HashMap<(&'static str, bool), wgpu::ShaderModule>>,
    unchecked_kernels: bool,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    #[cfg(target_arch = "wasm32")]
    pending: PendingScopes,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.summary.name)
            .field("backend", &self.summary.backend)
            .finish_non_exhaustive()
    }
}

impl GpuContext {
    /// Picks an adapter by `filter` and creates a device on it with default options.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(filter: &AdapterFilter) -> Result<Self> {
        Self::with_options(filter, &ContextOptions::default())
    }

    /// Picks an adapter by `filter` and creates a device on it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_options(filter: &AdapterFilter, options: &ContextOptions) -> Result<Self> {
        let adapter = crate::adapter::pick_adapter(filter)?;
        pollster::block_on(Self::on_adapter(adapter, options))
    }

    /// A context on each adapter `spec` names ([`crate::pick_adapters`]: `all` the
    /// filter allows, or a comma list of `BACKEND`, `BACKEND:NAME` or `NAME`), for work
    /// spread over several adapters, each with its own projector.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn on_each(
        filter: &AdapterFilter,
        spec: &str,
        options: &ContextOptions,
    ) -> Result<Vec<Self>> {
        crate::adapter::pick_adapters(filter, spec)?
            .into_iter()
            .map(|a| pollster::block_on(Self::on_adapter(a, options)))
            .collect()
    }

    /// The browser's WebGPU adapter (a high-performance one where there is a choice) and a
    /// device on it. Fails with [`Error::NoWebGpu`] where the page has no WebGPU.
    #[cfg(target_arch = "wasm32")]
    pub async fn browser(options: &ContextOptions) -> Result<Self> {
        let adapter = crate::adapter::browser_adapter().await?;
        Self::on_adapter(adapter, options).await
    }

    /// Creates a device on `adapter` (from wgpu's own enumeration, or the browser's).
    pub async fn on_adapter(adapter: wgpu::Adapter, options: &ContextOptions) -> Result<Self> {
        let mut summary = AdapterSummary::of(&adapter);
        let limits = requested_limits(&adapter, options);
        let timestamps = summary.timestamp_query && !options.host_timer;
        let (required_features, with_coop) = requested_features(&adapter, &summary, options);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("qkv-wgpu device"),
                required_features,
                required_limits: limits,
                // SAFETY: wgpu's experimental features may have bugs of their own; the one asked
                // for is cooperative matrices, where offered, and every result of the kernel that
                // uses it is checked against the f64 reference like any other.
                experimental_features: if with_coop {
                    unsafe { wgpu::ExperimentalFeatures::enabled() }
                } else {
                    wgpu::ExperimentalFeatures::disabled()
                },
                ..Default::default()
            })
            .await
            .map_err(|source| Error::RequestDevice {
                adapter: summary.name.clone(),
                source,
            })?;
        let (uncaptured, lost) = error_sinks(&device);
        // Kernels are checked against what the device was granted, not what the adapter has.
        summary = summary.with_limits(&device.limits());
        check_storage_buffers(&device)?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layouts = Layouts::new(&device);
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu {
                during: "creating the bind group layouts".into(),
                message: e.to_string(),
            });
        }
        let mut ctx = Self {
            adapter,
            device,
            queue,
            summary,
            timestamps,
            layouts,
            uncaptured,
            lost,
            modules: Mutex::new(HashMap::new()),
            unchecked_kernels: options.unchecked_kernels,
            pipelines: Mutex::new(HashMap::new()),
            #[cfg(target_arch = "wasm32")]
            pending: Default::default(),
        };
        // wgpu reports subgroups of 4..64 for every Metal GPU, a placeholder (Apple GPUs run
        // 32 wide): measure instead, so the subgroup kernels are neither refused on every Mac
        // nor run where a subgroup really is narrower than they need.
        if ctx.summary.subgroup && ctx.summary.backend == "Metal" {
            let (min, _) = ctx.measure_subgroup_size_async().await?;
            ctx.summary.subgroup_size.0 = min;
        }
        Ok(ctx)
    }
    /// Invocations per workgroup of the grid-stride utility passes (`fill_nan`, split-K's
    /// reduce): 256, or fewer where the device allows fewer.
    pub fn grid_stride_workgroup(&self) -> u32 {
        let l = self.device.limits();
        256.min(l.max_compute_invocations_per_workgroup)
            .min(l.max_compute_workgroup_size_x)
            .max(1)
    }

    /// The device's limits (what was granted, which may be lower than the adapter's).
    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    /// The bind group and pipeline layouts of kernels that bind as `kind`, or why the
    /// device cannot bind them.
    pub(crate) fn layout(&self, kind: BindingKind) -> Result<&Layout> {
        self.layouts.of(kind).ok_or_else(|| Error::DeviceLimit {
            what: format!("kernels that bind as {kind:?}"),
            needed: format!(
                "{} storage buffers per shader stage",
                kind.storage_buffers()
            ),
            limit: self
                .device
                .limits()
                .max_storage_buffers_per_shader_stage
                .to_string(),
            limit_name: "max_storage_buffers_per_shader_stage",
        })
    }

    /// The layouts of the `fill_nan` utility shader.
    pub(crate) fn fill_layout(&self) -> &Layout {
        &self.layouts.fill
    }

    /// The layouts of the epilogue pass ([`crate::epilogue`]).
    pub(crate) fn epilogue_layout(&self) -> &Layout {
        &self.layouts.epilogue
    }

    /// Whether the adapter runs on the CPU (lavapipe, WARP, SwiftShader): no clocks that
    /// ramp from idle, and barriers that cost more than they do on a GPU.
    pub fn is_cpu(&self) -> bool {
        self.summary.is_cpu()
    }

    /// Whether kernel times come from GPU timestamps (the adapter has TIMESTAMP_QUERY).
    pub fn has_timestamps(&self) -> bool {
        self.timestamps
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns anything wgpu
    /// reports, or a lost device, into an [`Error`] naming `during`. In the browser the
    /// scopes resolve later: what they caught is reported, still naming `during`, by the
    /// next wait ([`finished`](Self::finished), a readback).
    pub(crate) fn checked<T>(&self, during: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let (validation, oom) = (validation.pop(), oom.pop());
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = pollster::block_on(validation).or(pollster::block_on(oom)) {
            return Err(Error::Gpu {
                during: during.to_string(),
                message: e.to_string(),
            });
        }
        #[cfg(target_arch = "wasm32")]
        self.pending.borrow_mut().push((
            during.to_string(),
            Box::pin(async move { validation.await.or(oom.await) }),
        ));
        self.check(during)?;
        Ok(out)
    }

    /// Reports what the error scopes still outstanding caught (the browser's resolve
    /// asynchronously; natively there are none), then a lost device or an escaped error.
    async fn settle(&self, during: &str) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        {
            let pending = std::mem::take(&mut *self.pending.borrow_mut());
            let mut first = None;
            for (what, scope) in pending {
                if let Some(e) = scope.await {
                    first.get_or_insert(Error::Gpu {
                        during: what,
                        message: e.to_string(),
                    });
                }
            }
            if let Some(e) = first {
                return Err(e);
            }
        }
        self.check(during)
    }

    /// Reports a lost device or an error that escaped the error scopes.
    pub(crate) fn check(&self, during: &str) -> Result<()> {
        if let Some(message) = self.lost.lock().unwrap().clone() {
            return Err(Error::DeviceLost {
                during: during.to_string(),
                message,
            });
        }
        let mut errors = self.uncaptured.lock().unwrap();
        if !errors.is_empty() {
            let message = errors.join("\n");
            errors.clear();
            return Err(Error::Gpu {
                during: during.to_string(),
                message,
            });
        }
        Ok(())
    }

    /// Submits `encoder` and blocks until the GPU has finished it.
    pub(crate) fn submit_and_wait(
        &self,
        encoder: wgpu::CommandEncoder,
        during: &str,
    ) -> Result<()> {
        let index = self.checked(during, || self.queue.submit([encoder.finish()]))?;
        self.wait(index, during)
    }

    /// Encodes one untimed compute pass with `encode`, submits it and waits for it.
    pub(crate) fn run_pass(
        &self,
        during: &str,
        encode: impl FnOnce(&mut wgpu::ComputePass<'_>),
    ) -> Result<()> {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some(during),
            });
        self.checked(during, || {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(during),
                timestamp_writes: None,
            });
            encode(&mut pass);
        })?;
        self.submit_and_wait(encoder, during)
    }

    /// The smallest and largest subgroup sizes a compute shader of this device runs with,
    /// measured (the SUBGROUP feature is needed). Run at start-up on Metal, where wgpu's
    /// reported range is a placeholder; anywhere else it checks that report.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn measure_subgroup_size(&self) -> Result<(u32, u32)> {
        pollster::block_on(self.measure_subgroup_size_async())
    }

    /// As `measure_subgroup_size`, as a future.
    pub async fn measure_subgroup_size_async(&self) -> Result<(u32, u32)> {
        use wgpu::util::DeviceExt;
        let during = "measuring the subgroup size";
        let wg = self.grid_stride_workgroup().min(64);
        let pipeline = self.pipeline(
            SUBGROUP_SIZE,
            &[("WG", wg as f64)],
            &self.fill_layout().pipeline,
        )?;
        let (sizes, readback, group) = self.checked(during, || {
            let sizes = self
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("subgroup sizes"),
                    contents: bytemuck::cast_slice(&[u32::MAX, 0u32]),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                });
            let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("subgroup sizes readback"),
                size: 8,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("subgroup sizes bind group"),
                layout: &self.fill_layout().group,
                entries: &[wgpu::BindGroupEntry {
                    binding: 0,
                    resource: sizes.as_entire_binding(),
                }],
            });
            (sizes, readback, group)
        })?;
        self.run_pass(during, |pass| {
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(4, 1, 1);
        })?;
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some(during),
            });
        encoder.copy_buffer_to_buffer(&sizes, 0, &readback, 0, 8);
        self.submit_and_wait(encoder, during)?;
        let mut out = [0u32; 2];
        self.read_mapped_async(&readback, &mut out, during).await?;
        if out[0] == 0 || out[0] > out[1] {
            return Err(Error::Gpu {
                during: during.into(),
                message: format!("the shader reported subgroups of {} to {}", out[0], out[1]),
            });
        }
        Ok((out[0], out[1]))
    }

    /// Waits until submission `index` has finished: natively by polling the device; in the
    /// browser by the queue's completion promise. Then reports any error the work raised.
    pub(crate) async fn finished(&self, index: wgpu::SubmissionIndex, during: &str) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        {
            let _ = index;
            let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
            self.queue.on_submitted_work_done(move || {
                sender.send(()).ok();
            });
            if receiver.receive().await.is_none() {
                return Err(Error::Poll {
                    during: during.to_string(),
                    message: "the queue never reported the work done".into(),
                });
            }
            self.settle(during).await
        }
        #[cfg(not(target_arch = "wasm32"))]
        self.wait(index, during)
    }

    /// Blocks until submission `index` has finished. In the browser, which cannot block, it
    /// only reports errors seen so far: the queue runs the work before anything submitted
    /// later, and whatever reads results back awaits [`finished`](Self::finished).
    pub(crate) fn wait(&self, index: wgpu::SubmissionIndex, during: &str) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| Error::Poll {
                during: during.to_string(),
                message: e.to_string(),
            })?;
        self.check(during)
    }

    /// Maps a MAP_READ buffer after the GPU has written it and copies its bytes out (a
    /// future the browser resolves once the map is done; natively ready after the poll).
    pub(crate) async fn read_mapped_async<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        out: &mut [T],
        during: &str,
    ) -> Result<()> {
        let bytes = std::mem::size_of_val(out) as u64;
        let slice = buffer.slice(..bytes);
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            sender.send(r).ok();
        });
        let polled = self.device.poll(wgpu::PollType::wait_indefinitely());
        let mapped = match polled {
            // Unmapping a buffer whose map is still pending aborts the map: the buffer is
            // left usable for the next run, whatever failed.
            Err(e) => {
                buffer.unmap();
                return Err(Error::Poll {
                    during: during.to_string(),
                    message: e.to_string(),
                });
            }
            Ok(_) => receiver.receive().await,
        };
        let copied = match mapped {
            Some(Ok(())) => {
                let copied = slice
                    .get_mapped_range()
                    .map(|view| out.copy_from_slice(bytemuck::cast_slice(&view)))
                    .map_err(|e| Error::Readback(format!("{during}: {e}")));
                buffer.unmap();
                copied
            }
            Some(Err(e)) => Err(Error::Readback(format!("{during}: {e}"))),
            None => Err(Error::Readback(format!(
                "{during}: mapping never completed"
            ))),
        };
        // An error the GPU reported explains a failed map better than the map does.
        self.settle(during).await?;
        copied?;
        Ok(())
    }

    /// Whether `spec`'s pipelines are built without runtime checks: asked for
    /// ([`ContextOptions::unchecked_kernels`]) and proven in bounds by the host's plan.
    pub fn runs_unchecked(&self, spec: &KernelSpec) -> bool {
        self.unchecked_kernels && spec.bounds_proven
    }

    /// The compute pipeline for `source` specialised with `constants`, compiled once per
    /// context and then served from the cache. Every pipeline uses `layout`. Checked: naga
    /// validates the module and bounds-checks every access.
    pub(crate) fn pipeline(
        &self,
        source: ShaderSource,
        constants: &[(&'static str, f64)],
        layout: &wgpu::PipelineLayout,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        self.pipeline_with(source, constants, layout, false)
    }

    /// A projection kernel's pipeline: as [`pipeline`](Self::pipeline), unchecked where
    /// [`runs_unchecked`](Self::runs_unchecked) says so.
    pub(crate) fn kernel_pipeline(
        &self,
        spec: &KernelSpec,
        source: ShaderSource,
        constants: &[(&'static str, f64)],
        layout: &wgpu::PipelineLayout,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        self.pipeline_with(source, constants, layout, self.runs_unchecked(spec))
    }

    fn pipeline_with(
        &self,
        source: ShaderSource,
        constants: &[(&'static str, f64)],
        layout: &wgpu::PipelineLayout,
        unchecked: bool,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = PipelineKey {
            file: source.file,
            entry_point: source.entry_point,
            constants: constants.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
            unchecked,
        };
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(source, unchecked)?;
        let pipeline = self.checked(&format!("compiling {}", source.file), || {
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(source.file),
                    layout: Some(layout),
                    module: &module,
                    entry_point: Some(source.entry_point),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants,
                        // An unchecked kernel writes every word of workgroup memory it reads
                        // first (part of what bounds_proven promises).
                        zero_initialize_workgroup_memory: !unchecked,
                    },
                    cache: None,
                })
        })?;
        let pipeline = Arc::new(pipeline);
        self.pipelines.lock().unwrap().insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn module(&self, source: ShaderSource, unchecked: bool) -> Result<wgpu::ShaderModule> {
        if let Some(m) = self.modules.lock().unwrap().get(&(source.file, unchecked)) {
            return Ok(m.clone());
        }
        // Without f16 conversions the half-reading kernels' native widening is left out
        // (see `kernels::F16_UNPACK`); NATIVE_F16 is never set here then.
        let (unpack, none) = crate::kernels::F16_UNPACK;
        let wgsl = if !self.summary.f16_unpack && source.wgsl.contains(unpack) {
            std::borrow::Cow::Owned(source.wgsl.replace(unpack, none))
        } else {
            std::borrow::Cow::Borrowed(source.wgsl)
        };
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(source.file),
            source: wgpu::ShaderSource::Wgsl(wgsl),
        };
        let module = self.checked(&format!("parsing {}", source.file), || {
            if unchecked {
                // SAFETY: asked for, and only for kernels whose spec says `bounds_proven`:
                // every buffer and workgroup-memory index they compute is below the length
                // the host's plan gives that binding (tests/unchecked.rs derives each bound
                // from the kernel's guards for every shape class), their loops end (their
                // bounds are uniforms and constants), and they read no workgroup memory
                // before writing it. naga still validates the module.
                unsafe {
                    self.device
                        .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
                }
            } else {
                // Checked: naga validates the module and inserts bounds checks, so a broken or
                // out-of-bounds shader is an error, not UB.
                self.device.create_shader_module(desc)
            }
        })?;
        self.modules
            .lock()
            .unwrap()
            .insert((source.file, unchecked), module.clone());
        Ok(module)
    }
}

/// The limits to ask `adapter` for: `options.limits` where given, else wgpu's defaults
/// clamped to what the adapter has, then raised to the adapter's best for the limits that
/// projection shapes scale with. Each projector checks its shape against `device.limits()`
/// and reports a clear error past them.
fn requested_limits(adapter: &wgpu::Adapter, options: &ContextOptions) -> wgpu::Limits {
    let best = adapter.limits();
    options.limits.clone().unwrap_or_else(|| wgpu::Limits {
        max_storage_buffer_binding_size: best.max_storage_buffer_binding_size,
        max_buffer_size: best.max_buffer_size,
        max_storage_buffers_per_shader_stage: best.max_storage_buffers_per_shader_stage,
        max_compute_workgroup_storage_size: best.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: best.max_compute_invocations_per_workgroup,
        max_compute_workgroup_size_x: best.max_compute_workgroup_size_x,
        max_compute_workgroup_size_y: best.max_compute_workgroup_size_y,
        max_compute_workgroups_per_dimension: best.max_compute_workgroups_per_dimension,
        max_texture_dimension_2d: best.max_texture_dimension_2d,
        ..wgpu::Limits::default().or_worse_values_from(&best)
    })
}

/// The features to ask `adapter` for, and whether they include cooperative matrices (an
/// experimental feature). What some kernel can use, where the adapter has it; a kernel
/// whose spec requires a feature is checked against the adapter first
/// (`KernelSpec::unsupported_on`).
fn requested_features(
    adapter: &wgpu::Adapter,
    summary: &AdapterSummary,
    options: &ContextOptions,
) -> (wgpu::Features, bool) {
    let mut required =
        adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP);
    if options.host_timer {
        required.remove(wgpu::Features::TIMESTAMP_QUERY);
    }
    // Cooperative matrices (with the f16 the `coopmat` kernel reads) only where the adapter
    // offers a configuration: an experimental feature, asked for nowhere else.
    let coop = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16;
    let with_coop = !summary.cooperative_matrix.is_empty() && adapter.features().contains(coop);
    if with_coop {
        required |= coop;
    }
    (required, with_coop)
}

/// Where `device`'s errors outside an error scope and its loss go: kept as messages (wgpu's
/// default reaction to the first is a panic) and surfaced at the next check.
#[allow(clippy::type_complexity)]
fn error_sinks(device: &wgpu::Device) -> (Arc<Mutex<Vec<String>>>, Arc<Mutex<Option<String>>>) {
    let uncaptured = Arc::new(Mutex::new(Vec::new()));
    let sink = uncaptured.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
        sink.lock().unwrap().push(e.to_string());
    }));
    let lost = Arc::new(Mutex::new(None));
    let lost_sink = lost.clone();
    device.set_device_lost_callback(move |reason, message| {
        if reason != wgpu::DeviceLostReason::Destroyed {
            *lost_sink.lock().unwrap() = Some(format!("{reason:?}: {message}"));
        }
    });
    (uncaptured, lost)
}

/// The texture kernels bind the fewest storage buffers (bias, Q, K, V); a device with fewer
/// runs nothing. Each other binding kind is checked per kernel (`KernelSpec::unsupported_on`),
/// so a device with six runs all but split-K.
fn check_storage_buffers(device: &wgpu::Device) -> Result<()> {
    let storage = device.limits().max_storage_buffers_per_shader_stage;
    let fewest = BindingKind::ALL.map(BindingKind::storage_buffers);
    let fewest = fewest.iter().min().copied().unwrap_or(0);
    if storage < fewest {
        return Err(Error::DeviceLimit {
            what: "the projection kernels' bindings".into(),
            needed: format!("{fewest} storage buffers per shader stage"),
            limit: storage.to_string(),
            limit_name: "max_storage_buffers_per_shader_stage",
        });
    }
    Ok(())
}
