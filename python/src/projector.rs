//! `qkv_wgpu.Projector`: weights fused once, then called on X. Each call streams X through
//! the library's projector (made once per X shape, its kernel named or autotuned), straight
//! from the caller's array into GPU staging memory and from the read-back chunks into the
//! output arrays, with the GIL released; between chunks it looks for Ctrl-C.

use crate::arrays::{take_chunk, Input, OutType, Outputs};
use crate::dicts::{check_dict, time_dict};
use crate::epilogue;
use crate::errors::py_err;
use crate::gpu::{context, filter, summary_dict};
use crate::settings::{settings, Settings, XDims};
use crate::weights::{fuse_arrays, load_checkpoint, source};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use qkv_wgpu::epilogue::{Epilogue, Heads, Positions};
use qkv_wgpu::host::{available_memory, check_room};
use qkv_wgpu::io::checkpoint::{WeightLayout, WeightRequest};
use qkv_wgpu::measure::{validate_then_time, CheckRows, MeasureOptions, Measurement, XSource};
use qkv_wgpu::projector::ChunkOutput;
use qkv_wgpu::quant::WeightType;
use qkv_wgpu::tune::TuneOptions;
use qkv_wgpu::{
    Elements, ElementsMut, Error, FusedWeights, GpuContext, HeadSplit, KernelSpec, OutputLayout,
    QkvShape,
};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// A library projector made for one X shape.
struct Made {
    dims: XDims,
    projector: qkv_wgpu::Projector<'static>,
}

/// The fused projection of X [tokens, d_model] through Wq, Wk, Wv (and biases) on the GPU.
///
/// Locks: `made` is held for a whole projection, so it is only ever taken with the GIL
/// released (a run takes the GIL between chunks to look for Ctrl-C: a thread that waited
/// for `made` holding the GIL would deadlock with it). The properties read fields that never
/// change, or `kernel`, a lock held only for a moment and likewise taken with the GIL
/// released.
#[pyclass(module = "qkv_wgpu._native")]
pub struct Projector {
    ctx: &'static GpuContext,
    weights: FusedWeights,
    settings: Settings,
    made: Mutex<Option<Made>>,
    /// The configuration of the projector last made (None before the first call).
    kernel: Mutex<Option<String>>,
    /// The checkpoint the weights came from (None: arrays).
    source: Option<std::path::PathBuf>,
    /// RoPE and QK-norm after the projection, as the checkpoint's model applies them
    /// (`rope=`, `qk_norm=`), positions from 0 until a call says otherwise.
    epilogue: Option<(Epilogue, Heads)>,
    /// The shard manifests' job key per output format, computed once (it hashes every
    /// weight): a lock held only for a moment, taken with the GIL released.
    job_keys: Mutex<Vec<(qkv_wgpu::io::outputs::OutFormat, String)>>,
}

