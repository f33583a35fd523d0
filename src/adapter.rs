//! Adapters: which graphics API and which device to use (`--backend`, `--adapter`, or the
//! `QKV_BACKEND` / `QKV_ADAPTER` environment variables), how they are ranked, and what `qkv
//! adapters` reports about each. The context ([`crate::context`]) creates its device on the
//! adapter chosen here.

use crate::error::{Error, Result};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// A graphics API wgpu can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Every backend, in the order they are listed to users.
    pub const ALL: [BackendChoice; 4] = [
        BackendChoice::Vulkan,
        BackendChoice::Metal,
        BackendChoice::Dx12,
        BackendChoice::Gl,
    ];

    /// The name users type (`--backend vulkan`).
    pub const fn name(self) -> &'static str {
        match self {
            BackendChoice::Vulkan => "vulkan",
            BackendChoice::Metal => "metal",
            BackendChoice::Dx12 => "dx12",
            BackendChoice::Gl => "gl",
        }
    }

    /// One line on where the backend runs.
    pub const fn description(self) -> &'static str {
        match self {
            BackendChoice::Vulkan => {
                "Vulkan (Linux, Windows, Android; Mesa's lavapipe on machines without a GPU)"
            }
            BackendChoice::Metal => "Metal (macOS, iOS)",
            BackendChoice::Dx12 => "Direct3D 12 (Windows)",
            BackendChoice::Gl => "OpenGL / GLES (a fallback; slower and with fewer features)",
        }
    }

    /// Whether wgpu can run this backend on this operating system, as this binary was built.
    pub fn available_here(self) -> bool {
        let os = match self {
            BackendChoice::Metal => cfg!(target_vendor = "apple"),
            BackendChoice::Dx12 => cfg!(windows),
            BackendChoice::Vulkan | BackendChoice::Gl => true,
        };
        os && wgpu::Instance::enabled_backend_features().contains(self.backends())
    }

    fn backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Gl => wgpu::Backends::GL,
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendChoice {
    type Err = String;

    /// A backend name, in any case.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let s = s.trim();
        BackendChoice::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = BackendChoice::ALL.iter().map(|b| b.name()).collect();
                format!("invalid value '{s}'; possible values: {}", names.join(", "))
            })
    }
}

/// Which adapter to use. The default picks the best adapter of the primary backends
/// (Vulkan, Metal, DX12): a discrete GPU before an integrated one before a software one.
#[derive(Debug, Clone, Default)]
pub struct AdapterFilter {
    /// Only adapters of this backend.
    pub backend: Option<BackendChoice>,
    /// Only adapters whose name contains this text (case-insensitive), or, written
    /// `pci:BUS` (`pci:0000:18:00.0`), the adapter at that PCI address: how one of several
    /// identical GPUs is named.
    pub name: Option<String>,
}

/// A PCI address as (domain, bus, device, function), from `0000:18:00.0` or
/// `00000000:18:00.0` (nvidia-smi's): the form each tool writes it in compared as numbers.
pub fn pci_address(s: &str) -> Option<(u32, u8, u8, u8)> {
    let s = s.trim();
    let (rest, function) = s.rsplit_once('.')?;
    let mut parts = rest.rsplitn(3, ':');
    let device = u8::from_str_radix(parts.next()?, 16).ok()?;
    let bus = u8::from_str_radix(parts.next()?, 16).ok()?;
    let domain = match parts.next() {
        Some(d) => u32::from_str_radix(d, 16).ok()?,
        None => 0,
    };
    Some((domain, bus, device, function.parse().ok()?))
}

impl AdapterFilter {
    /// The filter from the environment variables `QKV_BACKEND` and `QKV_ADAPTER`, the same
    /// ones the CLI reads; tests use this to run on the adapter CI names.
    pub fn from_env() -> Result<Self> {
        let backend = match std::env::var("QKV_BACKEND") {
            Ok(b) if !b.is_empty() => Some(
                b.parse::<BackendChoice>()
                    .map_err(|e| Error::Input(format!("QKV_BACKEND={b}: {e}")))?,
            ),
            _ => None,
        };
        let name = std::env::var("QKV_ADAPTER").ok().filter(|s| !s.is_empty());
        Ok(Self { backend, name })
    }

