//! The weights a `Projector` is made of: Wq, Wk, Wv (and biases) from arrays, widened
//! exactly to f32, transposed from PyTorch's out-in layout and fused (`fuse_arrays`), or one
//! attention layer read from a safetensors checkpoint (`load_checkpoint`); weights holding
//! NaN or Inf refused, and a `MemoryError` before copies that would not fit.

use crate::arrays::Input;
use crate::errors::py_err;
use crate::settings::one_of;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use qkv_wgpu::host::{available_memory, check_room};
use qkv_wgpu::io::checkpoint::{Checkpoint, Names, WeightRequest, WeightSource};
use qkv_wgpu::io::NonFinite;
use qkv_wgpu::{FusedWeights, Projection};

/// A weight in in-out layout as f32, with its width and d_model.
type InOut = (Vec<f32>, u32, usize);

/// A weight [d_model, width] in in-out layout from an array in `out_in` (PyTorch's Linear)
/// or in-out layout, widened exactly to f32, with its width and d_model; where it holds NaN
/// or Inf, where the first is (in the array's own indices) instead.
fn in_out(input: &Input<'_>, out_in: bool, name: &str) -> PyResult<Result<InOut, NonFinite>> {
    let (data, shape) = input.to_f32(name)?;
    let [rows, cols] = <[usize; 2]>::try_from(shape.as_slice()).map_err(|_| {
        PyValueError::new_err(format!("{name} has shape {shape:?}; a weight is 2-D"))
    })?;
    if let Some(found) = NonFinite::scan(name, &data, &shape) {
        return Ok(Err(found));
    }
    if !out_in {
        return Ok(Ok((data, cols as u32, rows)));
    }
    Ok(Ok((
        qkv_wgpu::weights::transpose(&data, rows, cols),
        rows as u32,
        cols,
    )))
}

/// A bias widened exactly to f32; where it holds NaN or Inf, where the first is instead.
fn bias(input: Option<&Input<'_>>, name: &str) -> PyResult<Option<Result<Vec<f32>, NonFinite>>> {
    let Some(input) = input else { return Ok(None) };
    let (data, shape) = input.to_f32(name)?;
    if shape.len() != 1 {
        return Err(PyValueError::new_err(format!(
            "{name} has shape {shape:?}; a bias is 1-D"
        )));
    }
    Ok(Some(match NonFinite::scan(name, &data, &shape) {
        Some(found) => Err(found),
        None => Ok(data),
    }))
}

/// The `ValueError` for weights that hold NaN or Inf (each tensor that does, with its count
/// and first index), as `from_checkpoint` and `qkv project` refuse them.
fn refuse_nonfinite(found: &[NonFinite]) -> PyResult<()> {
    if found.is_empty() {
        return Ok(());
    }
    let found: Vec<String> = found.iter().map(|n| n.to_string()).collect();
    Err(PyValueError::new_err(format!(
        "the weights hold NaN or Inf ({}): they would be carried into Q, K and V",
        found.join("; ")
    )))
}

/// A `MemoryError` unless the module's copies of the weights fit: each widened to f32 (and
/// transposed, from `out_in` layout) and then fused into one.
fn guard_weights(weights: &[&Input<'_>], out_in: bool) -> PyResult<()> {
    let elements = |i: &&Input<'_>| i.shape().iter().map(|&d| d as u64).product::<u64>();
    let all: u64 = weights.iter().map(elements).sum();
    let largest = weights.iter().map(elements).max().unwrap_or(0);
    let f32s = |n: u64| n.saturating_mul(4);
    let parts = [
        ("the weights widened to float32", f32s(all)),
        ("fused into one matrix", f32s(all)),
        ("a transposed copy", if out_in { f32s(largest) } else { 0 }),
    ];
    let way_out = format!(
        "the weights ({all} values) are widened to float32 and fused: give smaller weights, or \
         a checkpoint's f16/bf16 tensors through Projector.from_checkpoint, which keeps them in \
         their type"
    );
    check_room(&parts, available_memory(), &way_out).map_err(py_err)
}

/// The tensors named by `names` (one fused matrix's name, or three) and `biases`.
fn named(names: &Bound<'_, PyAny>, biases: Option<&Bound<'_, PyAny>>) -> PyResult<Names<String>> {
    if let Ok(w) = names.extract::<String>() {
        let b = biases
            .map(|b| b.extract::<String>())
            .transpose()
            .map_err(|_| {
                PyValueError::new_err("with one fused matrix, bias_names is one name too")
            })?;
        return Ok(Names::Fused { w, b });
    }
    let three = |o: &Bound<'_, PyAny>, what: &str| -> PyResult<[String; 3]> {
        let v: Vec<String> = o.extract().map_err(|_| {
            PyValueError::new_err(format!("{what}: give one name, or three (Q, K, V)"))
        })?;
        <[String; 3]>::try_from(v).map_err(|_| {
            PyValueError::new_err(format!("{what}: give one name, or three (Q, K, V)"))
        })
    };
    Ok(Names::Separate {
        w: three(names, "names")?,
        b: biases.map(|b| three(b, "bias_names")).transpose()?,
    })
}