#[pymethods]
impl Projector {
    #[new]
    #[pyo3(signature = (wq, wk, wv, bq=None, bk=None, bv=None, *, layout="in-out", dtype="f32", kernel="auto", heads=None, kv_heads=None, head_layout="tokens", chunk_tokens=None, out_dtype=None, backend=None, adapter=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        wq: &Bound<'_, PyAny>,
        wk: &Bound<'_, PyAny>,
        wv: &Bound<'_, PyAny>,
        bq: Option<&Bound<'_, PyAny>>,
        bk: Option<&Bound<'_, PyAny>>,
        bv: Option<&Bound<'_, PyAny>>,
        layout: &str,
        dtype: &str,
        kernel: &str,
        heads: Option<u32>,
        kv_heads: Option<u32>,
        head_layout: &str,
        chunk_tokens: Option<u32>,
        out_dtype: Option<&str>,
        backend: Option<&str>,
        adapter: Option<&str>,
    ) -> PyResult<Self> {
        let settings = settings(
            dtype,
            kernel,
            heads,
            kv_heads,
            head_layout,
            chunk_tokens,
            out_dtype,
        )?;
        let weights = fuse_arrays([wq, wk, wv], [bq, bk, bv], layout)?;
        Self::made_of(py, weights, settings, backend, adapter)
    }

    /// A projector of one attention layer's weights read from a safetensors checkpoint, as
    /// `qkv project` reads them: found under `prefix` by the naming conventions of BERT,
    /// Llama and GPT-2, or named (`names`: one fused matrix, or Wq, Wk, Wv; `bias_names`
    /// likewise). `weight_layout` ("out-in" or "in-out") where neither a family's
    /// convention nor `d_model` settles it; `heads`/`kv_heads` also split a fused matrix
    /// with grouped K/V. Weights holding NaN or Inf are refused.
    ///
    /// A GGUF file (told by its magic) is read by llama.cpp's names under `prefix`
    /// (`blk.0`): `attn_q`/`attn_k`/`attn_v` or `attn_qkv`, each matrix in its own format
    /// (F32, F16, BF16 or a block format, kept in its blocks on the GPU), the heads from the
    /// file's metadata unless given; `original_order=True` puts Q's and K's rows back in the
    /// model's order where llama.cpp's converter reordered them (Llama-family files).
    /// `weight_type` ("q4_0", or "q4_k,q4_k,q6_k" for Q, K, V) quantizes the weights on
    /// load with llama.cpp's reference quantizers.
    #[staticmethod]
    #[pyo3(signature = (path, prefix=None, *, names=None, bias_names=None, weight_layout=None, d_model=None, dtype="f32", kernel="auto", heads=None, kv_heads=None, head_layout="tokens", chunk_tokens=None, out_dtype=None, backend=None, adapter=None, original_order=false, weight_type=None, rope=false, qk_norm=false, config=None))]
    #[allow(clippy::too_many_arguments)]
    fn from_checkpoint(
        py: Python<'_>,
        path: std::path::PathBuf,
        prefix: Option<String>,
        names: Option<&Bound<'_, PyAny>>,
        bias_names: Option<&Bound<'_, PyAny>>,
        weight_layout: Option<&str>,
        d_model: Option<u32>,
        dtype: &str,
        kernel: &str,
        heads: Option<u32>,
        kv_heads: Option<u32>,
        head_layout: &str,
        chunk_tokens: Option<u32>,
        out_dtype: Option<&str>,
        backend: Option<&str>,
        adapter: Option<&str>,
        original_order: bool,
        weight_type: Option<&str>,
        rope: bool,
        qk_norm: bool,
        config: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        let types = weight_type
            .map(|t| WeightType::parse_parts(t).map_err(PyValueError::new_err))
            .transpose()?;
        // A GGUF file gives the heads from its metadata before the settings are made.
        let (gguf, heads, kv_heads) = if qkv_wgpu::io::gguf::is_gguf(&path) {
            if names.is_some() || bias_names.is_some() || weight_layout.is_some() {
                return Err(PyValueError::new_err(
                    "a GGUF file's layer is found by prefix= ('blk.0'); names=, bias_names= \
                     and weight_layout= are for safetensors checkpoints",
                ));
            }
            let Some(prefix) = &prefix else {
                return Err(PyValueError::new_err(
                    "a GGUF file's layer is found by prefix= ('blk.0', 'blk.1', ...)",
                ));
            };
            let (weights, (file_heads, file_kv)) =
                load_gguf_layer(py, &path, prefix, original_order, d_model)?;
            match heads {
                Some(h) => (Some(weights), Some(h), kv_heads),
                None => (Some(weights), file_heads, kv_heads.or(file_kv)),
            }
        } else if original_order {
            return Err(PyValueError::new_err(
                "original_order=True applies to GGUF files, whose converter reorders Q and K",
            ));
        } else {
            (None, heads, kv_heads)
        };
        let weights = match gguf {
            Some(w) => w,
            None => {
                let layout = weight_layout
                    .map(|l| l.parse::<WeightLayout>().map_err(PyValueError::new_err))
                    .transpose()?;
                let request = WeightRequest {
                    source: source(prefix.clone(), names, bias_names)?,
                    layout,
                    heads,
                    kv_heads,
                };
                load_checkpoint(py, &path, &request, d_model)?
            }
        };
        let epilogue = epilogue::from_files(
            py,
            (&path, prefix.as_deref()),
            (weights.q_width, weights.kv_width),
            (rope, qk_norm, config),
            (original_order, (heads, kv_heads)),
        )?;
        // The model's files give the heads where they give the epilogue.
        let files = epilogue.as_ref().map(|(_, h)| (h.heads, h.kv_heads));
        let settings = settings(
            dtype,
            kernel,
            heads.or(files.map(|f| f.0)),
            kv_heads.or(files.map(|f| f.1)),
            head_layout,
            chunk_tokens,
            out_dtype,
        )?;
        let weights = quantized(py, weights, types, settings.element)?;
        let mut made = Self::made_of(py, weights, settings, backend, adapter)?;
        made.source = Some(path);
        made.epilogue = epilogue;
        Ok(made)
    }

    /// Columns of X.
    #[getter]
    fn d_model(&self) -> u32 {
        self.weights.d_model
    }

    /// Columns of Q.
    #[getter]
    fn q_width(&self) -> u32 {
        self.weights.q_width
    }

    /// Columns of K and of V.
    #[getter]
    fn kv_width(&self) -> u32 {
        self.weights.kv_width
    }

    /// The storage type on the GPU: "f32", "f16" or "bf16".
    #[getter]
    fn dtype(&self) -> &'static str {
        self.settings.element.name()
    }

    /// The adapter the projector runs on, as `adapters()` describes it.
    #[getter]
    fn adapter<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        summary_dict(py, &self.ctx.summary)
    }

    /// The RoPE and QK-norm applied to Q and K after the projection, in words (None
    /// without them).
    #[getter]
    fn epilogue(&self) -> Option<String> {
        self.epilogue.as_ref().map(|(e, _)| e.to_string())
    }

    /// Where the RoPE and QK-norm of the last call ran: fused into the kernel's store, or a
    /// pass after it and why (None without them, or before the first call).
    #[getter]
    fn epilogue_plan(&self, py: Python<'_>) -> Option<String> {
        py.detach(|| {
            let made = self.made.lock().unwrap_or_else(|p| p.into_inner());
            made.as_ref().and_then(|m| m.projector.epilogue_plan())
        })
    }

    /// The kernel configuration the last call ran (None before the first).
    #[getter]
    fn kernel(&self, py: Python<'_>) -> Option<String> {
        // Taken with the GIL released, as every lock of the module (see the struct).
        py.detach(|| {
            self.kernel
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        })
    }

    /// Q, K, V of X. (Python sees the docstring `qkv_wgpu/__init__.py` gives `__call__`:
    /// Python keeps none of a slot's own.)
    #[pyo3(signature = (x, *, position_offset=None, positions=None))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        position_offset: Option<i64>,
        positions: Option<Vec<i64>>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let rotates = self.epilogue.as_ref().is_some_and(|e| e.0.rope.is_some());
        let at = epilogue::positions(rotates, position_offset, positions)?;
        let input = Input::extract(x, "X")?;
        let dims = self.x_dims(input.shape())?;
        let xs = input.elements("X")?;
        let shape = self.weights.shape(dims.tokens).map_err(py_err)?;
        let layout = self.layout(&shape, dims).map_err(py_err)?;
        let out = OutType::of(py, self.settings.element, self.settings.widen);
        let lens = [shape.q_len(), shape.kv_len(), shape.kv_len()];
        let outputs = Outputs::new(py, lens, out, dims.tokens as usize)?;
        let mut writers = outputs.writers()?;
        let mut slices = writers.slices()?;
        let widths = [shape.q_width, shape.kv_width, shape.kv_width].map(|w| w as usize);
        let d = shape.d_model as usize;
        let cancel = AtomicBool::new(false);
        let mut signal = None;
        let result = py.detach(|| {
            self.with_projector(dims, at, |p| {
                let source = |rows: Range<u32>, mut dst: ElementsMut<'_>| {
                    interrupted(&cancel, &rows, shape.tokens)?;
                    let part = xs.slice(rows.start as usize * d..rows.end as usize * d);
                    finite(part, rows.start, shape.d_model)?;
                    dst.put(0, part)
                        .map_err(|e| e.in_rows("X", rows.start, shape.d_model))
                };
                let sink = |c: ChunkOutput<'_>| take_chunk(&mut slices, widths, c);
                p.stream(source, sink, |_| watch(&cancel, &mut signal))
            })
        });
        drop(writers);
        if let Some(e) = signal {
            return Err(e);
        }
        result.map_err(py_err)?;
        let shaped = |kv| {
            layout
                .dims(&shape, kv, dims.batch_seq)
                .into_iter()
                .map(|v| v as usize)
                .collect::<Vec<_>>()
        };
        let [q, k, v] = outputs.finish(py, [shaped(false), shaped(true), shaped(true)])?;
        Ok((q, k, v))
    }

    /// Projects X and checks every row against the f64 reference of the inputs as the GPU
    /// read them: a dict with `pass`, the errors (`max_abs_err`, `max_rel_err`,
    /// `rel_l2_err`, and for a half type the `precision_*` cost), the tolerance (`atol`,
    /// `rtol`, `ttol`), `checked_rows`, `kernel` and `report`.
    fn check<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let opts = MeasureOptions {
            runs: 0,
            kernel_repeats: 0,
            check: CheckRows::All,
            precision_cost: true,
            ..MeasureOptions::default()
        };
        let (m, kernel, _) = self.measure(py, x, opts, "check")?;
        check_dict(py, &m, &kernel)
    }

    /// Checks, then times the projection of X: `repeats` end-to-end runs after an untimed
    /// first one (each checked), then, if every run passed, `repeats` back-to-back kernel
    /// dispatches. A dict whose keys are those of `bench()`'s rows where they measure the
    /// same (a list of them is a pandas DataFrame): `kernel`, `tokens`, `dtype`, `pass`,
    /// `kernel_ms` (median; `kernel_ms_min`, `kernel_ms_max`; NaN when the check failed),
    /// `kernel_timer` ("GpuTimestamp" or "Host"; "" when the check failed),
    /// `end_to_end_ms` (median), `tokens_per_s`, `gpu_gflops`, `max_abs_err`.
    #[pyo3(signature = (x, repeats=5))]
    fn time<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        repeats: u32,
    ) -> PyResult<Bound<'py, PyDict>> {
        if !(1..=qkv_wgpu::projector::MAX_REPEATS).contains(&repeats) {
            return Err(PyValueError::new_err(format!(
                "repeats must be 1 to {}, not {repeats}",
                qkv_wgpu::projector::MAX_REPEATS
            )));
        }
        let opts = MeasureOptions {
            runs: repeats,
            kernel_repeats: repeats,
            check: CheckRows::All,
            stop_at_failure: true,
            ..MeasureOptions::default()
        };
        let (m, kernel, tokens) = self.measure(py, x, opts, "time")?;
        time_dict(
            py,
            &m,
            &kernel,
            &self.weights,
            tokens as usize,
            self.settings.element,
        )
    }
}

