//! The matrices of a checkpoint as stored ([out, in] or [in, out], three or one fused) into
//! the kernels' fused in-out layout: the layout decided from the shapes where nothing says
//! it, a fused matrix split by thirds or by heads, and the fusion in the stored type.

use super::{Tensor, WeightLayout, WeightRequest};
use crate::element::ElementType;
use crate::error::{Error, Result};
use crate::weights::{transpose, FusedWeights, Projection, WeightData};

/// Fuses the three matrices in their stored type when they share one half type (a BF16
/// checkpoint stays BF16, with no f32 copy), else in f32 (every type widens to it exactly).
pub(super) fn fuse(
    d_model: u32,
    parts: &[WeightData; 3],
    widths: [usize; 3],
    biases: Option<&[Vec<f32>; 3]>,
) -> Result<FusedWeights> {
    fn proj<'a, T>(w: &'a [T], width: usize, bias: Option<&'a [f32]>) -> Result<Projection<'a, T>> {
        let width = u32::try_from(width)
            .map_err(|_| Error::Shape(format!("a projection width of {width} is too large")))?;
        Ok(Projection { w, width, bias })
    }
    let bias = |i: usize| biases.map(|b| b[i].as_slice());
    if let [WeightData::Half(e, q), WeightData::Half(ek, k), WeightData::Half(ev, v)] = parts {
        if e == ek && e == ev {
            let parts = [
                proj(q.as_slice(), widths[0], bias(0))?,
                proj(k.as_slice(), widths[1], bias(1))?,
                proj(v.as_slice(), widths[2], bias(2))?,
            ];
            return FusedWeights::fuse_half(d_model, *e, parts);
        }
    }
    let f32s: Vec<WeightData> = parts
        .iter()
        .map(|w| w.to_element(ElementType::F32))
        .collect();
    let f = |i: usize| {
        proj(
            f32s[i].as_f32().expect("widened to f32"),
            widths[i],
            bias(i),
        )
    };
    FusedWeights::fuse(d_model, f(0)?, f(1)?, f(2)?)
}

/// The stored layout of explicitly named matrices, proven by their shapes or refused.
pub(super) fn decide_layout(
    mats: &[Tensor],
    names: &[String],
    d_model: u32,
) -> Result<WeightLayout> {
    let d = d_model as usize;
    let mut votes = Vec::new();
    for (m, name) in mats.iter().zip(names) {
        let (r, c) = (m.shape[0], m.shape[1]);
        let vote = match (r == d, c == d) {
            (true, false) => Some(WeightLayout::InOut),
            (false, true) => Some(WeightLayout::OutIn),
            (true, true) => None,
            (false, false) => {
                return Err(Error::Input(format!(
                    "X has d_model {d_model} but '{name}' has shape [{r}, {c}]: neither side \
                     matches"
                )))
            }
        };
        votes.extend(vote);
    }
    votes.dedup();
    match votes.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::Input(format!(
            "cannot tell whether {} {} stored [out, in] (PyTorch nn.Linear) or [in, out] \
             (GPT-2 Conv1D): every shape is square [{d_model}, {d_model}]; give \
             `weight_layout` out-in or in-out",
            names.join(", "),
            if names.len() == 1 { "is" } else { "are" }
        ))),
        _ => Err(Error::Input(format!(
            "the shapes of {} disagree on the layout (some [out, in], some [in, out]); give \
             `weight_layout`",
            names.join(", ")
        ))),
    }
}

/// Widths (q, kv) of a fused matrix with `n` output columns: thirds, or by heads.
fn split_fused(
    n: usize,
    heads: Option<u32>,
    kv_heads: Option<u32>,
    name: &str,
) -> Result<(usize, usize)> {
    match (heads, kv_heads) {
        (Some(h), kv) => {
            let kv = kv.unwrap_or(h) as usize;
            let h = h as usize;
            let units = h + 2 * kv;
            if h == 0 || kv == 0 || !n.is_multiple_of(units) {
                return Err(Error::Shape(format!(
                    "'{name}' has {n} output columns, which do not split into {h} query heads \
                     and 2 x {kv} key/value heads of one head size"
                )));
            }
            let head_dim = n / units;
            Ok((h * head_dim, kv * head_dim))
        }
        (None, Some(_)) => Err(Error::Input("`kv_heads` needs `heads`".into())),
        (None, None) => {
            if !n.is_multiple_of(3) {
                return Err(Error::Shape(format!(
                    "'{name}' has {n} output columns, not three equal parts; give `heads` and \
                     `kv_heads` to split grouped K/V"
                )));
            }
            Ok((n / 3, n / 3))
        }
    }
}

