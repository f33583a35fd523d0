//! Adapters and contexts: the adapter filter of `backend` and `adapter` (or the
//! environment's), one GPU context per filter kept for the process, adapters as dicts
//! (`adapters()`), and Mesa's device-select layer kept quiet where no session runs.

use crate::errors::py_err;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use qkv_wgpu::{AdapterFilter, AdapterSummary, BackendChoice, Error, GpuContext};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// The adapter filter of `backend` and `adapter` (a name substring); the environment's
/// `QKV_BACKEND` / `QKV_ADAPTER` where both are None.
pub fn filter(backend: Option<&str>, adapter: Option<&str>) -> PyResult<AdapterFilter> {
    if backend.is_none() && adapter.is_none() {
        return AdapterFilter::from_env().map_err(py_err);
    }
    let backend = match backend {
        Some(b) => Some(b.parse::<BackendChoice>().map_err(PyValueError::new_err)?),
        None => None,
    };
    Ok(AdapterFilter {
        backend,
        name: adapter.map(str::to_string),
    })
}

/// One GPU context per adapter filter, made on first use and kept for the process: a
/// projector borrows its context, and contexts are costly to make.
pub fn context(filter: &AdapterFilter) -> Result<&'static GpuContext, Error> {
    static CONTEXTS: OnceLock<Mutex<HashMap<String, &'static GpuContext>>> = OnceLock::new();
    let key = format!("{:?}/{:?}", filter.backend, filter.name);
    let mut map = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .expect("no panic while it is held");
    if let Some(ctx) = map.get(&key) {
        return Ok(ctx);
    }
    let ctx: &'static GpuContext = Box::leak(Box::new(GpuContext::new(filter)?));
    map.insert(key, ctx);
    Ok(ctx)
}

pub fn summary_dict<'py>(py: Python<'py>, s: &AdapterSummary) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &s.name)?;
    d.set_item("backend", &s.backend)?;
    d.set_item("type", &s.device_type)?;
    d.set_item("driver", &s.driver)?;
    d.set_item("pci_bus_id", &s.pci_bus_id)?;
    let limits = PyDict::new(py);
    limits.set_item(
        "max_storage_buffer_binding_size",
        s.max_storage_buffer_binding_size,
    )?;
    limits.set_item("max_buffer_size", s.max_buffer_size)?;
    limits.set_item(
        "max_compute_workgroup_storage_size",
        s.max_compute_workgroup_storage_size,
    )?;
    limits.set_item(
        "max_compute_invocations_per_workgroup",
        s.max_compute_invocations_per_workgroup,
    )?;
    limits.set_item(
        "max_storage_buffers_per_shader_stage",
        s.max_storage_buffers_per_shader_stage,
    )?;
    limits.set_item(
        "max_compute_workgroups_per_dimension",
        s.max_compute_workgroups_per_dimension,
    )?;
    d.set_item("limits", limits)?;
    let mut features = Vec::new();
    for (on, name) in [
        (s.timestamp_query, "timestamp-query"),
        (s.shader_f16, "shader-f16"),
        (s.subgroup, "subgroups"),
        (!s.cooperative_matrix.is_empty(), "cooperative-matrix"),
    ] {
        if on {
            features.push(name);
        }
    }
    d.set_item("features", features)?;
    d.set_item("f16", s.shader_f16)?;
    d.set_item(
        "subgroups",
        s.subgroup.then_some((s.subgroup_size.0, s.subgroup_size.1)),
    )?;
    let coop: Vec<String> = s.cooperative_matrix.iter().map(|c| c.to_string()).collect();
    d.set_item("cooperative_matrices", coop)?;
    Ok(d)
}

/// The adapters wgpu sees (those `backend` and `adapter`, a name substring, allow), as
/// dicts: name, backend, type, driver, limits, features, f16, subgroups (min, max sizes, or
/// None), cooperative_matrices.
#[pyfunction]
#[pyo3(signature = (backend=None, adapter=None))]
pub fn adapters<'py>(
    py: Python<'py>,
    backend: Option<&str>,
    adapter: Option<&str>,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let f = filter(backend, adapter)?;
    let found = py.detach(|| qkv_wgpu::list_adapters(&f));
    found.iter().map(|s| summary_dict(py, s)).collect()
}

/// Mesa's Vulkan device-selection layer connects to a Wayland display to learn the default
/// GPU; with no XDG_RUNTIME_DIR (a server, CI, a container, a notebook kernel) libwayland
/// prints "error: XDG_RUNTIME_DIR is invalid or not set" for every adapter listing, which
/// users read as ours. With no session to ask there is nothing for the layer to select by,
/// so it is switched off (`NODEVICE_SELECT=1`, the layer's own switch) unless the user set
/// either variable, or chose a device through the layer with MESA_VK_DEVICE_SELECT: as the
/// CLI does. Called when the module is imported, before any wgpu instance exists.
pub fn quiet_mesa_device_select() {
    let unset = |v: &str| std::env::var_os(v).is_none();
    if unset("XDG_RUNTIME_DIR") && unset("NODEVICE_SELECT") && unset("MESA_VK_DEVICE_SELECT") {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}