/// An error where `cancel` is set: the run stops before these rows.
fn interrupted(cancel: &AtomicBool, rows: &Range<u32>, tokens: u32) -> Result<(), Error> {
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Interrupted {
            done: rows.start,
            tokens,
        });
    }
    Ok(())
}

/// Between chunks, on the calling thread: Ctrl-C (Python's pending signal handlers, run
/// with the GIL taken for a moment) sets `cancel` and keeps the exception to raise.
pub(crate) fn watch(cancel: &AtomicBool, signal: &mut Option<PyErr>) {
    if signal.is_none() {
        if let Err(e) = Python::attach(|py| py.check_signals()) {
            *signal = Some(e);
            cancel.store(true, Ordering::Relaxed);
        }
    }
}

/// An error naming the first NaN or infinity of X's rows from `first_row`, if any: a
/// projection of it would carry it into Q, K and V.
fn finite(x: Elements<'_>, first_row: u32, d_model: u32) -> Result<(), Error> {
    match x.non_finite() {
        (_, None) => Ok(()),
        (_, Some(i)) => {
            let d = d_model.max(1) as usize;
            Err(Error::Input(format!(
                "X[{}, {}] is {}: X must hold finite numbers (NaN or Inf would be carried \
                 into Q, K and V)",
                first_row as usize + i / d,
                i % d,
                x.get(i)
            )))
        }
    }
}