    /// The filter as words for messages ("backend vulkan and name containing 'llvm'"), empty
    /// when it filters nothing.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = self.backend {
            parts.push(format!("backend {b}"));
        }
        match self.name.as_deref().map(|n| (n, n.strip_prefix("pci:"))) {
            Some((_, Some(bus))) => parts.push(format!("PCI address {bus}")),
            Some((n, None)) => parts.push(format!("name containing '{n}'")),
            None => {}
        }
        parts.join(" and ")
    }

    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    fn matches(&self, info: &wgpu::AdapterInfo) -> bool {
        match self.name.as_deref().map(|n| (n, n.strip_prefix("pci:"))) {
            None => true,
            Some((_, Some(bus))) => {
                pci_address(bus).is_some_and(|a| pci_address(&info.device_pci_bus_id) == Some(a))
            }
            Some((n, None)) => info.name.to_lowercase().contains(&n.to_lowercase()),
        }
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
    /// Its PCI address (`0000:18:00.0`) where the backend reports one (Vulkan does), else
    /// empty: `--adapter pci:ADDRESS` names it.
    pub pci_bus_id: String,
    /// Largest storage buffer one binding may view, in bytes (bounds X, W, Q, K, V).
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// Workgroup (shared) memory per workgroup, in bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Invocations along x of a workgroup.
    pub max_compute_workgroup_size_x: u32,
    /// Storage buffers one shader stage may bind.
    pub max_storage_buffers_per_shader_stage: u32,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// GPU timestamps inside compute passes (kernel timing without host overhead).
    pub timestamp_query: bool,
    /// 16-bit floats in shaders.
    pub shader_f16: bool,
    /// Conversions between f16 and f32 in shaders (`unpack2x16float`; wgpu's
    /// `DownlevelFlags::SHADER_F16_IN_F32`).
    pub f16_unpack: bool,
    /// Subgroup (warp / wave) operations in shaders.
    pub subgroup: bool,
    /// Subgroup sizes the adapter reports (min, max); on Metal, where wgpu reports 4..64
    /// for every GPU, a context measures the minimum instead
    /// ([`GpuContext`](crate::GpuContext)).
    pub subgroup_size: (u32, u32),
    /// The cooperative-matrix configurations wgpu offers on the adapter (square tiles, one
    /// subgroup each; empty without `EXPERIMENTAL_COOPERATIVE_MATRIX`).
    pub cooperative_matrix: Vec<CoopMatrix>,
    /// Whether wgpu's own WGSL compiler (naga) reads the shaders: on every backend but the
    /// browser's, where the browser's compiler (Chrome's Tint, Firefox's naga, Safari's
    /// WebKit) reads the WGSL as the standard has it.
    pub naga_wgsl: bool,
}

/// One cooperative-matrix configuration: `size` x `size` x `size` tiles, A and B of type
/// `inputs`, the accumulator C (and result) of type `accumulator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct CoopMatrix {
    /// M = N = K.
    pub size: u32,
    /// The type of A and B: "f16", "f32", "i32" or "u32".
    pub inputs: &'static str,
    /// The type of C and the result.
    pub accumulator: &'static str,
}

impl CoopMatrix {
    /// f16 inputs on `size` tiles with an f32 accumulator (`true`) or an f16 one.
    pub fn f16_inputs(size: u32, f32_accumulator: bool) -> Self {
        Self {
            size,
            inputs: "f16",
            accumulator: if f32_accumulator { "f32" } else { "f16" },
        }
    }

    /// The square configurations of `adapter`, as wgpu reports them.
    fn of(adapter: &wgpu::Adapter) -> Vec<Self> {
        if !adapter
            .features()
            .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
        {
            return Vec::new();
        }
        let name = |t: wgpu::CooperativeScalarType| match t {
            wgpu::CooperativeScalarType::F32 => "f32",
            wgpu::CooperativeScalarType::F16 => "f16",
            wgpu::CooperativeScalarType::I32 => "i32",
            wgpu::CooperativeScalarType::U32 => "u32",
        };
        let mut out: Vec<Self> = adapter
            .cooperative_matrix_properties()
            .into_iter()
            .filter(|p| p.m_size == p.n_size && p.n_size == p.k_size)
            .map(|p| Self {
                size: p.m_size,
                inputs: name(p.ab_type),
                accumulator: name(p.cr_type),
            })
            .collect();
        out.sort_by_key(|c| (c.size, c.inputs, c.accumulator));
        out.dedup();
        out
    }
}

