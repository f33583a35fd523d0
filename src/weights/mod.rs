//! Weights in the layout the kernels read: Wq, Wk and Wv concatenated column-wise into one
//! [d_model, q_width + 2 * kv_width] matrix, so the three projections are one GEMM; and the
//! seeded random inputs `qkv run` and the tests use.

use crate::element::ElementType;
use crate::error::{Error, Result};
use crate::host::{ElementsMut, SendWriteOnly};
use crate::quant::StoredMatrix;
use crate::shape::QkvShape;
use rand::{Rng, SeedableRng};
use std::ops::Range;
use std::sync::Arc;
use wgpu::WriteOnly;

mod stored;

/// W's elements as stored on the host: f32, or the 16-bit patterns of f16 or bf16 (a
/// checkpoint stored in a half type stays in it, with no f32 copy of W).
pub type WeightData = crate::host::ElementVec;

/// The fused projection weights, row-major [d_model, n_out] ("in-out": y = x . W + b), with
/// columns [0, q_width) = Wq, [q_width, q_width + kv_width) = Wk, the rest = Wv.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedWeights {
    /// Rows of W.
    pub d_model: u32,
    /// Columns of Wq.
    pub q_width: u32,
    /// Columns of Wk and of Wv.
    pub kv_width: u32,
    /// W [d_model, n_out], row-major, in its stored type; empty where [`stored`](Self::stored)
    /// holds W.
    pub w: WeightData,
    /// bias [n_out] = bq ++ bk ++ bv, if the projection has one (f32: a half-typed bias is
    /// widened exactly; it is n_out elements, not a matrix).
    pub bias: Option<Vec<f32>>,
    /// W as a checkpoint stores it, where a part is in a block format: Wq, Wk and Wv each
    /// `[width, d_model]` (a row per output feature) in its own format, kept as they are and
    /// uploaded so; the kernels that read them dequantize as they read
    /// ([`crate::KernelSpec::with_w_formats`]). `w` is empty then.
    pub stored: Option<Arc<[StoredMatrix; 3]>>,
}

/// One projection's matrix [d_model, width] in in-out layout, and its optional bias [width];
/// the matrix in f32, or as 16-bit patterns (`T = u16`).
#[derive(Debug, Clone, Copy)]
pub struct Projection<'a, T = f32> {
    /// W [d_model, width], row-major.
    pub w: &'a [T],
    /// Columns of W.
    pub width: u32,
    /// bias [width].
    pub bias: Option<&'a [f32]>,
}

impl FusedWeights {
    /// Fuses three in-out matrices Wq [d_model, q_width], Wk and Wv [d_model, kv_width] and
    /// their biases (all three or none) into one.
    pub fn fuse(d_model: u32, q: Projection, k: Projection, v: Projection) -> Result<Self> {
        let (w, shape, bias) = fuse_parts(d_model, [q, k, v])?;
        Ok(Self {
            d_model,
            q_width: shape.q_width,
            kv_width: shape.kv_width,
            w: WeightData::F32(w),
            bias,
            stored: None,
        })
    }

    /// As [`fuse`](Self::fuse), for matrices stored as 16-bit patterns of `element` (f16 or
    /// bf16), kept so.
    pub fn fuse_half(
        d_model: u32,
        element: ElementType,
        parts: [Projection<u16>; 3],
    ) -> Result<Self> {
        if !element.is_half() {
            return Err(Error::Input(format!(
                "fuse_half takes f16 or bf16 patterns, not {element}"
            )));
        }
        let (w, shape, bias) = fuse_parts(d_model, parts)?;
        Ok(Self {
            d_model,
            q_width: shape.q_width,
            kv_width: shape.kv_width,
            w: WeightData::Half(element, w),
            bias,
            stored: None,
        })
    }

    /// Columns of the fused matrix.
    pub fn n_out(&self) -> u32 {
        self.q_width + 2 * self.kv_width
    }

