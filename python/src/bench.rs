//! `qkv_wgpu.bench`: the library's sweep (`qkv_wgpu::bench::sweep`, the one `qkv bench`
//! runs), returning its rows as the dicts `qkv bench --json` prints (the library's
//! `BenchRow`, through serde).

use crate::errors::py_err;
use crate::gpu::{context, filter};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use qkv_wgpu::bench::{BenchOptions, Sweep, SweepEvent, SweepShapes};
use qkv_wgpu::tune::KernelChoice;
use qkv_wgpu::{ChunkOptions, ElementType, Error};

/// One string (comma-separated) or a list of them, as a list; `default` where None.
fn strings(o: Option<&Bound<'_, PyAny>>, what: &str, default: &str) -> PyResult<Vec<String>> {
    let Some(o) = o else {
        return Ok(vec![default.to_string()]);
    };
    if let Ok(s) = o.extract::<String>() {
        return Ok(s.split(',').map(|p| p.trim().to_string()).collect());
    }
    o.extract::<Vec<String>>()
        .map_err(|_| PyValueError::new_err(format!("{what}: give a string or a list of strings")))
}

/// `kernel=`: "auto", configurations as `qkv bench --kernel` takes them (one string, commas
/// inside a configuration's parentheses its own), or a list of them; "auto" where None.
fn kernels(o: Option<&Bound<'_, PyAny>>) -> PyResult<KernelChoice> {
    let list = match o {
        None => "auto".to_string(),
        Some(o) => match o.extract::<String>() {
            Ok(s) => s,
            Err(_) => o
                .extract::<Vec<String>>()
                .map_err(|_| PyValueError::new_err("kernel: give a string or a list of strings"))?
                .join(","),
        },
    };
    KernelChoice::parse(&list).map_err(PyValueError::new_err)
}

/// The shapes to sweep: named presets, or the custom one (d_model, q_width, kv_width, bias).
fn shapes(
    shape: Option<&Bound<'_, PyAny>>,
    custom: Option<(u32, u32, u32, bool)>,
) -> PyResult<SweepShapes> {
    match custom {
        Some(_) if shape.is_some() => Err(PyValueError::new_err(
            "give a named shape or a custom one (d_model, q_width), not both",
        )),
        Some((d_model, q_width, kv_width, bias)) => Ok(SweepShapes::Custom {
            d_model,
            q_width,
            kv_width,
            bias,
        }),
        None => Ok(SweepShapes::Named(strings(shape, "shape", "gpt2")?)),
    }
}

/// `qkv bench` from Python: every named shape (or the custom one) at each token count, in
/// each storage type, with each kernel configuration (or the autotuned one), checked then
/// timed; a list of dicts, the rows `qkv bench --json` prints (a pandas DataFrame takes it
/// as it is).
#[pyfunction]
#[pyo3(signature = (shape=None, *, tokens=None, max_tokens=1024, dtype=None, kernel=None, repeats=3, cpu=true, seed=42, d_model=None, q_width=None, kv_width=None, bias=false, chunk_tokens=None, backend=None, adapter=None, weight_type=None))]
#[allow(clippy::too_many_arguments)]
pub fn bench<'py>(
    py: Python<'py>,
    shape: Option<&Bound<'py, PyAny>>,
    tokens: Option<Vec<u32>>,
    max_tokens: u32,
    dtype: Option<&Bound<'py, PyAny>>,
    kernel: Option<&Bound<'py, PyAny>>,
    repeats: u32,
    cpu: bool,
    seed: u64,
    d_model: Option<u32>,
    q_width: Option<u32>,
    kv_width: Option<u32>,
    bias: bool,
    chunk_tokens: Option<u32>,
    backend: Option<&str>,
    adapter: Option<&str>,
    weight_type: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let weight_type = weight_type
        .map(|t| qkv_wgpu::quant::WeightType::parse_parts(t).map_err(PyValueError::new_err))
        .transpose()?;
    if !(1..=1000).contains(&repeats) {
        return Err(PyValueError::new_err(format!(
            "repeats must be 1 to 1000, not {repeats}"
        )));
    }
    if tokens.as_ref().is_some_and(Vec::is_empty) {
        return Err(PyValueError::new_err(
            "tokens: give at least one token count, or None for the default sweep",
        ));
    }
    let custom = match (d_model, q_width) {
        (Some(d), Some(q)) => Some((d, q, kv_width.unwrap_or(q), bias)),
        (None, None) if kv_width.is_none() => None,
        _ => {
            return Err(PyValueError::new_err(
                "a custom shape takes d_model and q_width (kv_width defaults to q_width)",
            ))
        }
    };
    let chunking = ChunkOptions {
        chunk_tokens,
        ..ChunkOptions::default()
    };
    chunking.check().map_err(py_err)?;
    let shapes = shapes(shape, custom)?;
    let dtypes: Vec<ElementType> = strings(dtype, "dtype", "f32")?
        .iter()
        .map(|d| d.parse().map_err(PyValueError::new_err))
        .collect::<PyResult<_>>()?;
    let kernels = kernels(kernel)?;
    let f = filter(backend, adapter)?;
    // Ctrl-C, looked for before each row (Python's handlers run with the GIL taken a moment).
    let mut signal = None;
    let result = py.detach(|| {
        let ctx = context(&f)?;
        let (peak, _) = qkv_wgpu::peak::cached(&ctx.summary, None);
        let sweep = Sweep {
            shapes,
            tokens: tokens.unwrap_or_default(),
            max_tokens,
            dtypes,
            weight_type,
            kernels,
            force_tune: false,
            seed,
            cpu,
            peak: peak.as_ref(),
            options: BenchOptions {
                repeats,
                check: None,
                chunking,
            },
        };
        qkv_wgpu::bench::sweep(ctx, &sweep, |event| match event {
            SweepEvent::Row(job, _) => match Python::attach(|py| py.check_signals()) {
                Ok(()) => Ok(()),
                Err(e) => {
                    signal = Some(e);
                    Err(Error::Interrupted {
                        done: 0,
                        tokens: job.shape.tokens,
                    })
                }
            },
            _ => Ok(()),
        })
    });
    if let Some(e) = signal {
        return Err(e);
    }
    let rows = result.map_err(py_err)?;
    pythonize::pythonize(py, &rows).map_err(|e| PyValueError::new_err(e.to_string()))
}
