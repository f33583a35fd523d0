//! `qkv_wgpu._native`: the projector from Python (the package `qkv_wgpu` wraps it; see its
//! docstrings). NumPy arrays in and out; the GIL released while the GPU works and while the
//! host converts, checks or tunes, so other Python threads run.

use numpy::{PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use qkv_wgpu::measure::{validate_then_time, CheckRows, MeasureOptions, Measurement, XSource};
use qkv_wgpu::records::CheckRecord;
use qkv_wgpu::{
    AdapterFilter, AdapterSummary, BackendChoice, ChunkOptions, ElementType, Error, FusedWeights,
    GpuContext, KernelConfig, KernelSpec, OutputLayout, Projection, QkvShape,
};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

create_exception!(
    _native,
    GpuError,
    PyRuntimeError,
    "A GPU failed: no adapter, a device error, a lost device, a limit past the device's."
);

/// The library's error as the Python exception that fits it: `ValueError` for shapes, types
/// and bad input, `OSError` for files, `GpuError` for the device. Settings are named as the
/// keyword arguments are.
fn py_err(e: Error) -> PyErr {
    let names = [("chunk_tokens", "chunk_tokens"), ("heads", "heads")];
    let message = qkv_wgpu::error::name_settings(&e.to_string(), &names);
    match e {
        Error::Shape(_) | Error::Input(_) => PyValueError::new_err(message),
        Error::Io { .. } => PyOSError::new_err(message),
        _ => GpuError::new_err(message),
    }
}

/// The adapter filter of `backend` and `adapter` (a name substring); the environment's
/// `QKV_BACKEND` / `QKV_ADAPTER` where both are None.
fn filter(backend: Option<&str>, adapter: Option<&str>) -> PyResult<AdapterFilter> {
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
fn context(filter: &AdapterFilter) -> Result<&'static GpuContext, Error> {
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

fn summary_dict<'py>(py: Python<'py>, s: &AdapterSummary) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &s.name)?;
    d.set_item("backend", &s.backend)?;
    d.set_item("type", &s.device_type)?;
    d.set_item("driver", &s.driver)?;
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
fn adapters<'py>(
    py: Python<'py>,
    backend: Option<&str>,
    adapter: Option<&str>,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let f = filter(backend, adapter)?;
    let found = py.detach(|| qkv_wgpu::list_adapters(&f));
    found.iter().map(|s| summary_dict(py, s)).collect()
}

/// The kernel a projector runs: autotuned per shape, or named.
#[derive(Clone, Copy)]
enum KernelChoice {
    Auto,
    Named(KernelConfig),
}

/// Q, K, V as NumPy arrays.
type Qkv<'py> = (
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray2<f32>>,
);

/// A library projector made for one number of tokens.
struct Made {
    tokens: u32,
    projector: qkv_wgpu::Projector<'static>,
}

/// The fused projection of X [tokens, d_model] through Wq, Wk, Wv (and biases) on the GPU.
#[pyclass(module = "qkv_wgpu._native")]
struct Projector {
    ctx: &'static GpuContext,
    weights: FusedWeights,
    element: ElementType,
    kernel: KernelChoice,
    made: Mutex<Option<Made>>,
}

/// A 2-D float32 weight as in-out [d_model, width]: as given, or transposed from PyTorch's
/// Linear [width, d_model] (`out_in`).
fn in_out(w: &PyReadonlyArray2<'_, f32>, out_in: bool, name: &str) -> PyResult<(Vec<f32>, u32)> {
    let [rows, cols] = [w.shape()[0], w.shape()[1]];
    let data = w
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} is not C-contiguous")))?;
    if !out_in {
        return Ok((data.to_vec(), cols as u32));
    }
    let mut t = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = data[r * cols + c];
        }
    }
    Ok((t, rows as u32))
}