impl Projector {
    fn made_of(
        py: Python<'_>,
        weights: FusedWeights,
        settings: Settings,
        backend: Option<&str>,
        adapter: Option<&str>,
    ) -> PyResult<Self> {
        let f = filter(backend, adapter)?;
        let ctx = py.detach(|| context(&f)).map_err(py_err)?;
        Ok(Self {
            ctx,
            weights,
            settings,
            made: Mutex::new(None),
            kernel: Mutex::new(None),
            source: None,
            epilogue: None,
            job_keys: Mutex::new(Vec::new()),
        })
    }

    /// The job key of shard manifests written in `format` ([`qkv_wgpu::io::shards::job_key`]:
    /// the weights, the type, the head layout, the epilogue), computed on first use.
    pub(crate) fn job_key(
        &self,
        format: qkv_wgpu::io::outputs::OutFormat,
    ) -> Result<String, Error> {
        let mut keys = self.job_keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, key)) = keys.iter().find(|(f, _)| *f == format) {
            return Ok(key.clone());
        }
        let s = &self.settings;
        let heads = s.heads.filter(|_| s.split_heads);
        let epilogue = self.epilogue.as_ref().map(|(e, h)| (e, h));
        let key = qkv_wgpu::io::shards::job_key(&self.weights, s.element, heads, epilogue, format)?;
        keys.push((format, key.clone()));
        Ok(key)
    }

    /// The fused weights.
    pub(crate) fn weights(&self) -> &FusedWeights {
        &self.weights
    }

    /// The settings apart from the weights.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Its GPU context.
    pub(crate) fn context(&self) -> &'static GpuContext {
        self.ctx
    }

    /// The checkpoint the weights came from (None: arrays).
    pub(crate) fn source(&self) -> Option<&std::path::Path> {
        self.source.as_deref()
    }

    /// A `MemoryError` unless the check of every row of `tokens` fits in the memory left
    /// (the library's bytes of a row kept for the check, with the weights rounded once to a
    /// half type where the run reads one). `verb` ("check", "time") names the method.
    fn guard_check(&self, tokens: u32, verb: &str) -> PyResult<()> {
        let w = &self.weights;
        let shape = w.shape(tokens).map_err(py_err)?;
        let element = self.settings.element;
        let rounded = match element.is_half() {
            true => (w.d_model as u64 * w.n_out() as u64).saturating_mul(4),
            false => 0,
        };
        let rows = (tokens as u64).saturating_mul(CheckRows::row_bytes(&shape));
        let parts = [
            (
                "every row checked: X, Q, K and V as float32 and their float64 reference",
                rows,
            ),
            ("the weights rounded to the storage type", rounded),
        ];
        let gerund = if verb == "check" {
            "checking"
        } else {
            "timing"
        };
        let way_out = format!(
            "{gerund} {tokens} tokens checks every row: {verb} X in parts (p.{verb}(X[i:j]))"
        );
        check_room(&parts, available_memory(), &way_out).map_err(py_err)
    }

    /// X's tokens (and sequences) from its shape: [tokens, d_model] or [batch, seq, d_model].
    fn x_dims(&self, shape: &[usize]) -> PyResult<XDims> {
        let d_model = self.weights.d_model as usize;
        let (tokens, batch_seq) = match *shape {
            [t, d] if d == d_model => (t, None),
            [b, s, d] if d == d_model => (b * s, Some((b, s))),
            [.., d] if (2..=3).contains(&shape.len()) => {
                return Err(PyValueError::new_err(format!(
                    "X has {d} columns; the weights take d_model {d_model}"
                )))
            }
            _ => {
                return Err(PyValueError::new_err(format!(
                    "X has shape {shape:?}; give [tokens, {d_model}] or [batch, seq, {d_model}]"
                )))
            }
        };
        if tokens == 0 {
            return Err(PyValueError::new_err(
                "X has no rows: there is nothing to project",
            ));
        }
        let too_large = || PyValueError::new_err(format!("X has {tokens} tokens: too many"));
        let u = |v: usize| u32::try_from(v).map_err(|_| too_large());
        Ok(XDims {
            tokens: u(tokens)?,
            batch_seq: match batch_seq {
                Some((b, s)) => Some((u(b)?, u(s)?)),
                None => None,
            },
        })
    }

    /// The output layout for `shape`: token-major, or split into heads over X's sequences
    /// (one sequence where X is 2-D).
    fn layout(&self, shape: &QkvShape, dims: XDims) -> Result<OutputLayout, Error> {
        let Some((heads, kv_heads)) = self.settings.heads else {
            return Ok(OutputLayout::Tokens);
        };
        let seq = dims.batch_seq.map_or(dims.tokens, |(_, s)| s);
        let split = HeadSplit::with_default_kv(shape, seq, heads, kv_heads)?;
        Ok(if self.settings.split_heads {
            OutputLayout::Heads(split)
        } else {
            OutputLayout::Tokens
        })
    }

    /// Runs `f` on the library projector for X of `dims` (its tokens at `positions`, where it
    /// rotates), made (and its kernel chosen or tuned) on first use of that shape. One
    /// projection at a time per projector: a second thread waits for the first.
    pub(crate) fn with_projector<T>(
        &self,
        dims: XDims,
        positions: Positions,
        f: impl FnOnce(&mut qkv_wgpu::Projector<'static>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        if made.as_ref().is_none_or(|m| m.dims != dims) {
            *made = None;
            let shape: QkvShape = self.weights.shape(dims.tokens)?;
            let layout = self.layout(&shape, dims)?;
            let spec = self.spec(&shape)?;
            let opts = &self.settings.chunking;
            let mut projector = match &self.epilogue {
                None => qkv_wgpu::Projector::with_spec(self.ctx, shape, spec, layout, opts)?,
                Some(e) => {
                    let (ep, heads) = epilogue::for_dims(e, dims);
                    let (ep, heads) = (&ep, heads);
                    qkv_wgpu::Projector::with_epilogue(
                        self.ctx,
                        shape,
                        spec,
                        (layout, opts),
                        (ep, heads),
                    )?
                }
            };
            projector.set_weights(&self.weights)?;
            let config = projector.config().to_string();
            *self.kernel.lock().unwrap_or_else(|p| p.into_inner()) = Some(config);
            *made = Some(Made { dims, projector });
        }
        let projector = &mut made.as_mut().expect("made above").projector;
        let moved = projector
            .epilogue()
            .is_some_and(|(e, _)| e.rope.is_some() && e.positions != positions);
        if moved {
            projector.set_positions(positions)?;
        }
        f(projector)
    }

    /// The spec for `shape`: the named kernel, or the one autotuned for this adapter and
    /// shape class (cached like the CLI's): the library's `tune::resolve`.
    fn spec(&self, shape: &QkvShape) -> Result<KernelSpec, Error> {
        let opts = TuneOptions {
            element: self.settings.element,
            weights: self.weights.w_formats(),
            ..Default::default()
        };
        let resolved =
            qkv_wgpu::tune::resolve(self.ctx, shape, &self.settings.kernel, &opts, |_| {})?;
        let spec = resolved.specs.into_iter().next().map(|(spec, _)| spec);
        spec.ok_or_else(|| Error::Input("no kernel configuration to run".into()))
    }

    /// [`validate_then_time`] on X (its shape checked, finite, its check fitting in the
    /// memory left) with the GIL released and Ctrl-C watched between chunks; the
    /// measurement, the kernel that ran and X's tokens. `verb` ("check", "time") names the
    /// method in a `MemoryError`.
    fn measure(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        opts: MeasureOptions<'_>,
        verb: &str,
    ) -> PyResult<(Measurement, String, u32)> {
        let input = Input::extract(x, "X")?;
        let dims = self.x_dims(input.shape())?;
        self.guard_check(dims.tokens, verb)?;
        let xs = input.elements("X")?;
        let weights = &self.weights;
        let cancel = AtomicBool::new(false);
        let mut signal = None;
        let opts = MeasureOptions {
            cancel: Some(&cancel),
            ..opts
        };
        let result = py.detach(|| {
            finite(xs, 0, weights.d_model)?;
            self.with_projector(dims, Positions::Offset(0), |p| {
                let m = validate_then_time(p, weights, XSource::Given(xs), &opts, |_| {
                    watch(&cancel, &mut signal)
                })?;
                Ok((m, p.config().to_string(), dims.tokens))
            })
        });
        if let Some(e) = signal {
            return Err(e);
        }
        result.map_err(py_err)
    }
}