    /// The largest finite |w| or |bias| (0 for none): the scale tolerances use.
    pub fn absmax(&self) -> f32 {
        let stored = self
            .stored
            .iter()
            .flat_map(|parts| parts.iter().flat_map(|p| p.values()));
        self.w
            .values()
            .chain(stored)
            .chain(self.bias.iter().flatten().copied())
            .filter(|v| v.is_finite())
            .fold(0f32, |m, v| m.max(v.abs()))
    }

    /// These weights (and bias) rounded to `element`, as the GPU holds them: what the
    /// reference of a run in that type is computed from.
    pub fn rounded(&self, element: ElementType) -> Self {
        let mut bias = self.bias.clone();
        if let Some(b) = &mut bias {
            element.round_slice(b);
        }
        // A stored W is read as it is, dequantized in f32, whatever the run's type.
        Self {
            w: self.w.to_element(element),
            bias,
            stored: self.stored.clone(),
            ..*self
        }
    }

    /// These weights stored as `element` (rounded to nearest even, or widened exactly), the
    /// bias rounded to it: what `qkv project --dtype` gives the GPU. A value the type cannot
    /// hold is an error naming it ([`check_range`](Self::check_range)).
    pub fn to_element(&self, element: ElementType) -> Result<Self> {
        self.check_range(element)?;
        Ok(self.rounded(element))
    }

    /// An [`Error::Input`] naming the first weight or bias value `element` cannot hold (it
    /// would round to an infinity): the matrix (Wq, Wk, Wv or a bias), its row and column.
    pub fn check_range(&self, element: ElementType) -> Result<()> {
        let n = self.n_out() as usize;
        let name = |col: usize| self.column_name(col);
        let found = match &self.w {
            WeightData::F32(w) => element.check_range(w),
            // bf16 values may be past f16's range; f16 values fit bf16 and f32.
            WeightData::Half(stored, _)
                if *stored == element || *stored == ElementType::F16 || !element.is_half() =>
            {
                None
            }
            half @ WeightData::Half(..) => element.check_range_of(half.values()),
        };
        if let Some(e) = found {
            let (m, col) = name(e.index % n.max(1));
            return Err(Error::Input(format!(
                "{m} row {}, column {col}: {e}",
                e.index / n.max(1)
            )));
        }
        if let Some(e) = self.bias.as_deref().and_then(|b| element.check_range(b)) {
            let (m, col) = name(e.index);
            return Err(Error::Input(format!("the bias of {m}, element {col}: {e}")));
        }
        Ok(())
    }

    /// Checks W as a kernel reading `input` sees it in a run stored as `run` (`coopmat`:
    /// rounded to the run's type, then to f16): the first value past `input`'s range once
    /// rounded is an error naming the matrix, row and column. The bias is added in f32 and
    /// is checked against the run's type only ([`check_range`](Self::check_range)).
    pub fn check_range_read_as(&self, run: ElementType, input: ElementType) -> Result<()> {
        if input == run {
            return Ok(());
        }
        let n = self.n_out() as usize;
        let found = input.check_range_of(self.w.values().map(|v| run.round(v)));
        if let Some(e) = found {
            let (m, c) = self.column_name(e.index % n.max(1));
            return Err(Error::Input(format!(
                "{m} row {}, column {c}: {} (as {run}: {}) is outside {input}'s range \
                 (largest finite value {})",
                e.index / n.max(1),
                self.w.values().nth(e.index).unwrap_or(e.value),
                e.value,
                input.max_finite()
            )));
        }
        Ok(())
    }

    /// These weights as a kernel reading `input` in a run stored as `run` reads them: W
    /// rounded to `run`, then to `input`; the bias rounded to `run` only (kernels add it in
    /// f32). The same as [`rounded`](Self::rounded)`(run)` when the two types are one.
    pub fn rounded_for(&self, run: ElementType, input: ElementType) -> Self {
        let mut bias = self.bias.clone();
        if let Some(b) = &mut bias {
            run.round_slice(b);
        }
        Self {
            w: self.w.to_element_via(run, input),
            bias,
            stored: self.stored.clone(),
            ..*self
        }
    }

