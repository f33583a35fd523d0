//! `rope=` and `qk_norm=` of `Projector.from_checkpoint`: Q and K made ready for attention as
//! the model does it, from its own files (the library's `io::epilogue`, as `qkv project
//! --rope --qk-norm` reads them), and the positions each call takes.

use crate::errors::py_err;
use crate::settings::XDims;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use qkv_wgpu::epilogue::{Epilogue, Heads, Positions};
use qkv_wgpu::io::epilogue::{layer_epilogue, EpilogueRequest};
use std::path::{Path, PathBuf};

/// The layer's epilogue where `rope` or `qk_norm` asks for one (positions from 0 until a call
/// says otherwise; the sequence length unset until X's shape gives it), its heads checked
/// against Q's and K's widths and against `heads` (the user's `heads=`, `kv_heads=`).
pub fn from_files(
    py: Python<'_>,
    (path, prefix): (&Path, Option<&str>),
    (q_width, kv_width): (u32, u32),
    (rope, qk_norm, config): (bool, bool, Option<PathBuf>),
    (original_order, heads): (bool, (Option<u32>, Option<u32>)),
) -> PyResult<Option<(Epilogue, Heads)>> {
    let req = EpilogueRequest {
        rope,
        qk_norm,
        config,
        positions: Positions::Offset(0),
        heads,
    };
    py.detach(|| layer_epilogue(path, prefix, (q_width, kv_width), original_order, &req))
        .map_err(py_err)
}

/// The epilogue for X of `dims`: positions restart with each sequence ([batch, seq,
/// d_model]; 2-D X is one sequence).
pub fn for_dims(e: &(Epilogue, Heads), dims: XDims) -> (Epilogue, Heads) {
    let seq = dims.batch_seq.map_or(dims.tokens, |(_, s)| s);
    (e.0.clone(), Heads { seq, ..e.1 })
}

/// A call's positions: `positions` (one per token, each from 0 to 2^32 - 1), else
/// `position_offset`, else 0; refused where the projector rotates nothing.
pub fn positions(
    rotates: bool,
    position_offset: Option<i64>,
    positions: Option<Vec<i64>>,
) -> PyResult<Positions> {
    let position = |p: i64| {
        u32::try_from(p).map_err(|_| {
            PyValueError::new_err(format!(
                "{p} is not a position (an integer from 0 to {})",
                u32::MAX
            ))
        })
    };
    if !rotates && (position_offset.is_some() || positions.is_some()) {
        return Err(PyValueError::new_err(
            "positions apply to RoPE: make the projector with rope=True",
        ));
    }
    match (position_offset, positions) {
        (Some(_), Some(_)) => Err(PyValueError::new_err(
            "give position_offset= or positions=, not both",
        )),
        (_, Some(list)) => list
            .into_iter()
            .map(position)
            .collect::<PyResult<Vec<u32>>>()
            .map(Positions::Given),
        (offset, None) => Ok(Positions::Offset(position(offset.unwrap_or(0))?)),
    }
}
