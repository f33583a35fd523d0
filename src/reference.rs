//! The CPU reference: Q, K and V with every sum accumulated in f64, and beside each element
//! its magnitude Σ_i |x_i·w_i| + |b|, the scale of its own rounding error
//! ([`crate::Tolerance`]). It is the accuracy oracle that every GPU result is checked
//! against, not a speed baseline.

use crate::shape::QkvShape;
use crate::weights::FusedWeights;

/// Q [tokens, q_width], K and V [tokens, kv_width], in f64, and each element's magnitude
/// Σ_i |x_i·w_i| + |b| (same layout).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// Q, row-major.
    pub q: Vec<f64>,
    /// K, row-major.
    pub k: Vec<f64>,
    /// V, row-major.
    pub v: Vec<f64>,
    /// Σ|x·w| + |b| of each element of Q.
    pub q_mag: Vec<f64>,
    /// Of K.
    pub k_mag: Vec<f64>,
    /// Of V.
    pub v_mag: Vec<f64>,
}

impl Reference {
    /// Q and K after `ep` over `heads` (token-major; row i the batch's token `rows[i]`, or
    /// with `rows` None token i), their magnitudes carried through it
    /// ([`crate::epilogue::Epilogue::apply_with_magnitudes`]); V as it was.
    pub fn with_epilogue(
        mut self,
        ep: &crate::epilogue::Epilogue,
        heads: &crate::epilogue::Heads,
        rows: Option<&[usize]>,
    ) -> Self {
        ep.apply_with_magnitudes(
            (&mut self.q, &mut self.q_mag),
            (&mut self.k, &mut self.k_mag),
            heads,
            rows,
        );
        self
    }

    /// Each of the six matrices rearranged by `f` (Q and its magnitudes by `fq`, K and V
    /// and theirs by `fkv`): for a head layout.
    pub fn map(&self, fq: impl Fn(&[f64]) -> Vec<f64>, fkv: impl Fn(&[f64]) -> Vec<f64>) -> Self {
        Self {
            q: fq(&self.q),
            k: fkv(&self.k),
            v: fkv(&self.v),
            q_mag: fq(&self.q_mag),
            k_mag: fkv(&self.k_mag),
            v_mag: fkv(&self.v_mag),
        }
    }
}

/// Computes the fused rows `rows` of X . W + b into `out` and of |X| . |W| + |b| into `mag`
/// ([rows.len(), n_out], f64).
fn fused_rows(
    shape: &QkvShape,
    x: &[f32],
    weights: &FusedWeights,
    rows: std::ops::Range<usize>,
    (out, mag): (&mut [f64], &mut [f64]),
) {
    let d = shape.d_model as usize;
    let n = shape.n_out() as usize;
    // W rows as f32: borrowed, or widened from a half type into `buf` row by row.
    let mut buf = Vec::new();
    for (row, (acc, m)) in rows.zip(out.chunks_exact_mut(n).zip(mag.chunks_exact_mut(n))) {
        match &weights.bias {
            Some(b) => {
                acc.iter_mut().zip(b).for_each(|(a, &b)| *a = b as f64);
                m.iter_mut()
                    .zip(b)
                    .for_each(|(a, &b)| *a = (b as f64).abs());
            }
            None => {
                acc.fill(0.0);
                m.fill(0.0);
            }
        }
        // i outer, j inner: W is read row by row, contiguously.
        for (i, &xi) in x[row * d..(row + 1) * d].iter().enumerate() {
            let xi = xi as f64;
            let w_row = weights.w.slice(i * n..(i + 1) * n, &mut buf);
            for ((a, m), &wij) in acc.iter_mut().zip(m.iter_mut()).zip(w_row) {
                let t = xi * wij as f64;
                *a += t;
                *m += t.abs();
            }
        }
    }
}