/// Each matrix of a projection as in-out [d_model, width] (transposed from `layout`), with
/// its width; an error naming the tensor whose inputs are not `d_model`.
pub(super) fn to_in_out(
    mats: Vec<Tensor>,
    names: &[String],
    layout: WeightLayout,
    d_model: u32,
) -> Result<Vec<(WeightData, usize)>> {
    let mut in_out = Vec::new();
    for (m, name) in mats.into_iter().zip(names) {
        let (rows, cols) = (m.shape[0], m.shape[1]);
        let (inputs, outputs) = match layout {
            WeightLayout::InOut => (rows, cols),
            WeightLayout::OutIn => (cols, rows),
        };
        if inputs != d_model as usize {
            return Err(Error::Input(format!(
                "X has d_model {d_model} but '{name}' ({layout}, shape {:?}) takes {inputs} \
                 inputs",
                m.shape
            )));
        }
        let data = match (layout, m.data) {
            (WeightLayout::InOut, d) => d,
            (WeightLayout::OutIn, WeightData::F32(d)) => WeightData::F32(transpose(&d, rows, cols)),
            (WeightLayout::OutIn, WeightData::Half(e, d)) => {
                WeightData::Half(e, transpose(&d, rows, cols))
            }
        };
        in_out.push((data, outputs));
    }
    Ok(in_out)
}

/// One fused in-out matrix `name` of `n` columns (and its bias) split into Wq, Wk, Wv
/// ([`split_fused`]) and fused again as the projector holds them.
pub(super) fn fuse_one(
    (w, n): &(WeightData, usize),
    bias: Option<Vec<Vec<f32>>>,
    request: &WeightRequest,
    name: &str,
    d_model: u32,
) -> Result<FusedWeights> {
    let n = *n;
    let (qw, kvw) = split_fused(n, request.heads, request.kv_heads, name)?;
    if let Some(b) = &bias {
        if b[0].len() != n {
            return Err(Error::Input(format!(
                "the bias of '{name}' has {} elements; it needs {n}",
                b[0].len()
            )));
        }
    }
    let d = d_model as usize;
    fn columns<T: Copy>(w: &[T], d: usize, n: usize, start: usize, width: usize) -> Vec<T> {
        (0..d)
            .flat_map(|r| w[r * n + start..r * n + start + width].iter().copied())
            .collect()
    }
    let column_block = |start: usize, width: usize| match w {
        WeightData::F32(w) => WeightData::F32(columns(w, d, n, start, width)),
        WeightData::Half(e, w) => WeightData::Half(*e, columns(w, d, n, start, width)),
    };
    let parts = [
        column_block(0, qw),
        column_block(qw, kvw),
        column_block(qw + kvw, kvw),
    ];
    let bias_parts = bias.as_ref().map(|b| {
        let b = &b[0];
        [
            b[..qw].to_vec(),
            b[qw..qw + kvw].to_vec(),
            b[qw + kvw..].to_vec(),
        ]
    });
    fuse(d_model, &parts, [qw, kvw, kvw], bias_parts.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_splits_by_thirds_or_heads() {
        assert_eq!(split_fused(9, None, None, "w").unwrap(), (3, 3));
        assert!(split_fused(10, None, None, "w").is_err());
        // 32 query heads + 2 x 8 kv heads of 4: 192 columns.
        assert_eq!(split_fused(192, Some(32), Some(8), "w").unwrap(), (128, 32));
        assert!(split_fused(190, Some(32), Some(8), "w").is_err());
    }
}
