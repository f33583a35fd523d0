//! Measurements as Python dicts: one row of a pandas DataFrame each. A measure `bench()`'s
//! rows (the CLI's `qkv bench --json`) also hold goes by their name for it.

use crate::errors::py_err;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use qkv_wgpu::measure::Measurement;
use qkv_wgpu::records::CheckRecord;
use qkv_wgpu::{ElementType, FusedWeights};

/// The measurement's times as one row, under the names of `bench()`'s rows (`gpu_gflops`,
/// `kernel_timer`: "" where the kernel was not timed), with the spread of the kernel's
/// times and the throughput end to end besides.
pub fn time_dict<'py>(
    py: Python<'py>,
    m: &Measurement,
    kernel: &str,
    weights: &FusedWeights,
    tokens: usize,
    element: ElementType,
) -> PyResult<Bound<'py, PyDict>> {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let (med, min, max) = m
        .kernel
        .as_ref()
        .map_or((f64::NAN, f64::NAN, f64::NAN), |k| {
            let (a, b, c) = k.spread();
            (ms(a), ms(b), ms(c))
        });
    let shape = weights.shape(tokens as u32).map_err(py_err)?;
    let e2e = m.median_ms(|t| t.wall);
    let d = PyDict::new(py);
    d.set_item("kernel", kernel)?;
    d.set_item("tokens", tokens)?;
    d.set_item("dtype", element.name())?;
    d.set_item("pass", m.pass())?;
    d.set_item("kernel_ms", med)?;
    d.set_item("kernel_ms_min", min)?;
    d.set_item("kernel_ms_max", max)?;
    let timer = m.kernel.as_ref().map(|k| format!("{:?}", k.timer));
    d.set_item("kernel_timer", timer.unwrap_or_default())?;
    d.set_item("end_to_end_ms", e2e)?;
    d.set_item("tokens_per_s", tokens as f64 / (e2e / 1e3))?;
    d.set_item("gpu_gflops", shape.gflops(med / 1e3))?;
    d.set_item("max_abs_err", m.report.max_abs_err())?;
    Ok(d)
}

/// The check of a measurement: its errors, tolerance and verdict.
pub fn check_dict<'py>(
    py: Python<'py>,
    m: &Measurement,
    kernel: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let c = CheckRecord::of(m);
    let d = PyDict::new(py);
    d.set_item("kernel", kernel)?;
    d.set_item("pass", c.pass)?;
    d.set_item("max_abs_err", c.max_abs_err)?;
    d.set_item("max_rel_err", c.max_rel_err)?;
    d.set_item("rel_l2_err", c.rel_l2_err)?;
    d.set_item("precision_max_abs_err", c.precision_max_abs_err)?;
    d.set_item("precision_max_rel_err", c.precision_max_rel_err)?;
    d.set_item("precision_rel_l2_err", c.precision_rel_l2_err)?;
    d.set_item("atol", c.atol)?;
    d.set_item("rtol", c.rtol)?;
    d.set_item("ttol", c.ttol)?;
    d.set_item("sound_ttol", c.sound_ttol)?;
    // Q's and K's, which the epilogue's own rounding adds to (ttol's without one).
    d.set_item("qk_ttol", m.report.q.tolerance.terms)?;
    d.set_item("flagged", c.flagged)?;
    d.set_item("worst_flagged", c.worst_flagged)?;
    d.set_item("decided_by", c.decided_by)?;
    d.set_item("checked_rows", m.checked_rows)?;
    d.set_item(
        "report",
        qkv_wgpu::records::check_lines(&m.report).join("\n"),
    )?;
    Ok(d)
}