impl std::fmt::Display for CoopMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.size;
        write!(f, "{s}x{s}x{s} {} -> {}", self.inputs, self.accumulator)
    }
}

impl AdapterSummary {
    /// A discrete GPU described, not found: "gpu" on Vulkan, driver "1", buffers of 1 GiB,
    /// 64 KiB of workgroup memory, 1024 invocations per workgroup, subgroups of 32, f16 with
    /// its conversions, timestamps, and cooperative matrices with f16 inputs of each
    /// (tile, f32 accumulator) in `coop`. For resolving and planning kernels without an
    /// adapter (tests, examples).
    pub fn described_gpu(coop: &[(u32, bool)]) -> Self {
        Self {
            name: "gpu".into(),
            backend: "Vulkan".into(),
            device_type: "DiscreteGpu".into(),
            driver: "1".into(),
            pci_bus_id: String::new(),
            max_storage_buffer_binding_size: 1 << 30,
            max_buffer_size: 1 << 30,
            max_compute_workgroup_storage_size: 1 << 16,
            max_compute_invocations_per_workgroup: 1024,
            max_compute_workgroup_size_x: 1024,
            max_storage_buffers_per_shader_stage: 8,
            max_compute_workgroups_per_dimension: 65535,
            timestamp_query: true,
            shader_f16: true,
            f16_unpack: true,
            subgroup: true,
            subgroup_size: (32, 32),
            cooperative_matrix: coop
                .iter()
                .map(|&(t, f32_acc)| CoopMatrix::f16_inputs(t, f32_acc))
                .collect(),
            naga_wgsl: true,
        }
    }

    /// The summary of `adapter`.
    pub fn of(adapter: &wgpu::Adapter) -> Self {
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
            pci_bus_id: info.device_pci_bus_id.clone(),
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size_x: limits.max_compute_workgroup_size_x,
            max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            f16_unpack: adapter
                .get_downlevel_capabilities()
                .flags
                .contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32),
            subgroup: features.contains(wgpu::Features::SUBGROUP),
            subgroup_size: (info.subgroup_min_size, info.subgroup_max_size),
            cooperative_matrix: CoopMatrix::of(adapter),
            naga_wgsl: info.backend != wgpu::Backend::BrowserWebGpu,
        }
    }

    /// This summary with the limits a device was granted in place of the adapter's (a
    /// device may be created with lower ones; kernels are checked against what it has).
    pub fn with_limits(mut self, limits: &wgpu::Limits) -> Self {
        self.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size;
        self.max_buffer_size = limits.max_buffer_size;
        self.max_compute_workgroup_storage_size = limits.max_compute_workgroup_storage_size;
        self.max_compute_invocations_per_workgroup = limits.max_compute_invocations_per_workgroup;
        self.max_compute_workgroup_size_x = limits.max_compute_workgroup_size_x;
        self.max_compute_workgroups_per_dimension = limits.max_compute_workgroups_per_dimension;
        self.max_storage_buffers_per_shader_stage = limits.max_storage_buffers_per_shader_stage;
        self
    }

    /// Whether the clocks that time kernels are coarse: the browser rounds WebGPU timestamps
    /// (and, without cross-origin isolation, `performance.now()`) to 100 µs, so a sample
    /// there must hold many batches ([`Projector::time_kernel_async`](crate::Projector)).
    pub fn coarse_clocks(&self) -> bool {
        self.backend == format!("{:?}", wgpu::Backend::BrowserWebGpu)
    }

    /// Whether the adapter runs on the CPU (lavapipe, WARP, SwiftShader): no clocks that
    /// ramp from idle, and barriers that cost more than they do on a GPU.
    pub fn is_cpu(&self) -> bool {
        self.device_type == format!("{:?}", wgpu::DeviceType::Cpu)
    }
}

