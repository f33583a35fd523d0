//! The GPU context: instance, adapter, device and queue, made once and shared by every
//! projection. Picks the adapter (`--backend`, `--adapter`), asks it for the limits that
//! projection shapes scale with, turns wgpu's errors into [`Error`]s instead of panics, and
//! caches compiled pipelines by (shader, entry point, override constants).

use crate::error::{Error, Result};
use crate::kernels::ShaderSource;
use crate::projector::Layouts;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A graphics API wgpu can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// Vulkan (Linux, Windows, Android; Mesa's lavapipe on machines without a GPU).
    Vulkan,
    /// Metal (macOS, iOS).
    Metal,
    /// Direct3D 12 (Windows).
    Dx12,
    /// OpenGL / GLES (a fallback; slower and with fewer features).
    Gl,
}

impl BackendChoice {
    fn backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Gl => wgpu::Backends::GL,
        }
    }
}

/// Which adapter to use. The default picks the best adapter of the primary backends
/// (Vulkan, Metal, DX12): a discrete GPU before an integrated one before a software one.
#[derive(Debug, Clone, Default)]
pub struct AdapterFilter {
    /// Only adapters of this backend.
    pub backend: Option<BackendChoice>,
    /// Only adapters whose name contains this text (case-insensitive).
    pub name: Option<String>,
}

impl AdapterFilter {
    /// The filter from the environment variables `QKV_BACKEND` and `QKV_ADAPTER`, the same
    /// ones the CLI reads; tests use this to run on the adapter CI names.
    pub fn from_env() -> Result<Self> {
        let backend = match std::env::var("QKV_BACKEND") {
            Ok(b) if !b.is_empty() => Some(
                <BackendChoice as clap::ValueEnum>::from_str(&b, true)
                    .map_err(|e| Error::Input(format!("QKV_BACKEND={b}: {e}")))?,
            ),
            _ => None,
        };
        let name = std::env::var("QKV_ADAPTER").ok().filter(|s| !s.is_empty());
        Ok(Self { backend, name })
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = self.backend {
            parts.push(format!("backend {b:?}"));
        }
        if let Some(n) = &self.name {
            parts.push(format!("name containing '{n}'"));
        }
        parts.join(" and ")
    }

    fn matches(&self, info: &wgpu::AdapterInfo) -> bool {
        self.name
            .as_ref()
            .is_none_or(|n| info.name.to_lowercase().contains(&n.to_lowercase()))
    }
}

/// What `qkv adapters` reports about one adapter.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterSummary {
    /// Adapter name, e.g. "NVIDIA H100" or "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// Backend: Vulkan, Metal, Dx12 or Gl.
    pub backend: String,
    /// DiscreteGpu, IntegratedGpu, VirtualGpu, Cpu or Other.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Largest storage buffer one binding may view, in bytes (bounds X, W, Q, K, V).
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// Workgroup (shared) memory per workgroup, in bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// GPU timestamps inside compute passes (kernel timing without host overhead).
    pub timestamp_query: bool,
    /// 16-bit floats in shaders.
    pub shader_f16: bool,
    /// Subgroup (warp / wave) operations in shaders.
    pub subgroup: bool,
    /// Subgroup sizes the adapter reports (min, max).
    pub subgroup_size: (u32, u32),
}

impl AdapterSummary {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        Self {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroup: features.contains(wgpu::Features::SUBGROUP),
            subgroup_size: (info.subgroup_min_size, info.subgroup_max_size),
        }
    }
}

fn new_instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle())
}

/// Adapters of the given backends, best first (discrete, integrated, virtual, other, CPU).
fn ranked_adapters(instance: &wgpu::Instance, backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
    adapters.sort_by_key(|a| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    });
    adapters
}

/// Adapters the filter's backend allows: the named backend, or the primary ones, falling
/// back to GL only when no primary backend has an adapter (GL probing is slow and noisy).
fn candidate_adapters(instance: &wgpu::Instance, filter: &AdapterFilter) -> Vec<wgpu::Adapter> {
    match filter.backend {
        Some(b) => ranked_adapters(instance, b.backends()),
        None => {
            let primary = ranked_adapters(instance, wgpu::Backends::PRIMARY);
            if primary.is_empty() {
                ranked_adapters(instance, wgpu::Backends::SECONDARY)
            } else {
                primary
            }
        }
    }
}

/// Every adapter the filter's backend allows, best first, for `qkv adapters`.
pub fn list_adapters(filter: &AdapterFilter) -> Vec<AdapterSummary> {
    let instance = new_instance();
    candidate_adapters(&instance, filter)
        .iter()
        .filter(|a| filter.matches(&a.get_info()))
        .map(AdapterSummary::of)
        .collect()
}

