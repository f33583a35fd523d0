//! What the page shows about the adapter: the browser's own description (`GPUAdapterInfo`:
//! vendor, architecture; its feature names) beside what wgpu reports and the device was
//! granted.

use crate::js::{js_err, js_str};
use js_sys::{Function, Promise, Reflect};
use qkv_wgpu::GpuContext;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// What the page shows about the adapter: the browser's own description (vendor,
/// architecture) beside what wgpu reports and the device was granted.
#[derive(Serialize, Clone)]
pub struct AdapterInfo {
    name: String,
    vendor: String,
    architecture: String,
    description: String,
    backend: String,
    driver: String,
    device_type: String,
    is_cpu: bool,
    timestamps: bool,
    /// What the browser's adapter offers (WebGPU's names).
    features: Vec<String>,
    /// What the library asked for and the device has (wgpu's names).
    features_used: Vec<String>,
    /// The device's limits, by WebGPU's names.
    pub limits: Vec<(String, f64)>,
}

impl AdapterInfo {
    /// The adapter of `ctx` as the page shows it, with the browser's `info`
    /// (`GPUAdapterInfo`) and `features` ([`browser_info`]).
    pub fn new(ctx: &GpuContext, info: &JsValue, features: Vec<String>) -> Self {
        let s = &ctx.summary;
        let architecture = js_str(info, "architecture");
        let fallback = Reflect::get(info, &"isFallbackAdapter".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        Self {
            name: s.name.clone(),
            vendor: js_str(info, "vendor"),
            description: js_str(info, "description"),
            is_cpu: s.is_cpu() || fallback || architecture.eq_ignore_ascii_case("swiftshader"),
            architecture,
            backend: s.backend.clone(),
            driver: s.driver.clone(),
            device_type: s.device_type.clone(),
            timestamps: ctx.has_timestamps(),
            features,
            features_used: ctx
                .device
                .features()
                .iter_names()
                .map(|(n, _)| n.to_string())
                .collect(),
            limits: limits(ctx),
        }
    }

    /// How the report names the adapter: wgpu's name, else the browser's vendor and
    /// architecture (Chrome gives no name).
    pub fn vendor_architecture(&self) -> String {
        if !self.name.is_empty() {
            self.name.clone()
        } else {
            format!("{} {}", self.vendor, self.architecture)
                .trim()
                .to_string()
        }
    }
}

/// The device's limits the page lists, by WebGPU's names.
fn limits(ctx: &GpuContext) -> Vec<(String, f64)> {
    let l = ctx.limits();
    [
        (
            "maxStorageBufferBindingSize",
            l.max_storage_buffer_binding_size as f64,
        ),
        ("maxBufferSize", l.max_buffer_size as f64),
        (
            "maxStorageBuffersPerShaderStage",
            l.max_storage_buffers_per_shader_stage as f64,
        ),
        (
            "maxComputeWorkgroupStorageSize",
            l.max_compute_workgroup_storage_size as f64,
        ),
        (
            "maxComputeInvocationsPerWorkgroup",
            l.max_compute_invocations_per_workgroup as f64,
        ),
        (
            "maxComputeWorkgroupSizeX",
            l.max_compute_workgroup_size_x as f64,
        ),
        (
            "maxComputeWorkgroupSizeY",
            l.max_compute_workgroup_size_y as f64,
        ),
        (
            "maxComputeWorkgroupsPerDimension",
            l.max_compute_workgroups_per_dimension as f64,
        ),
        ("maxTextureDimension2D", l.max_texture_dimension_2d as f64),
        ("maxBindGroups", l.max_bind_groups as f64),
        (
            "maxUniformBufferBindingSize",
            l.max_uniform_buffer_binding_size as f64,
        ),
    ]
    .map(|(n, v)| (n.to_string(), v))
    .to_vec()
}

/// The browser's own `GPUAdapterInfo` (vendor, architecture, description) and feature names,
/// which wgpu does not pass on, or why there is no adapter at all.
pub async fn browser_info() -> Result<(JsValue, Vec<String>), JsValue> {
    let no = |why: &str| js_err(qkv_wgpu::Error::NoWebGpu { reason: why.into() });
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into())?;
    let gpu = Reflect::get(&navigator, &"gpu".into())?;
    if gpu.is_undefined() || gpu.is_null() {
        return Err(no(
            "navigator.gpu is undefined: this browser has no WebGPU, or it is off",
        ));
    }
    let request: Function = Reflect::get(&gpu, &"requestAdapter".into())?.dyn_into()?;
    // The same preference as the library's own request, so both describe one adapter.
    let options = js_sys::Object::new();
    Reflect::set(
        &options,
        &"powerPreference".into(),
        &"high-performance".into(),
    )?;
    let promise: Promise = request.call1(&gpu, &options)?.dyn_into()?;
    let adapter = JsFuture::from(promise).await?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err(no("navigator.gpu.requestAdapter() gave null"));
    }
    let info = Reflect::get(&adapter, &"info".into()).unwrap_or(JsValue::UNDEFINED);
    let features = Reflect::get(&adapter, &"features".into()).unwrap_or(JsValue::UNDEFINED);
    let mut names: Vec<String> = if features.is_undefined() {
        Vec::new()
    } else {
        js_sys::Array::from(&features)
            .iter()
            .filter_map(|f| f.as_string())
            .collect()
    };
    names.sort();
    Ok((info, names))
}