/// An instance of only the backends that will be asked for adapters: initializing the
/// others costs time and, for GL, noise from the platform's EGL.
pub(crate) fn new_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// The error for "no adapter": a backend this platform does not have is named as such, not
/// answered with advice to install a driver.
pub fn no_adapter(filter: &AdapterFilter) -> Error {
    if let Some(b) = filter.backend.filter(|b| !b.available_here()) {
        let here: Vec<&str> = BackendChoice::ALL
            .iter()
            .filter(|b| b.available_here())
            .map(|b| b.name())
            .collect();
        return Error::Input(format!(
            "the {b} backend does not exist on {}: it is {}. Backends here: {}",
            std::env::consts::OS,
            b.description(),
            here.join(", ")
        ));
    }
    let described = filter.describe();
    Error::NoAdapter {
        filter: if described.is_empty() {
            String::new()
        } else {
            format!(" for {described}")
        },
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Adapters of the given backends, best first (discrete, integrated, virtual, other, CPU).
fn ranked_adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let instance = new_instance(backends);
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

#[cfg(not(target_arch = "wasm32"))]
/// Adapters the filter's backend allows: the named backend, or the primary ones, falling
/// back to GL only when no primary backend has an adapter (GL probing is slow and noisy).
fn candidate_adapters(filter: &AdapterFilter) -> Vec<wgpu::Adapter> {
    match filter.backend {
        Some(b) => ranked_adapters(b.backends()),
        None => {
            let primary = ranked_adapters(wgpu::Backends::PRIMARY);
            if primary.is_empty() {
                ranked_adapters(wgpu::Backends::SECONDARY)
            } else {
                primary
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Every adapter the filter allows, best first, for `qkv adapters`.
pub fn list_adapters(filter: &AdapterFilter) -> Vec<AdapterSummary> {
    candidate_adapters(filter)
        .iter()
        .filter(|a| filter.matches(&a.get_info()))
        .map(AdapterSummary::of)
        .collect()
}

#[cfg(not(target_arch = "wasm32"))]
/// Several adapters, one a worker: `all` (every adapter `filter` allows, best first) or a
/// comma list of `BACKEND`, `BACKEND:NAME` or `NAME` (each the best adapter it matches,
/// within `filter`'s backend where the item names none). The same adapter twice is refused,
/// as is a list that names none.
pub fn pick_adapters(filter: &AdapterFilter, spec: &str) -> Result<Vec<wgpu::Adapter>> {
    let key = |a: &wgpu::Adapter| {
        let i = a.get_info();
        (i.backend, i.vendor, i.device, i.name, i.device_pci_bus_id)
    };
    let picked = if spec.trim() == "all" {
        let all: Vec<wgpu::Adapter> = candidate_adapters(filter)
            .into_iter()
            .filter(|a| filter.matches(&a.get_info()))
            .collect();
        if all.is_empty() {
            return Err(no_adapter(filter));
        }
        all
    } else {
        let mut picked = Vec::new();
        for item in spec.split(',').map(str::trim) {
            let one = adapter_item(filter, item)?;
            if picked.iter().any(|p| key(p) == key(&one)) {
                return Err(Error::Input(format!(
                    "--adapters {spec}: {item} names an adapter named before ({})",
                    one.get_info().name
                )));
            }
            picked.push(one);
        }
        picked
    };
    Ok(picked)
}

#[cfg(not(target_arch = "wasm32"))]
/// One item of an adapter list: `BACKEND`, `BACKEND:NAME` or `NAME`.
fn adapter_item(filter: &AdapterFilter, item: &str) -> Result<wgpu::Adapter> {
    if item.is_empty() {
        return Err(Error::Input(
            "--adapters: an empty item (all, or BACKEND, BACKEND:NAME or NAME, comma-separated)"
                .into(),
        ));
    }
    let (backend, name) = match item.split_once(':') {
        // An address alone: `pci:0000:18:00.0`.
        Some(("pci", _)) => (None, Some(item)),
        Some((b, n)) => (Some(b), Some(n)),
        None if item.parse::<BackendChoice>().is_ok() => (Some(item), None),
        None => (None, Some(item)),
    };
    let backend = match backend {
        Some(b) => Some(
            b.parse::<BackendChoice>()
                .map_err(|e| Error::Input(format!("--adapters: {item}: {e}")))?,
        ),
        None => filter.backend,
    };
    let one = AdapterFilter {
        backend,
        name: name.map(str::to_string).or_else(|| filter.name.clone()),
    };
    pick_adapter(&one)
}

#[cfg(not(target_arch = "wasm32"))]
/// The best adapter the filter allows, or an error naming what exists.
pub(crate) fn pick_adapter(filter: &AdapterFilter) -> Result<wgpu::Adapter> {
    let candidates = candidate_adapters(filter);
    if candidates.is_empty() {
        return Err(no_adapter(filter));
    }
    let available = candidates
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("'{}' ({:?})", i.name, i.backend)
        })
        .collect::<Vec<_>>()
        .join(", ");
    candidates
        .into_iter()
        .find(|a| filter.matches(&a.get_info()))
        .ok_or_else(|| Error::AdapterNotFound {
            filter: filter.describe(),
            available,
        })
}

/// The browser's WebGPU adapter, high-performance where there is a choice, or why there is
/// none (no `navigator.gpu`, or a browser that has WebGPU but offers no adapter).
#[cfg(target_arch = "wasm32")]
pub(crate) async fn browser_adapter() -> Result<wgpu::Adapter> {
    let instance = new_instance(wgpu::Backends::BROWSER_WEBGPU);
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::NoWebGpu {
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_parse_in_any_case_and_unknown_ones_list_the_choices() {
        for b in BackendChoice::ALL {
            assert_eq!(b.name().parse::<BackendChoice>(), Ok(b));
            assert_eq!(b.name().to_uppercase().parse::<BackendChoice>(), Ok(b));
        }
        // Issue #11: `--backend metal` on Linux printed `Some(Metal)` and advice to install
        // lavapipe.
        if !cfg!(target_vendor = "apple") {
            let filter = AdapterFilter {
                backend: Some(BackendChoice::Metal),
                name: None,
            };
            let e = no_adapter(&filter).to_string();
            assert!(
                e.contains("metal backend does not exist on") && !e.contains("Some("),
                "{e}"
            );
            assert!(!e.contains("lavapipe") && e.contains("vulkan"), "{e}");
        }
        let err = "opengl".parse::<BackendChoice>().unwrap_err();
        assert!(
            err.contains("invalid value 'opengl'") && err.contains("dx12"),
            "{err}"
        );
    }

    #[test]
    fn pci_addresses_compare_in_every_tool_s_form() {
        let a = Some((0, 0x18, 0, 0));
        assert_eq!(pci_address("0000:18:00.0"), a);
        assert_eq!(pci_address("00000000:18:00.0"), a, "nvidia-smi's form");
        assert_eq!(pci_address(" 18:00.0\n"), a);
        assert_eq!(pci_address("0001:3B:1f.7"), Some((1, 0x3b, 0x1f, 7)));
        for bad in [
            "",
            "18",
            "0000:18:00",
            "zz:00.0",
            "0000:18:00.x",
            "1:2:3:4.0",
        ] {
            assert_eq!(pci_address(bad), None, "{bad:?}");
        }
        let info = |bus: &str| wgpu::AdapterInfo {
            name: "NVIDIA H100 80GB HBM3".into(),
            device_pci_bus_id: bus.into(),
            ..wgpu::AdapterInfo::new(wgpu::DeviceType::DiscreteGpu, wgpu::Backend::Vulkan)
        };
        let pci = AdapterFilter {
            backend: None,
            name: Some("pci:00000000:18:00.0".into()),
        };
        assert!(pci.matches(&info("0000:18:00.0")));
        assert!(!pci.matches(&info("0000:19:00.0")));
        assert!(!pci.matches(&info("")), "a backend that reports no address");
        assert_eq!(pci.describe(), "PCI address 00000000:18:00.0");
        let named = AdapterFilter {
            backend: None,
            name: Some("h100".into()),
        };
        assert!(named.matches(&info("")));
    }
}