    /// Fused column `col` as (matrix, column within it): "Wq", "Wk" or "Wv".
    fn column_name(&self, col: usize) -> (&'static str, usize) {
        let (qw, kvw) = (self.q_width as usize, self.kv_width as usize);
        if col < qw {
            ("Wq", col)
        } else if col < qw + kvw {
            ("Wk", col - qw)
        } else {
            ("Wv", col - qw - kvw)
        }
    }

    /// The projection shape these weights give for `tokens` rows of X.
    pub fn shape(&self, tokens: u32) -> Result<QkvShape> {
        QkvShape::new(
            tokens,
            self.d_model,
            self.q_width,
            self.kv_width,
            self.bias.is_some(),
        )
    }
}

/// W [d_model, n_out] interleaved from three matrices' rows, the shape they make (for one
/// token), and the fused bias.
fn fuse_parts<T: Copy>(
    d_model: u32,
    [q, k, v]: [Projection<T>; 3],
) -> Result<(Vec<T>, QkvShape, Option<Vec<f32>>)> {
    if k.width != v.width {
        return Err(Error::Shape(format!(
            "Wk has {} columns but Wv has {}; K and V must have the same width",
            k.width, v.width
        )));
    }
    let shape = QkvShape::new(1, d_model, q.width, k.width, q.bias.is_some())?;
    let d = d_model as usize;
    for (name, p) in [("Wq", q), ("Wk", k), ("Wv", v)] {
        let expected = d * p.width as usize;
        if p.w.len() != expected {
            return Err(Error::Shape(format!(
                "{name} has {} elements; [{d_model}, {}] needs {expected}",
                p.w.len(),
                p.width
            )));
        }
        if let Some(b) = p.bias {
            if b.len() != p.width as usize {
                return Err(Error::Shape(format!(
                    "the bias of {name} has {} elements; it needs {}",
                    b.len(),
                    p.width
                )));
            }
        }
    }
    let with_bias = [q, k, v].iter().filter(|p| p.bias.is_some()).count();
    if with_bias != 0 && with_bias != 3 {
        return Err(Error::Shape(
            "give a bias for all three of Q, K and V, or for none".into(),
        ));
    }
    let n_out = shape.n_out() as usize;
    let mut w = Vec::with_capacity(shape.w_len());
    for row in 0..d {
        for p in [q, k, v] {
            let width = p.width as usize;
            w.extend_from_slice(&p.w[row * width..(row + 1) * width]);
        }
    }
    debug_assert_eq!(w.len(), d * n_out);
    let bias = q.bias.map(|bq| {
        let mut b = Vec::with_capacity(n_out);
        b.extend_from_slice(bq);
        b.extend_from_slice(k.bias.unwrap_or_default());
        b.extend_from_slice(v.bias.unwrap_or_default());
        b
    });
    Ok((w, shape, bias))
}

/// Seeded inputs for a shape: X and fused weights (and bias, if the shape has one) drawn
/// uniformly from [-1, 1). The same seed gives the same numbers on every machine. X is
/// [`random_x_rows`] over all tokens, so a chunked run can generate the same X chunk by chunk.
pub fn random_inputs(shape: &QkvShape, seed: u64) -> (Vec<f32>, FusedWeights) {
    let mut x = vec![0f32; shape.x_len()];
    random_x_rows(shape.d_model, seed, 0..shape.tokens, &mut x);
    (x, random_weights(shape, seed))
}

