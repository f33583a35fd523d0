//! `qkv_wgpu.bench`: the sweep `qkv bench` runs, returning its rows as the dicts
//! `qkv bench --json` prints (the library's `BenchRow`, through serde).

use crate::memory::{bytes, check_bytes, gb, guard};
use crate::{context, filter, py_err};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use qkv_wgpu::bench::{bench_row, BenchJob, BenchOptions, BenchRow, CpuBaseline, CPU_MAX_TOKENS};
use qkv_wgpu::measure::CheckRows;
use qkv_wgpu::presets::{preset, token_sweep, Preset, PRESETS};
use qkv_wgpu::{
    random_weights, ChunkOptions, ElementType, Error, GpuContext, KernelConfig, KernelSpec,
    QkvShape,
};

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

/// The shapes to sweep: named presets, or the custom one.
fn shapes(
    shape: Option<&Bound<'_, PyAny>>,
    custom: Option<(u32, u32, u32, bool)>,
) -> PyResult<Vec<Preset>> {
    if let Some((d_model, q_width, kv_width, bias)) = custom {
        if shape.is_some() {
            return Err(PyValueError::new_err(
                "give a named shape or a custom one (d_model, q_width), not both",
            ));
        }
        return Ok(vec![Preset {
            name: "custom",
            model: "custom",
            d_model,
            q_width,
            kv_width,
            bias,
            tokens_unit: 0,
        }]);
    }
    let names = strings(shape, "shape", "gpt2")?;
    if names == ["all"] {
        return Ok(PRESETS.to_vec());
    }
    names
        .iter()
        .map(|n| preset(n).map_err(PyValueError::new_err))
        .collect()
}

/// The specs to run on `shape` in `element`: each named configuration, or the autotuned one.
fn specs(
    ctx: &GpuContext,
    shape: &QkvShape,
    kernels: &[String],
    element: ElementType,
) -> Result<Vec<KernelSpec>, Error> {
    if kernels == ["auto"] {
        let opts = qkv_wgpu::tune::TuneOptions {
            element,
            ..Default::default()
        };
        return Ok(vec![qkv_wgpu::tune::choose(ctx, shape, &opts)?.spec]);
    }
    kernels
        .iter()
        .map(|k| {
            let c: KernelConfig = k.parse().map_err(Error::Input)?;
            KernelSpec::resolve(c, element, &ctx.summary).map_err(Error::Input)
        })
        .collect()
}

/// A `MemoryError` unless one row of the sweep fits in the memory left: the shape's weights
/// (and their rounding to a half type, where `half`), the CPU baseline's X and outputs
/// (where `cpu`), and the rows checked with their reference.
fn guard_row(name: &str, shape: &QkvShape, cpu: bool, half: bool) -> PyResult<()> {
    let (t, d, n) = (
        shape.tokens as u64,
        shape.d_model as u64,
        shape.n_out() as u64,
    );
    let weights = bytes(d * n + n, 4).saturating_mul(if half { 2 } else { 1 });
    let baseline = match cpu {
        true => bytes(t.min(CPU_MAX_TOKENS as u64), (d + n) * 4),
        false => 0,
    };
    let checked = match CheckRows::default_for(shape) {
        CheckRows::All => t,
        // About this many, and both ends of every chunk.
        CheckRows::Sample(rows) => t.min(2 * rows as u64),
    };
    let rows = check_bytes(checked, d, n);
    let need = weights.saturating_add(baseline).saturating_add(rows);
    let (tokens, q, kv) = (shape.tokens, shape.q_width, shape.kv_width);
    guard(need, |need, free| {
        format!(
            "bench of {name} (d_model {d}, q_width {q}, kv_width {kv}) at {tokens} token(s) \
             needs about {need} (weights {}, CPU baseline {}, rows checked with their float64 \
             reference {}) and this process has {free} free: a smaller shape, fewer tokens \
             (tokens=, max_tokens=), or cpu=False",
            gb(weights),
            gb(baseline),
            gb(rows)
        )
    })
}

/// `qkv bench` from Python: every named shape (or the custom one) at each token count, in
/// each storage type, with each kernel configuration (or the autotuned one), checked then
/// timed; a list of dicts, the rows `qkv bench --json` prints (a pandas DataFrame takes it
/// as it is).
#[pyfunction]
#[pyo3(signature = (shape=None, *, tokens=None, max_tokens=1024, dtype=None, kernel=None, repeats=3, cpu=true, seed=42, d_model=None, q_width=None, kv_width=None, bias=false, chunk_tokens=None, backend=None, adapter=None))]
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
) -> PyResult<Bound<'py, PyAny>> {
    if !(1..=1000).contains(&repeats) {
        return Err(PyValueError::new_err(format!(
            "repeats must be 1 to 1000, not {repeats}"
        )));
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
    let loads = shapes(shape, custom)?;
    let dtypes: Vec<ElementType> = strings(dtype, "dtype", "f32")?
        .iter()
        .map(|d| d.parse().map_err(PyValueError::new_err))
        .collect::<PyResult<_>>()?;
    let kernels = strings(kernel, "kernel", "auto")?;
    let f = filter(backend, adapter)?;
    // Every row's shape made and its memory guarded before any work.
    let half = dtypes.iter().any(|e| e.is_half());
    let mut sweep = Vec::new();
    for p in &loads {
        let counts = match &tokens {
            Some(t) => t.clone(),
            None => token_sweep(p.tokens_unit, max_tokens.max(p.tokens_unit)),
        };
        for t in counts {
            let shape =
                QkvShape::new(t, p.d_model, p.q_width, p.kv_width, p.bias).map_err(py_err)?;
            guard_row(p.name, &shape, cpu, half)?;
            sweep.push((p.name, shape));
        }
    }
    let opts = BenchOptions {
        repeats,
        check: None,
        chunking: ChunkOptions {
            chunk_tokens,
            ..ChunkOptions::default()
        },
    };
    // Ctrl-C, looked for between rows (Python's handlers run with the GIL taken a moment).
    let mut signal = None;
    let result = py.detach(|| -> Result<Vec<BenchRow>, Error> {
        let ctx = context(&f)?;
        let (peak, _) = qkv_wgpu::peak::cached(&ctx.summary, None);
        let mut rows = Vec::new();
        for (name, shape) in &sweep {
            let w = random_weights(shape, seed);
            let cpu = cpu.then(|| CpuBaseline::measure(shape, seed, &w, repeats));
            for &element in &dtypes {
                for spec in specs(ctx, shape, &kernels, element)? {
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        signal = Some(e);
                        return Err(Error::Interrupted {
                            done: 0,
                            tokens: shape.tokens,
                        });
                    }
                    let job = BenchJob {
                        name,
                        shape,
                        weights: &w,
                        seed,
                        cpu,
                        peak: peak.as_ref(),
                    };
                    rows.push(bench_row(ctx, spec, &job, &opts, |_| {})?.0);
                }
            }
        }
        Ok(rows)
    });
    if let Some(e) = signal {
        return Err(e);
    }
    let rows = result.map_err(py_err)?;
    pythonize::pythonize(py, &rows).map_err(|e| PyValueError::new_err(e.to_string()))
}