/// A GGUF layer's weights, and its query and key/value heads from the metadata.
type GgufLayer = (FusedWeights, (Option<u32>, Option<u32>));

/// One attention layer of a GGUF file, each matrix in its format (kept in blocks where any
/// is a block format), and the heads its metadata gives.
fn load_gguf_layer(
    py: Python<'_>,
    path: &std::path::Path,
    prefix: &str,
    original_order: bool,
    d_model: Option<u32>,
) -> PyResult<GgufLayer> {
    py.detach(|| {
        let mut layer = qkv_wgpu::io::gguf::Gguf::open(path)?.attention(prefix)?;
        if original_order {
            layer = layer.into_original_order()?;
        }
        if let Some(d) = d_model.filter(|&d| d != layer.d_model) {
            return Err(qkv_wgpu::Error::Shape(format!(
                "d_model={d} but {prefix} reads rows of {}",
                layer.d_model
            )));
        }
        Ok((layer.weights()?, (layer.heads, layer.kv_heads)))
    })
    .map_err(py_err)
}

/// The weights stored as `types` where given (`weight_type=`) and not the run's type
/// ([`WeightType::stored_formats`]).
fn quantized(
    py: Python<'_>,
    weights: FusedWeights,
    types: Option<[WeightType; 3]>,
    run: qkv_wgpu::ElementType,
) -> PyResult<FusedWeights> {
    match types.and_then(|t| WeightType::stored_formats(t, run)) {
        Some(t) => py.detach(|| weights.stored_as(t)).map_err(py_err),
        None => Ok(weights),
    }
}
