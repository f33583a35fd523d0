//! The fast CPU baseline that GPU speed is compared with: the fused projection as one f32
//! GEMM, X [tokens, d_model] · W [d_model, n_out] + b, through matrixmultiply's threaded,
//! SIMD micro-kernel sgemm. (The f64 [`crate::reference`] stays the accuracy oracle.)

use crate::shape::QkvShape;
use crate::weights::FusedWeights;

/// Threads the baseline uses: matrixmultiply's `MATMUL_NUM_THREADS`, else every core.
pub fn threads() -> usize {
    std::env::var("MATMUL_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Computes the fused [tokens, n_out] output into `out` (allocated by the caller, so a timed
/// loop measures the GEMM and not the allocation).
///
/// `x` is [tokens, d_model], `weights` must match `shape`; panics on mismatched lengths (a
/// programming error: every caller builds both from one shape).
pub fn fused_gemm(shape: &QkvShape, x: &[f32], weights: &FusedWeights, out: &mut [f32]) {
    let (m, k, n) = (
        shape.tokens as usize,
        shape.d_model as usize,
        shape.n_out() as usize,
    );
    assert_eq!(x.len(), m * k, "X does not match the shape");
    if weights.stored.is_some() {
        return fused_gemm(shape, x, &weights.dequantized(), out);
    }
    assert_eq!(weights.w.len(), k * n, "W does not match the shape");
    // An f32 GEMM: half-typed weights are widened (the baseline is f32 in every case).
    let widened: Vec<f32>;
    let w: &[f32] = match weights.w.as_f32() {
        Some(w) => w,
        None => {
            widened = weights.w.values().collect();
            &widened
        }
    };
    assert_eq!(out.len(), m * n, "the output does not match the shape");
    let beta = match &weights.bias {
        Some(b) => {
            for row in out.chunks_exact_mut(n) {
                row.copy_from_slice(b);
            }
            1.0
        }
        None => 0.0,
    };
    // SAFETY: the pointers cover m*k, k*n and m*n elements with the row-major strides given,
    // as checked above; `out` is not aliased by `x` or `w`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            x.as_ptr(),
            k as isize,
            1,
            w.as_ptr(),
            n as isize,
            1,
            beta,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::reference;
    use crate::validate::{validate, Tolerance};
    use crate::weights::random_inputs;

    #[test]
    fn the_baseline_matches_the_reference() {
        for bias in [false, true] {
            let shape = QkvShape::new(37, 65, 24, 8, bias).unwrap();
            let (x, w) = random_inputs(&shape, 3);
            let mut out = vec![f32::NAN; 37 * 40];
            fused_gemm(&shape, &x, &w, &mut out);
            let r = reference(&shape, &x, &w);
            let q: Vec<f32> = out
                .chunks_exact(40)
                .flat_map(|row| row[..24].to_vec())
                .collect();
            let v: Vec<f32> = out
                .chunks_exact(40)
                .flat_map(|row| row[32..].to_vec())
                .collect();
            let tol = Tolerance::for_f32_accumulation(65);
            assert!(validate("Q", &q, (&r.q, &r.q_mag), 24, tol).pass);
            assert!(validate("V", &v, (&r.v, &r.v_mag), 8, tol).pass);
        }
    }
}
