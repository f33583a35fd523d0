//! The memory guard: a `MemoryError` before any allocation that grows with X or the shape
//! and would not fit in the memory left. Past that point Rust aborts the process where an
//! allocation fails (and the kernel's OOM killer ends it where pages run out): Python could
//! not catch either, and the user's session would be lost.

use pyo3::exceptions::PyMemoryError;
use pyo3::PyResult;

/// The bytes this process can still allocate, where the system says: the least of the
/// memory the machine has left (Linux's MemAvailable plus free swap), what its cgroup
/// (container) allows on top of what the cgroup holds, and its address-space limit
/// (`ulimit -v`) above its size; None where none is known (not Linux).
pub fn available() -> Option<u64> {
    [machine_left(), cgroup_left(), address_space_left()]
        .into_iter()
        .flatten()
        .min()
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

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The number after `name` in a /proc file's line ("MemAvailable:   24244812 kB"), in
/// bytes.
fn kb_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn machine_left() -> Option<u64> {
    let info = read("/proc/meminfo")?;
    Some(kb_field(&info, "MemAvailable:")? + kb_field(&info, "SwapFree:").unwrap_or(0))
}

/// cgroup v2's memory.max less memory.current for this process's cgroup.
fn cgroup_left() -> Option<u64> {
    let cgroup = read("/proc/self/cgroup")?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let dir = format!("/sys/fs/cgroup{}", path.trim_end_matches('/'));
    let max: u64 = read(&format!("{dir}/memory.max"))?.trim().parse().ok()?; // "max": None
    let current: u64 = read(&format!("{dir}/memory.current"))?
        .trim()
        .parse()
        .ok()?;
    Some(max.saturating_sub(current))
}

/// RLIMIT_AS's soft limit less this process's virtual size.
fn address_space_left() -> Option<u64> {
    let limits = read("/proc/self/limits")?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    // "Max address space   <soft>   <hard>   bytes": "unlimited", or a number.
    let limit: u64 = line
        .trim_start_matches("Max address space")
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let size = kb_field(&read("/proc/self/status")?, "VmSize:")?;
    Some(limit.saturating_sub(size))
}