/// Row-major [rows, cols] to row-major [cols, rows] (PyTorch's Linear [out, in] to this
/// crate's in-out [in, out]).
pub fn transpose<T: Copy + Default>(data: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::default(); data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// The seeded fused weights (and bias) of [`random_inputs`].
pub fn random_weights(shape: &QkvShape, seed: u64) -> FusedWeights {
    let mut rng = rand::rngs::StdRng::seed_from_u64(!seed);
    let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let w = draw(shape.w_len());
    let bias = shape.bias.then(|| draw(shape.n_out() as usize));
    FusedWeights {
        d_model: shape.d_model,
        q_width: shape.q_width,
        kv_width: shape.kv_width,
        w: WeightData::F32(w),
        bias,
        stored: None,
    }
}

/// Rows `rows` of the seeded X [tokens, d_model] into `out` [rows, d_model], uniform in
/// [-1, 1). Row r depends only on (seed, r), so any chunk can be generated on its own, and a
/// large one is generated on every core (the same numbers either way).
pub fn random_x_rows(d_model: u32, seed: u64, rows: Range<u32>, out: &mut [f32]) {
    random_x_rows_in(
        d_model,
        seed,
        rows,
        ElementsMut::F32(WriteOnly::from_mut(out)),
    );
}

/// [`random_x_rows`] generated directly in `out`'s storage type: each value is drawn in f32
/// and rounded to nearest even as it is stored (the f32 values rounded, with no f32 copy).
pub fn random_x_rows_in(d_model: u32, seed: u64, rows: Range<u32>, out: ElementsMut<'_>) {
    match out {
        ElementsMut::F32(d) => generate(d_model, seed, rows, d, |v| v),
        ElementsMut::Half(ElementType::F16, d) => {
            generate(d_model, seed, rows, d, |v| half::f16::from_f32(v).to_bits())
        }
        ElementsMut::Half(_, d) => generate(d_model, seed, rows, d, |v| {
            half::bf16::from_f32(v).to_bits()
        }),
    }
}

fn generate<T: Copy + Send>(
    d_model: u32,
    seed: u64,
    rows: Range<u32>,
    mut out: WriteOnly<'_, [T]>,
    store: impl Fn(f32) -> T + Copy + Send,
) {
    let d = d_model as usize;
    assert_eq!(out.len(), rows.len() * d, "out must hold [rows, d_model]");
    let threads = crate::host::threads();
    if threads > 1 && out.len() >= 1 << 20 && d > 0 {
        let per = rows.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let mut start = rows.start;
            while !out.is_empty() {
                let part;
                let at = (per * d).min(out.len());
                (part, out) = out.split_at(at);
                let end = start + (part.len() / d) as u32;
                let part = SendWriteOnly(part);
                scope.spawn(move || {
                    let part = part;
                    x_rows(d, seed, start..end, part.0, store)
                });
                start = end;
            }
        });
    } else {
        x_rows(d, seed, rows, out, store);
    }
}

