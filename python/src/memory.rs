//! The memory guard: a `MemoryError` before any allocation that grows with X or the shape
//! and would not fit in the memory left. Past that point Rust aborts the process where an
//! allocation fails (and the kernel's OOM killer ends it where pages run out): Python could
//! not catch either, and the user's session would be lost.

use pyo3::exceptions::PyMemoryError;
use pyo3::PyResult;

/// The bytes this process can still allocate, where the system says (the library's
/// [`qkv_wgpu::host::available_memory`]: the machine's memory left, its cgroup's, `ulimit
/// -v`, capped by `QKV_MEMORY_LIMIT`); None where none is known.
pub fn available() -> Option<u64> {
    qkv_wgpu::host::available_memory()
}

/// A `MemoryError` where `need` bytes are more than [`available`], its text `say(need,
/// free)` with both as "12.3 GB": what needs them, and the ways out.
pub fn guard(need: u64, say: impl FnOnce(&str, &str) -> String) -> PyResult<()> {
    match available().filter(|&free| need > free) {
        None => Ok(()),
        Some(free) => Err(PyMemoryError::new_err(say(&gb(need), &gb(free)))),
    }
}

/// Bytes as GB with one decimal.
pub fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// The bytes `len` values of `size` bytes each take, saturating (a shape's product can
/// pass u64 only where it could never fit anyway).
pub fn bytes(len: u64, size: u64) -> u64 {
    len.saturating_mul(size)
}

/// The bytes the check of `rows` rows of X [_, d_model] through weights of `n_out` columns
/// holds at once: Q, K, V of the rows as f32, their f64 reference with each element's
/// magnitude, and X of the rows twice (as given, and rounded to the run's type).
pub fn check_bytes(rows: u64, d_model: u64, n_out: u64) -> u64 {
    bytes(rows, n_out.saturating_mul(4 + 16)).saturating_add(bytes(rows, d_model * 8))
}
