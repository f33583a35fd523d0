//! A `Projector`'s settings apart from its weights, parsed once from the keyword arguments:
//! the storage type, the kernel (the library's `KernelChoice`: "auto" or one configuration),
//! heads and their layout, chunking, the outputs' type; and X's dimensions.

use crate::errors::py_err;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use qkv_wgpu::tune::KernelChoice;
use qkv_wgpu::{ChunkOptions, ElementType};

/// X's dimensions: tokens, and the sequence length where X is [batch, seq, d_model].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct XDims {
    pub tokens: u32,
    pub batch_seq: Option<(u32, u32)>,
}

/// How the projector was configured, apart from its weights.
pub struct Settings {
    pub element: ElementType,
    /// Autotuned per shape, or one named configuration.
    pub kernel: KernelChoice,
    /// Query and key/value heads (None: as many as kv_width holds at Q's head size).
    pub heads: Option<(u32, Option<u32>)>,
    /// Outputs as [batch, heads, seq, head_dim].
    pub split_heads: bool,
    /// `chunk_tokens`: None, the size that fits (0 is refused, as the library refuses it).
    pub chunking: ChunkOptions,
    /// Outputs widened to float32.
    pub widen: bool,
}

/// The error for a string setting that is none of `valid`.
pub fn one_of(name: &str, got: &str, valid: &str) -> PyErr {
    PyValueError::new_err(format!("{name}='{got}': give {valid}"))
}

/// `kernel=`: "auto", or one configuration ("direct(wg=32)").
fn kernel_choice(kernel: &str) -> PyResult<KernelChoice> {
    let choice = KernelChoice::parse(kernel).map_err(PyValueError::new_err)?;
    match &choice {
        KernelChoice::Named { configs, all } if *all || configs.len() != 1 => {
            Err(PyValueError::new_err(format!(
                "kernel='{kernel}': a Projector runs one configuration; name one, or 'auto'"
            )))
        }
        _ => Ok(choice),
    }
}

/// The settings of the keyword arguments, each checked.
#[allow(clippy::too_many_arguments)]
pub fn settings(
    dtype: &str,
    kernel: &str,
    heads: Option<u32>,
    kv_heads: Option<u32>,
    head_layout: &str,
    chunk_tokens: Option<u32>,
    out_dtype: Option<&str>,
) -> PyResult<Settings> {
    let element: ElementType = dtype.parse().map_err(PyValueError::new_err)?;
    let kernel = kernel_choice(kernel)?;
    let split_heads = match head_layout {
        "tokens" => false,
        "heads" => true,
        other => return Err(one_of("head_layout", other, "'tokens' or 'heads'")),
    };
    if split_heads && heads.is_none() {
        return Err(PyValueError::new_err("head_layout='heads' needs heads="));
    }
    if kv_heads.is_some() && heads.is_none() {
        return Err(PyValueError::new_err("kv_heads= needs heads="));
    }
    let widen = match out_dtype {
        None => false,
        Some("float32") => true,
        Some(other) => {
            return Err(one_of(
                "out_dtype",
                other,
                "None (the storage type) or 'float32'",
            ))
        }
    };
    let chunking = ChunkOptions {
        chunk_tokens,
        ..ChunkOptions::default()
    };
    chunking.check().map_err(py_err)?;
    Ok(Settings {
        element,
        kernel,
        heads: heads.map(|h| (h, kv_heads)),
        split_heads,
        chunking,
        widen,
    })
}