fn x_rows<T: Copy>(
    d: usize,
    seed: u64,
    rows: Range<u32>,
    mut out: WriteOnly<'_, [T]>,
    store: impl Fn(f32) -> T,
) {
    for row in rows {
        let dst;
        (dst, out) = out.split_at(d);
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            seed ^ (row as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        dst.into_iter()
            .for_each(|v| v.write(store(rng.random_range(-1.0..1.0))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_axes() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }

    #[test]
    fn x_rows_generate_the_same_in_any_chunking() {
        let mut whole = vec![0f32; 10 * 3];
        random_x_rows(3, 42, 0..10, &mut whole);
        let mut part = vec![0f32; 4 * 3];
        random_x_rows(3, 42, 5..9, &mut part);
        assert_eq!(&whole[15..27], &part[..]);
        // A chunk large enough to be generated on several threads: the same rows.
        let d = 1000u32;
        let mut big = vec![0f32; 1100 * d as usize];
        random_x_rows(d, 7, 3..1103, &mut big);
        let mut one = vec![0f32; d as usize];
        for r in [3u32, 551, 1102] {
            random_x_rows(d, 7, r..r + 1, &mut one);
            let at = (r - 3) as usize * d as usize;
            assert_eq!(&big[at..at + d as usize], &one[..], "row {r}");
        }
        assert!(whole.iter().all(|v| (-1.0..1.0).contains(v)));
        assert!(whole.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn x_rows_in_a_half_type_are_the_f32_rows_rounded() {
        let d = 1000u32;
        let mut wide = vec![0f32; 1100 * d as usize];
        random_x_rows(d, 9, 0..1100, &mut wide);
        for e in [ElementType::F16, ElementType::Bf16] {
            let mut bits = crate::host::ElementVec::zeros(e, wide.len());
            random_x_rows_in(d, 9, 0..1100, bits.as_mut());
            let want: Vec<f32> = wide.iter().map(|&v| e.round(v)).collect();
            assert_eq!(bits.as_ref().to_f32(), want, "{e}");
        }
    }

    #[test]
    fn fuse_interleaves_rows_column_wise() {
        // d_model 2; Wq [2,2], Wk [2,1], Wv [2,1].
        let wq: &'static [f32] = &[1.0, 2.0, 3.0, 4.0];
        let wk: &'static [f32] = &[5.0, 6.0];
        let wv: &'static [f32] = &[7.0, 8.0];
        let p = |w: &'static [f32], width| Projection {
            w,
            width,
            bias: None,
        };
        let f = FusedWeights::fuse(2, p(wq, 2), p(wk, 1), p(wv, 1)).unwrap();
        assert_eq!(
            f.w,
            WeightData::F32(vec![1.0, 2.0, 5.0, 7.0, 3.0, 4.0, 6.0, 8.0])
        );
        // The same as bf16 patterns, kept as patterns.
        let bits = |w: &[f32]| -> Vec<u16> {
            w.iter()
                .map(|&v| half::bf16::from_f32(v).to_bits())
                .collect()
        };
        let (bq, bk, bv) = (bits(wq), bits(wk), bits(wv));
        let h = |w, width| Projection {
            w,
            width,
            bias: None,
        };
        let fb = FusedWeights::fuse_half(
            2,
            ElementType::Bf16,
            [h(&bq[..], 2), h(&bk[..], 1), h(&bv[..], 1)],
        )
        .unwrap();
        assert_eq!(fb.w.element(), ElementType::Bf16);
        assert_eq!(
            fb.w.values().collect::<Vec<_>>(),
            vec![1.0, 2.0, 5.0, 7.0, 3.0, 4.0, 6.0, 8.0]
        );
        assert_eq!(fb.to_element(ElementType::F32).unwrap(), f);
        assert_eq!(f.to_element(ElementType::Bf16).unwrap(), fb);
        assert!(FusedWeights::fuse_half(2, ElementType::F32, [h(&bq[..], 2); 3]).is_err());
        assert_eq!(f.n_out(), 4);
        assert!(f.bias.is_none());
    }

    #[test]
    fn fuse_rejects_wrong_lengths_and_partial_bias() {
        let w = [1.0f32; 4];
        let ok = Projection {
            w: &w,
            width: 2,
            bias: None,
        };
        let short = Projection {
            w: &w[..3],
            width: 2,
            bias: None,
        };
        assert!(FusedWeights::fuse(2, ok, short, ok).is_err());
        let b = [0.5f32; 2];
        let biased = Projection {
            bias: Some(&b),
            ..ok
        };
        let err = FusedWeights::fuse(2, biased, ok, ok)
            .unwrap_err()
            .to_string();
        assert!(err.contains("all three"), "{err}");
    }

    #[test]
    fn random_inputs_are_seeded_nonzero_and_in_range() {
        let s = QkvShape::new(3, 5, 4, 2, true).unwrap();
        let (x1, w1) = random_inputs(&s, 7);
        let (x2, w2) = random_inputs(&s, 7);
        let (x3, _) = random_inputs(&s, 8);
        assert_eq!((&x1, &w1), (&x2, &w2));
        assert_ne!(x1, x3);
        assert_eq!(w1.bias.as_ref().unwrap().len(), 8);
        assert!(x1.iter().all(|v| (-1.0..1.0).contains(v)));
        assert!(x1.iter().any(|v| *v != 0.0));
    }
}