#[pymethods]
impl Projector {
    #[new]
    #[pyo3(signature = (wq, wk, wv, bq=None, bk=None, bv=None, *, layout="in-out", dtype="f32", kernel="auto", backend=None, adapter=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        wq: PyReadonlyArray2<'_, f32>,
        wk: PyReadonlyArray2<'_, f32>,
        wv: PyReadonlyArray2<'_, f32>,
        bq: Option<PyReadonlyArray1<'_, f32>>,
        bk: Option<PyReadonlyArray1<'_, f32>>,
        bv: Option<PyReadonlyArray1<'_, f32>>,
        layout: &str,
        dtype: &str,
        kernel: &str,
        backend: Option<&str>,
        adapter: Option<&str>,
    ) -> PyResult<Self> {
        let out_in = match layout {
            "in-out" => false,
            "out-in" => true,
            other => {
                return Err(PyValueError::new_err(format!(
                    "layout '{other}': give 'in-out' ([d_model, width], GPT-2's Conv1D) or \
                     'out-in' ([width, d_model], PyTorch's Linear)"
                )))
            }
        };
        let element: ElementType = dtype.parse().map_err(PyValueError::new_err)?;
        let kernel = match kernel.trim() {
            "auto" => KernelChoice::Auto,
            k => KernelChoice::Named(k.parse().map_err(PyValueError::new_err)?),
        };
        let d_model = if out_in { wq.shape()[1] } else { wq.shape()[0] } as u32;
        let mats = [
            in_out(&wq, out_in, "wq")?,
            in_out(&wk, out_in, "wk")?,
            in_out(&wv, out_in, "wv")?,
        ];
        let biases = [bq, bk, bv];
        let given = biases.iter().filter(|b| b.is_some()).count();
        if given != 0 && given != 3 {
            return Err(PyValueError::new_err(
                "give all three biases (bq, bk, bv) or none",
            ));
        }
        let bias_slices: Vec<Option<&[f32]>> = biases
            .iter()
            .map(|b| b.as_ref().map(|b| b.as_slice()).transpose())
            .collect::<Result<_, _>>()
            .map_err(|_| PyValueError::new_err("a bias is not C-contiguous"))?;
        let p = |i: usize| Projection {
            w: &mats[i].0,
            width: mats[i].1,
            bias: bias_slices[i],
        };
        let weights = FusedWeights::fuse(d_model, p(0), p(1), p(2)).map_err(py_err)?;
        let f = filter(backend, adapter)?;
        let ctx = py.detach(|| context(&f)).map_err(py_err)?;
        Ok(Self {
            ctx,
            weights,
            element,
            kernel,
            made: Mutex::new(None),
        })
    }

    /// Columns of X.
    #[getter]
    fn d_model(&self) -> u32 {
        self.weights.d_model
    }

    /// The adapter the projector runs on, as `adapters()` describes it.
    #[getter]
    fn adapter<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        summary_dict(py, &self.ctx.summary)
    }

    /// Q, K, V of X [tokens, d_model] (C-contiguous float32), as float32 arrays.
    fn __call__<'py>(&self, py: Python<'py>, x: PyReadonlyArray2<'py, f32>) -> PyResult<Qkv<'py>> {
        let tokens = x.shape()[0];
        let xs = self.x_slice(&x)?;
        let out = py
            .detach(|| {
                finite(xs, self.weights.d_model)?;
                self.with_projector(tokens, |p| p.run(xs))
            })
            .map_err(py_err)?;
        let shape = self.weights.shape(tokens as u32).map_err(py_err)?;
        let arr = |v: Vec<f32>, width: u32| -> PyResult<Bound<'py, PyArray2<f32>>> {
            numpy::PyArray1::from_vec(py, v).reshape([tokens, width as usize])
        };
        Ok((
            arr(out.q, shape.q_width)?,
            arr(out.k, shape.kv_width)?,
            arr(out.v, shape.kv_width)?,
        ))
    }

    /// Projects X and checks every row against the f64 reference of the inputs as the GPU
    /// read them: a dict with `pass`, the errors (`max_abs_err`, `max_rel_err`,
    /// `rel_l2_err`, and for a half type the `precision_*` cost), the tolerance (`atol`,
    /// `rtol`, `ttol`) and `kernel`.
    fn check<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let opts = MeasureOptions {
            runs: 0,
            kernel_repeats: 0,
            check: CheckRows::All,
            precision_cost: true,
            ..MeasureOptions::default()
        };
        let (m, kernel) = self.measure(py, &x, &opts)?;
        check_dict(py, &m, &kernel)
    }

    /// Checks, then times the projection of X: `repeats` end-to-end runs after an untimed
    /// first one (each checked), then, if every run passed, `repeats` back-to-back kernel
    /// dispatches. A dict (one row of a pandas DataFrame): `kernel`, `tokens`, `pass`,
    /// `kernel_ms` (median; `kernel_ms_min`, `kernel_ms_max`; NaN when the check failed),
    /// `timer` ("GpuTimestamp" or "Host"), `end_to_end_ms` (median), `tokens_per_s`,
    /// `gflops`, `max_abs_err`.
    #[pyo3(signature = (x, repeats=5))]
    fn time<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        repeats: u32,
    ) -> PyResult<Bound<'py, PyDict>> {
        if !(1..=qkv_wgpu::projector::MAX_REPEATS).contains(&repeats) {
            return Err(PyValueError::new_err(format!(
                "repeats must be 1 to {}, not {repeats}",
                qkv_wgpu::projector::MAX_REPEATS
            )));
        }
        let tokens = x.shape()[0];
        let opts = MeasureOptions {
            runs: repeats,
            kernel_repeats: repeats,
            check: CheckRows::All,
            stop_at_failure: true,
            ..MeasureOptions::default()
        };
        let (m, kernel) = self.measure(py, &x, &opts)?;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let (med, min, max) = m
            .kernel
            .as_ref()
            .map_or((f64::NAN, f64::NAN, f64::NAN), |k| {
                let (a, b, c) = k.spread();
                (ms(a), ms(b), ms(c))
            });
        let shape = self.weights.shape(tokens as u32).map_err(py_err)?;
        let e2e = m.median_ms(|t| t.wall);
        let d = PyDict::new(py);
        d.set_item("kernel", kernel)?;
        d.set_item("tokens", tokens)?;
        d.set_item("pass", m.pass())?;
        d.set_item("kernel_ms", med)?;
        d.set_item("kernel_ms_min", min)?;
        d.set_item("kernel_ms_max", max)?;
        d.set_item("timer", m.kernel.as_ref().map(|k| format!("{:?}", k.timer)))?;
        d.set_item("end_to_end_ms", e2e)?;
        d.set_item("tokens_per_s", tokens as f64 / (e2e / 1e3))?;
        d.set_item("gflops", shape.gflops(med / 1e3))?;
        d.set_item("max_abs_err", m.report.max_abs_err())?;
        Ok(d)
    }
}

