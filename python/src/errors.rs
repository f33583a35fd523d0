//! The library's errors as Python exceptions: `ValueError` for shapes, types and bad input,
//! `OSError` for files, `MemoryError` for a run the host's memory cannot hold,
//! `KeyboardInterrupt` for Ctrl-C, `GpuError` (this module's own) for the device.

use pyo3::create_exception;
use pyo3::exceptions::{
    PyKeyboardInterrupt, PyMemoryError, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use qkv_wgpu::Error;

create_exception!(
    _native,
    GpuError,
    PyRuntimeError,
    "A GPU failed: no adapter, a device error, a lost device, a limit past the device's."
);

/// The library's error as the Python exception that fits it: `ValueError` for shapes, types
/// and bad input, `OSError` for files, `MemoryError` for a run the host's memory cannot
/// hold, `GpuError` for the device. Settings are named as the keyword arguments are.
pub fn py_err(e: Error) -> PyErr {
    let message = named(&e.to_string());
    match e {
        Error::Shape(_) | Error::Input(_) => PyValueError::new_err(message),
        Error::Io { .. } => PyOSError::new_err(message),
        Error::HostMemory { .. } => PyMemoryError::new_err(message),
        Error::Interrupted { .. } => PyKeyboardInterrupt::new_err(message),
        _ => GpuError::new_err(message),
    }
}

/// A library message with each setting named as the keyword arguments are.
pub fn named(message: &str) -> String {
    let names = [
        ("chunk_tokens", "chunk_tokens"),
        ("kernel", "kernel"),
        ("tokens", "tokens"),
        ("max_tokens", "max_tokens"),
        ("cpu", "cpu=False"),
        ("check_rows", "check_rows"),
        ("heads", "heads"),
        ("kv_heads", "kv_heads"),
        ("weight_layout", "weight_layout"),
        ("allow_nonfinite", "allow_nonfinite=True"),
        ("force", "force=True"),
    ];
    qkv_wgpu::error::name_settings(message, &names)
}
