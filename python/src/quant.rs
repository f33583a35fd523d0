//! ggml's block formats from Python: `quantize` with ggml's reference quantizers and
//! `dequantize` as ggml's `dequantize_row_*` (the library's `quant` module), so a test or a
//! user can hold our bytes and values against llama.cpp's and the `gguf` package's.

use crate::errors::py_err;
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use qkv_wgpu::host::{available_memory, check_room};
use qkv_wgpu::quant::{BlockFormat, WeightType};

/// The block format named `name`, or a ValueError naming those there are.
fn format(name: &str) -> PyResult<BlockFormat> {
    let ty: WeightType = name.parse().map_err(PyValueError::new_err)?;
    ty.blocks().ok_or_else(|| {
        let names: Vec<&str> = BlockFormat::ALL.iter().map(|b| b.name()).collect();
        PyValueError::new_err(format!(
            "{name} is not a block format; quantize and dequantize take {}",
            names.join(", ")
        ))
    })
}

/// `x` (1-D float32, a multiple of the format's block, finite) quantized to `weight_type`'s
/// blocks by ggml's reference quantizer: the bytes llama.cpp writes for it.
#[pyfunction]
pub fn quantize<'py>(
    py: Python<'py>,
    x: PyReadonlyArray1<'py, f32>,
    weight_type: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let f = format(weight_type)?;
    let x = x.as_slice()?;
    let per = f.block_elems() as usize;
    if !x.len().is_multiple_of(per) {
        return Err(PyValueError::new_err(format!(
            "{f} quantizes whole blocks of {per} values; got {}",
            x.len()
        )));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(PyValueError::new_err(format!(
            "x[{i}] is {}: only finite values can be quantized",
            x[i]
        )));
    }
    let mut out = Vec::new();
    py.detach(|| f.quantize(x, &mut out));
    Ok(PyBytes::new(py, &out))
}

/// `data` (whole blocks of `weight_type`) as float32, each value what ggml's
/// `dequantize_row_*` computes.
#[pyfunction]
pub fn dequantize<'py>(
    py: Python<'py>,
    data: &[u8],
    weight_type: &str,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let f = format(weight_type)?;
    let size = f.block_bytes() as usize;
    if !data.len().is_multiple_of(size) {
        return Err(PyValueError::new_err(format!(
            "{f} blocks are {size} bytes; got {} bytes, not whole blocks",
            data.len()
        )));
    }
    let n = data.len() / size * f.block_elems() as usize;
    check_room(
        &[("the dequantized values", n as u64 * 4)],
        available_memory(),
        "dequantize fewer blocks at a time",
    )
    .map_err(py_err)?;
    let out = PyArray1::<f32>::zeros(py, n, false);
    {
        let mut w = out.readwrite();
        let y = w.as_slice_mut()?;
        py.detach(|| f.dequantize(data, y));
    }
    debug_assert_eq!(out.len(), n);
    Ok(out)
}

/// One attention layer of a GGUF file (`prefix`, e.g. "blk.0"): a dict of `architecture`,
/// `d_model`, `heads`, `kv_heads`, `rows_reordered`, `types` (Q's,
/// K's and V's formats), `wq`/`wk`/`wv` (float32 `[rows, d_model]`, each value what ggml's
/// dequantization gives) and `bias` (three float32 arrays, or None). With `original_order`,
/// Q's and K's rows as the original model had them where llama.cpp reordered them.
#[pyfunction]
#[pyo3(signature = (path, prefix, original_order = false))]
pub fn gguf_layer<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    prefix: &str,
    original_order: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let layer = py
        .detach(|| {
            let layer = qkv_wgpu::io::gguf::Gguf::open(&path)?.attention(prefix)?;
            if original_order {
                return layer.into_original_order();
            }
            Ok(layer)
        })
        .map_err(py_err)?;
    let d = PyDict::new(py);
    d.set_item("architecture", layer.architecture.clone())?;
    d.set_item("d_model", layer.d_model)?;
    d.set_item("heads", layer.heads)?;
    d.set_item("kv_heads", layer.kv_heads)?;
    d.set_item("rows_reordered", layer.rows_reordered)?;
    let types: Vec<&str> = layer.matrices.iter().map(|m| m.ty.name()).collect();
    d.set_item("types", types)?;
    for (key, m) in ["wq", "wk", "wv"].into_iter().zip(&layer.matrices) {
        let values = py.detach(|| m.values());
        let arr = PyArray1::from_vec(py, values).reshape([m.rows as usize, m.cols as usize])?;
        d.set_item(key, arr)?;
    }
    match &layer.bias {
        Some(b) => {
            let arrays: Vec<_> = b.iter().map(|v| PyArray1::from_slice(py, v)).collect();
            d.set_item("bias", arrays)?;
        }
        None => d.set_item("bias", py.None())?,
    }
    Ok(d)
}