/// Q = X . Wq + bq, K = X . Wk + bk, V = X . Wv + bv with f64 accumulation.
///
/// `x` is [tokens, d_model] row-major; `weights` must match `shape` (checked by callers that
/// build both from one source; mismatched lengths panic here as a programming error).
/// Rows are split across the machine's cores (with the `native` feature; one thread in the
/// browser).
pub fn reference(shape: &QkvShape, x: &[f32], weights: &FusedWeights) -> Reference {
    if weights.stored.is_some() {
        // W in blocks: exactly the values the kernels dequantize.
        return reference(shape, x, &weights.dequantized());
    }
    assert_eq!(x.len(), shape.x_len(), "X does not match the shape");
    assert_eq!(weights.w.len(), shape.w_len(), "W does not match the shape");
    let tokens = shape.tokens as usize;
    let n = shape.n_out() as usize;
    let mut fused = vec![0f64; tokens * n];
    let mut mag = vec![0f64; tokens * n];
    let threads = crate::host::threads();
    if threads == 1 {
        fused_rows(shape, x, weights, 0..tokens, (&mut fused, &mut mag));
    } else {
        let rows_per = tokens.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let parts = fused
                .chunks_mut(rows_per * n)
                .zip(mag.chunks_mut(rows_per * n));
            for (chunk, (out, m)) in parts.enumerate() {
                let start = chunk * rows_per;
                let rows = start..start + out.len() / n;
                scope.spawn(move || fused_rows(shape, x, weights, rows, (out, m)));
            }
        });
    }
    let (qw, kvw) = (shape.q_width as usize, shape.kv_width as usize);
    // Splits fused [tokens, n_out] into Q [tokens, qw], K and V [tokens, kvw].
    let split = |fused: &[f64]| {
        let (mut q, mut k, mut v) = (
            Vec::with_capacity(tokens * qw),
            Vec::with_capacity(tokens * kvw),
            Vec::with_capacity(tokens * kvw),
        );
        for row in fused.chunks_exact(n) {
            q.extend_from_slice(&row[..qw]);
            k.extend_from_slice(&row[qw..qw + kvw]);
            v.extend_from_slice(&row[qw + kvw..]);
        }
        (q, k, v)
    };
    let (q, k, v) = split(&fused);
    let (q_mag, k_mag, v_mag) = split(&mag);
    Reference {
        q,
        k,
        v,
        q_mag,
        k_mag,
        v_mag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::random_inputs;

    #[test]
    fn worked_example_is_exact() {
        // x = (2, 3), W = [[1, 10], [0, -1]] gives (2, 17), for each of Q, K and V.
        let shape = QkvShape::new(1, 2, 2, 2, false).unwrap();
        let row = |a: f32, b: f32| [a, b, a, b, a, b];
        let w: Vec<f32> = [row(1.0, 10.0), row(0.0, -1.0)].concat();
        let weights = FusedWeights {
            d_model: 2,
            q_width: 2,
            kv_width: 2,
            w: crate::weights::WeightData::F32(w),
            bias: None,
            stored: None,
        };
        let r = reference(&shape, &[2.0, 3.0], &weights);
        assert_eq!(r.q, vec![2.0, 17.0]);
        // |2·1| + |3·0| and |2·10| + |3·(-1)|.
        assert_eq!(r.q_mag, vec![2.0, 23.0]);
        // The same from bf16 patterns (every value is exact in bf16).
        let half = weights.rounded(crate::element::ElementType::Bf16);
        assert!(matches!(half.w, crate::weights::WeightData::Half(..)));
        assert_eq!(reference(&shape, &[2.0, 3.0], &half), r);
        assert_eq!(r.k, vec![2.0, 17.0]);
        assert_eq!(r.v, vec![2.0, 17.0]);
    }

    #[test]
    fn threaded_rows_match_a_plain_triple_loop() {
        let shape = QkvShape::new(13, 7, 5, 3, true).unwrap();
        let (x, w) = random_inputs(&shape, 1);
        let r = reference(&shape, &x, &w);
        let n = shape.n_out() as usize;
        for t in 0..13 {
            for j in 0..n {
                let mut acc = w.bias.as_ref().unwrap()[j] as f64;
                for i in 0..7 {
                    acc += x[t * 7 + i] as f64 * w.w.as_f32().unwrap()[i * n + j] as f64;
                }
                let got = match j {
                    j if j < 5 => r.q[t * 5 + j],
                    j if j < 8 => r.k[t * 3 + j - 5],
                    j => r.v[t * 3 + j - 8],
                };
                assert_eq!(got, acc, "row {t} col {j}");
                let mut m = w.bias.as_ref().unwrap()[j].abs() as f64;
                for i in 0..7 {
                    m += (x[t * 7 + i] as f64 * w.w.as_f32().unwrap()[i * n + j] as f64).abs();
                }
                let got = match j {
                    j if j < 5 => r.q_mag[t * 5 + j],
                    j if j < 8 => r.k_mag[t * 3 + j - 5],
                    j => r.v_mag[t * 3 + j - 8],
                };
                assert_eq!(got, m, "magnitude of row {t} col {j}");
            }
        }
    }
}