/// How to create the device.
#[derive(Debug, Clone, Default)]
pub struct ContextOptions {
    /// Exactly these limits instead of the adapter's best for the limits shapes scale with.
    /// Tests lower limits on purpose with this, so that limit paths run on small shapes.
    pub limits: Option<wgpu::Limits>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    file: &'static str,
    entry_point: &'static str,
    constants: Vec<(&'static str, u64)>,
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
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
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
    pub fn new(filter: &AdapterFilter) -> Result<Self> {
        Self::with_options(filter, &ContextOptions::default())
    }

    /// Picks an adapter by `filter` and creates a device on it.
    pub fn with_options(filter: &AdapterFilter, options: &ContextOptions) -> Result<Self> {
        let instance = new_instance();
        let candidates = candidate_adapters(&instance, filter);
        if candidates.is_empty() {
            let described = filter.describe();
            return Err(Error::NoAdapter {
                filter: if described.is_empty() {
                    String::new()
                } else {
                    format!(" for {described}")
                },
            });
        }
        let available = candidates
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("'{}' ({:?})", i.name, i.backend)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let adapter = candidates
            .into_iter()
            .find(|a| filter.matches(&a.get_info()))
            .ok_or_else(|| Error::AdapterNotFound {
                filter: filter.describe(),
                available,
            })?;
        Self::on_adapter(adapter, options)
    }

    fn on_adapter(adapter: wgpu::Adapter, options: &ContextOptions) -> Result<Self> {
        let summary = AdapterSummary::of(&adapter);
        let best = adapter.limits();
        // Defaults clamped to what the adapter has, then raised to the adapter's best for the
        // limits that projection shapes scale with. Each projector checks its shape against
        // `device.limits()` and reports a clear error past them.
        let limits = options.limits.clone().unwrap_or_else(|| wgpu::Limits {
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
        });
        let timestamps = summary.timestamp_query;
        // Ask for what some kernel can use, where the adapter has it; kernels that need a
        // feature check `KernelConfig::unsupported_on` first.
        let required_features =
            adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("qkv-wgpu device"),
            required_features,
            required_limits: limits,
            ..Default::default()
        }))
        .map_err(|source| Error::RequestDevice {
            adapter: summary.name.clone(),
            source,
        })?;

        // wgpu's default reaction to an error outside an error scope is a panic; keep it as a
        // message instead and surface it at the next check.
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

        // The kernels bind six storage buffers (X, W, bias, Q, K, V) in one stage.
        let storage = device.limits().max_storage_buffers_per_shader_stage;
        if storage < Layouts::STORAGE_BUFFERS {
            return Err(Error::DeviceLimit {
                what: "the projection kernels' bindings".into(),
                needed: format!(
                    "{} storage buffers per shader stage",
                    Layouts::STORAGE_BUFFERS
                ),
                limit: storage.to_string(),
                limit_name: "max_storage_buffers_per_shader_stage",
                hint: String::new(),
            });
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layouts = Layouts::new(&device);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu {
                during: "creating the bind group layouts".into(),
                message: e.to_string(),
            });
        }
        Ok(Self {
            adapter,
            device,
            queue,
            summary,
            timestamps,
            layouts,
            uncaptured,
            lost,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
        })
    }

    /// The device's limits (what was granted, which may be lower than the adapter's).
    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    pub(crate) fn layouts(&self) -> &Layouts {
        &self.layouts
    }

    /// Whether the adapter runs on the CPU (lavapipe, WARP, SwiftShader): no clocks that
    /// ramp from idle, and barriers that cost more than they do on a GPU.
    pub fn is_cpu(&self) -> bool {
        self.summary.device_type == format!("{:?}", wgpu::DeviceType::Cpu)
    }

    /// Whether kernel times come from GPU timestamps (the adapter has TIMESTAMP_QUERY).
    pub fn has_timestamps(&self) -> bool {
        self.timestamps
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns anything wgpu
    /// reports, or a lost device, into an [`Error`] naming `during`.
    pub(crate) fn checked<T>(&self, during: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        if let Some(e) = validation.or(oom) {
            return Err(Error::Gpu {
                during: during.to_string(),
                message: e.to_string(),
            });
        }
        self.check(during)?;
        Ok(out)
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

    /// Blocks until submission `index` has finished.
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

    /// Maps a MAP_READ buffer after the GPU has written it and copies its bytes out.
    pub(crate) fn read_mapped<T: bytemuck::Pod>(
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
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Poll {
                during: during.to_string(),
                message: e.to_string(),
            })?;
        self.check(during)?;
        match pollster::block_on(receiver.receive()) {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Readback(format!("{during}: {e}"))),
            None => {
                return Err(Error::Readback(format!(
                    "{during}: mapping never completed"
                )))
            }
        }
        {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Readback(format!("{during}: {e}")))?;
            out.copy_from_slice(bytemuck::cast_slice(&view));
        }
        buffer.unmap();
        Ok(())
    }

    /// The compute pipeline for `source` specialised with `constants`, compiled once per
    /// context and then served from the cache. Every pipeline uses `layout`.
    pub(crate) fn pipeline(
        &self,
        source: ShaderSource,
        constants: &[(&'static str, f64)],
        layout: &wgpu::PipelineLayout,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = PipelineKey {
            file: source.file,
            entry_point: source.entry_point,
            constants: constants.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
        };
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(source)?;
        let pipeline = self.checked(&format!("compiling {}", source.file), || {
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(source.file),
                    layout: Some(layout),
                    module: &module,
                    entry_point: Some(source.entry_point),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants,
                        zero_initialize_workgroup_memory: true,
                    },
                    cache: None,
                })
        })?;
        let pipeline = Arc::new(pipeline);
        self.pipelines.lock().unwrap().insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn module(&self, source: ShaderSource) -> Result<wgpu::ShaderModule> {
        if let Some(m) = self.modules.lock().unwrap().get(source.file) {
            return Ok(m.clone());
        }
        // Checked creation (not create_shader_module_trusted): naga validates the module and
        // inserts bounds checks, so a broken or out-of-bounds shader is an error, not UB.
        let module = self.checked(&format!("parsing {}", source.file), || {
            self.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(source.file),
                    source: wgpu::ShaderSource::Wgsl(source.wgsl.into()),
                })
        })?;
        self.modules
            .lock()
            .unwrap()
            .insert(source.file, module.clone());
        Ok(module)
    }
}