/// The weights of the constructor's arrays: `layout` "in-out" ([d_model, width]) or
/// "out-in" ([width, d_model]); all three biases or none.
pub fn fuse_arrays(
    [wq, wk, wv]: [&Bound<'_, PyAny>; 3],
    [bq, bk, bv]: [Option<&Bound<'_, PyAny>>; 3],
    layout: &str,
) -> PyResult<FusedWeights> {
    let out_in = match layout {
        "in-out" => false,
        "out-in" => true,
        other => {
            return Err(one_of(
                "layout",
                other,
                "'in-out' ([d_model, width], GPT-2's Conv1D) or 'out-in' ([width, d_model], \
                 PyTorch's Linear)",
            ))
        }
    };
    let inputs = [(wq, "wq"), (wk, "wk"), (wv, "wv")]
        .map(|(w, name)| Input::extract(w, name))
        .into_iter()
        .collect::<PyResult<Vec<_>>>()?;
    let bias_inputs = [(bq, "bq"), (bk, "bk"), (bv, "bv")]
        .map(|(b, name)| b.map(|b| Input::extract(b, name)).transpose())
        .into_iter()
        .collect::<PyResult<Vec<_>>>()?;
    let given = bias_inputs.iter().filter(|b| b.is_some()).count();
    if given != 0 && given != 3 {
        return Err(PyValueError::new_err(
            "give all three biases (bq, bk, bv) or none",
        ));
    }
    let all: Vec<&Input<'_>> = inputs.iter().chain(bias_inputs.iter().flatten()).collect();
    guard_weights(&all, out_in)?;
    let mut nonfinite = Vec::new();
    let mut mats = Vec::new();
    for (input, name) in inputs.iter().zip(["wq", "wk", "wv"]) {
        match in_out(input, out_in, name)? {
            Ok(m) => mats.push(m),
            Err(found) => nonfinite.push(found),
        }
    }
    let mut biases = Vec::new();
    for (input, name) in bias_inputs.iter().zip(["bq", "bk", "bv"]) {
        match bias(input.as_ref(), name)? {
            Some(Err(found)) => nonfinite.push(found),
            Some(Ok(b)) => biases.push(Some(b)),
            None => biases.push(None),
        }
    }
    refuse_nonfinite(&nonfinite)?;
    let d_model = mats[0].2 as u32;
    let p = |i: usize| Projection {
        w: &mats[i].0,
        width: mats[i].1,
        bias: biases[i].as_deref(),
    };
    FusedWeights::fuse(d_model, p(0), p(1), p(2)).map_err(py_err)
}

/// Where the weights of a checkpoint are: under `prefix` (a known family's names), or
/// `names` (and `bias_names`), one of them.
pub fn source(
    prefix: Option<String>,
    names: Option<&Bound<'_, PyAny>>,
    bias_names: Option<&Bound<'_, PyAny>>,
) -> PyResult<WeightSource> {
    match (prefix, names) {
        (Some(p), None) => Ok(WeightSource::Prefix(p)),
        (None, Some(n)) => Ok(WeightSource::Named(named(n, bias_names)?)),
        _ => Err(PyValueError::new_err(
            "give prefix (a layer's name, for a known family) or names, one of them",
        )),
    }
}

/// The weights `request` names in the safetensors file at `path` (`d_model` where neither a
/// family's convention nor the file settles it), read with the GIL released.
pub fn load_checkpoint(
    py: Python<'_>,
    path: &std::path::Path,
    request: &WeightRequest,
    d_model: Option<u32>,
) -> PyResult<FusedWeights> {
    // A file that cannot be opened is the OSError subclass Python users expect
    // (FileNotFoundError, PermissionError, IsADirectoryError); what is in it, the
    // library's checks.
    std::fs::File::open(path)
        .and_then(|f| f.metadata())
        .and_then(|m| match m.is_dir() {
            true => Err(std::io::Error::from(std::io::ErrorKind::IsADirectory)),
            false => Ok(()),
        })
        .map_err(|e| {
            PyErr::from(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            ))
        })?;
    let loaded = py
        .detach(|| {
            let ckpt = Checkpoint::open(path)?;
            let d = match d_model {
                Some(d) => d,
                None => ckpt.d_model_of(request)?,
            };
            ckpt.load_qkv(request, d)
        })
        .map_err(py_err)?;
    refuse_nonfinite(&loaded.nonfinite)?;
    Ok(loaded.weights)
}