impl Projector {
    /// X's data, checked against d_model.
    fn x_slice<'a>(&self, x: &'a PyReadonlyArray2<'_, f32>) -> PyResult<&'a [f32]> {
        let [tokens, d] = [x.shape()[0], x.shape()[1]];
        if d != self.weights.d_model as usize {
            return Err(PyValueError::new_err(format!(
                "X has {d} columns; the weights take d_model {}",
                self.weights.d_model
            )));
        }
        if tokens == 0 {
            return Err(PyValueError::new_err(
                "X has no rows: there is nothing to project",
            ));
        }
        x.as_slice()
            .map_err(|_| PyValueError::new_err("X is not C-contiguous"))
    }

    /// Runs `f` on the library projector for `tokens` rows, made (and its kernel chosen or
    /// tuned) on first use of that number of tokens. One projection at a time per
    /// projector: a second thread waits for the first.
    fn with_projector<T>(
        &self,
        tokens: usize,
        f: impl FnOnce(&mut qkv_wgpu::Projector<'static>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let tokens = u32::try_from(tokens)
            .map_err(|_| Error::Shape(format!("tokens = {tokens} is too large")))?;
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        if made.as_ref().is_none_or(|m| m.tokens != tokens) {
            *made = None;
            let shape: QkvShape = self.weights.shape(tokens)?;
            let spec = self.spec(&shape)?;
            let mut projector = qkv_wgpu::Projector::with_spec(
                self.ctx,
                shape,
                spec,
                OutputLayout::Tokens,
                &ChunkOptions::default(),
            )?;
            projector.set_weights(&self.weights)?;
            *made = Some(Made { tokens, projector });
        }
        f(&mut made.as_mut().expect("made above").projector)
    }

    /// The spec for `shape`: the named kernel, or the one autotuned for this adapter and
    /// shape class (cached like the CLI's).
    fn spec(&self, shape: &QkvShape) -> Result<KernelSpec, Error> {
        match self.kernel {
            KernelChoice::Named(c) => {
                KernelSpec::resolve(c, self.element, &self.ctx.summary).map_err(Error::Input)
            }
            KernelChoice::Auto => {
                let opts = qkv_wgpu::tune::TuneOptions {
                    element: self.element,
                    ..Default::default()
                };
                Ok(qkv_wgpu::tune::choose(self.ctx, shape, &opts)?.spec)
            }
        }
    }

    /// [`validate_then_time`] on X (checked: its width, contiguous, finite) with the GIL
    /// released; the measurement and the kernel that ran.
    fn measure(
        &self,
        py: Python<'_>,
        x: &PyReadonlyArray2<'_, f32>,
        opts: &MeasureOptions<'_>,
    ) -> PyResult<(Measurement, String)> {
        let tokens = x.shape()[0];
        let xs = self.x_slice(x)?;
        let weights = &self.weights;
        py.detach(|| {
            finite(xs, weights.d_model)?;
            self.with_projector(tokens, |p| {
                let m = validate_then_time(p, weights, XSource::Given(xs), opts, |_| {})?;
                Ok((m, p.config().to_string()))
            })
        })
        .map_err(py_err)
    }
}

/// An error naming the first NaN or infinity of X [.., d_model], if any: a projection of it
/// would carry it into Q, K and V.
fn finite(x: &[f32], d_model: u32) -> Result<(), Error> {
    match x.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => {
            let d = d_model.max(1) as usize;
            Err(Error::Input(format!(
                "X[{}, {}] is {}: X must hold finite numbers (NaN or Inf would be carried \
                 into Q, K and V)",
                i / d,
                i % d,
                x[i]
            )))
        }
    }
}

fn check_dict<'py>(py: Python<'py>, m: &Measurement, kernel: &str) -> PyResult<Bound<'py, PyDict>> {
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
    d.set_item("checked_rows", m.checked_rows)?;
    d.set_item(
        "report",
        qkv_wgpu::records::check_lines(&m.report).join("\n"),
    )?;
    Ok(d)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("GpuError", m.py().get_type::<GpuError>())?;
    m.add_function(wrap_pyfunction!(adapters, m)?)?;
    m.add_class::<Projector>()?;
    Ok(())
}
