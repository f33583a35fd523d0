//! Validation of GPU results against the f64 reference. One condition decides and reports:
//! an element passes when |gpu - ref| <= atol + rtol * |ref| (NaN matches NaN and an infinity
//! matches the same infinity, so inputs that carry them compare like for like).

use serde::Serialize;
use std::fmt;

/// The tolerance of the check `|gpu - ref| <= atol + rtol * |ref|`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerance {
    /// Absolute part.
    pub atol: f64,
    /// Relative part.
    pub rtol: f64,
}

impl Tolerance {
    /// The default for f32 accumulation of dot products of length `d_model` whose terms are
    /// bounded by `x_absmax * w_absmax`.
    ///
    /// Rounding each of the d_model f32 additions adds an error of at most 2^-24 of the
    /// running sum; those errors are close to independent, so the total grows like
    /// sqrt(d_model) x 2^-24 x (partial sums of size up to sqrt(d_model) x term). `atol` is
    /// 1e-5 x sqrt(d_model) x x_absmax x w_absmax, a margin of about 100x over that typical
    /// error at d_model 768 and still far below any real bug (a wrong index or a missed term
    /// moves an element by about one term, x_absmax x w_absmax). `rtol` = 1e-4 covers results
    /// much larger than their terms (a bias of large magnitude).
    pub fn for_f32_accumulation(d_model: u32, x_absmax: f32, w_absmax: f32) -> Self {
        let scale = x_absmax as f64 * w_absmax as f64;
        let scale = if scale.is_finite() { scale } else { 0.0 };
        Self {
            atol: 1e-5 * (d_model.max(1) as f64).sqrt() * scale,
            rtol: 1e-4,
        }
    }

    /// [`Tolerance::for_f32_accumulation`] for these inputs: the scale is the largest finite
    /// |x| times the largest finite |w| or |bias|.
    pub fn for_inputs(d_model: u32, x: &[f32], weights: &crate::weights::FusedWeights) -> Self {
        Self::for_f32_accumulation(d_model, absmax(x), weights.absmax())
    }

    /// This tolerance for results stored as `element`: the f32 accumulation's bound plus the
    /// kernels' final rounding of the f32 result to the storage type.
    ///
    /// The inputs the reference reads are the rounded ones the GPU read, so input rounding
    /// costs nothing here (its cost is reported apart, as the precision cost). Products of two
    /// f16 or bf16 values are exact in f32 (11 + 11 and 8 + 8 significant bits fit in 24), so
    /// accumulation errs as in f32, by at most `atol + rtol |ref|`. The f32 result `g` is then
    /// rounded once to nearest even, with a relative error of at most `u`
    /// ([`crate::ElementType::rounding_rel`]: half an ulp) plus half of f16's subnormal spacing `s`;
    /// since `|g| <= |ref| + atol + rtol |ref|`, the total is at most
    /// `atol (1 + u) + s + (rtol (1 + u) + u) |ref|`. For f32 it is the f32 tolerance.
    pub fn for_output(self, element: crate::element::ElementType) -> Self {
        let u = element.rounding_rel();
        Self {
            atol: self.atol * (1.0 + u) + element.rounding_abs(),
            rtol: self.rtol * (1.0 + u) + u,
        }
    }

    /// This tolerance (an f32 accumulation's, [`for_f32_accumulation`](Self::for_f32_accumulation))
    /// for an f16 accumulator instead: `coopmat(acc=16)`, for adapters that offer no f32 one.
    ///
    /// Each addition then rounds the running sum to f16, whose unit roundoff 2^-11 is 2^13
    /// times f32's 2^-24; the error model is the same, so `atol` scales by 2^13 (to
    /// 0.082 x sqrt(d_model) x max|x| x max|w|). `rtol` stays: the kernel adds the bias in f32,
    /// after the accumulation. Past d_model of about 150 this `atol` exceeds one term, so a
    /// single missed or doubled term may pass: the check still catches wrong rows, columns and
    /// unwritten (NaN) elements, not every indexing slip. Apply before
    /// [`for_output`](Self::for_output).
    pub fn for_f16_accumulator(self) -> Self {
        Self {
            atol: self.atol * 8192.0,
            rtol: self.rtol,
        }
    }

    /// This tolerance (an f32 accumulation's) for the results of `spec`: its accumulator's
    /// ([`for_f16_accumulator`](Self::for_f16_accumulator) where it accumulates in f16), then
    /// the final rounding to its storage type ([`for_output`](Self::for_output)).
    pub fn for_kernel(self, spec: &crate::kernels::KernelSpec) -> Self {
        let acc = if spec.accumulates_in_f16() {
            self.for_f16_accumulator()
        } else {
            self
        };
        acc.for_output(spec.element)
    }

    /// Whether one element passes. This is the only place the condition is written.
    pub fn accepts(&self, gpu: f32, reference: f64) -> bool {
        let g = gpu as f64;
        if g.is_nan() && reference.is_nan() || g == reference {
            return true;
        }
        // Otherwise a non-finite value on either side is a mismatch: the bound below would
        // accept +inf against -inf, since atol + rtol * inf is itself infinite.
        if !g.is_finite() || !reference.is_finite() {
            return false;
        }
        (g - reference).abs() <= self.atol + self.rtol * reference.abs()
    }
}

/// The largest finite absolute value in `data` (0 for none); the scale tolerances use.
pub fn absmax(data: &[f32]) -> f32 {
    data.iter()
        .filter(|v| v.is_finite())
        .fold(0f32, |m, v| m.max(v.abs()))
}

/// One element that failed the check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Mismatch {
    /// Row (token).
    pub row: usize,
    /// Column within the output.
    pub col: usize,
    /// What the GPU wrote (NaN: never written, or computed as NaN).
    pub gpu: f32,
    /// The f64 reference.
    pub reference: f64,
}

/// The check of one output matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "Q", "K" or "V".
    pub name: &'static str,
    /// Elements compared.
    pub elements: usize,
    /// Largest |gpu - ref| (infinite when an element is NaN or infinite on one side only).
    pub max_abs_err: f64,
    /// Largest |gpu - ref| / |ref| over elements with ref != 0.
    pub max_rel_err: f64,
    /// ||gpu - ref||_2 / ||ref||_2 over elements that are finite on both sides.
    pub rel_l2_err: f64,
    /// Elements that failed the check.
    pub mismatches: usize,
    /// The first few of them, in row-major order.
    pub first_mismatches: Vec<Mismatch>,
    /// The tolerance applied.
    pub tolerance: Tolerance,
    /// True when no element failed.
    pub pass: bool,
    /// Sums of squared differences and squared references behind `rel_l2_err`, so that
    /// reports of chunks can be merged.
    #[serde(skip)]
    l2_sums: (f64, f64),
}

/// How many mismatches a report keeps for printing.
pub const MISMATCHES_SHOWN: usize = 5;

/// Checks `gpu` against `reference`, both [rows, cols] row-major, with `tol`.
pub fn validate(
    name: &'static str,
    gpu: &[f32],
    reference: &[f64],
    cols: usize,
    tol: Tolerance,
) -> Report {
    assert_eq!(gpu.len(), reference.len(), "{name}: lengths differ");
    let mut report = Report {
        name,
        elements: gpu.len(),
        max_abs_err: 0.0,
        max_rel_err: 0.0,
        rel_l2_err: 0.0,
        mismatches: 0,
        first_mismatches: Vec::new(),
        tolerance: tol,
        pass: true,
        l2_sums: (0.0, 0.0),
    };
    let (mut diff2, mut ref2) = (0f64, 0f64);
    for (i, (&g, &r)) in gpu.iter().zip(reference).enumerate() {
        let ok = tol.accepts(g, r);
        let g64 = g as f64;
        if g64.is_finite() && r.is_finite() {
            let err = (g64 - r).abs();
            report.max_abs_err = report.max_abs_err.max(err);
            if r != 0.0 {
                report.max_rel_err = report.max_rel_err.max(err / r.abs());
            }
            diff2 += err * err;
            ref2 += r * r;
        } else if !ok {
            report.max_abs_err = f64::INFINITY;
            report.max_rel_err = f64::INFINITY;
        }
        if !ok {
            report.mismatches += 1;
            if report.first_mismatches.len() < MISMATCHES_SHOWN {
                report.first_mismatches.push(Mismatch {
                    row: i / cols.max(1),
                    col: i % cols.max(1),
                    gpu: g,
                    reference: r,
                });
            }
        }
    }
    report.l2_sums = (diff2, ref2);
    report.finish();
    report
}

impl Report {
    fn finish(&mut self) {
        let (diff2, ref2) = self.l2_sums;
        self.rel_l2_err = if self.max_abs_err.is_infinite() {
            f64::INFINITY
        } else if ref2 > 0.0 {
            (diff2 / ref2).sqrt()
        } else {
            diff2.sqrt()
        };
        self.pass = self.mismatches == 0;
    }

    /// Folds in the check of more rows of the same output (another chunk, say), as if both
    /// had been checked at once. `row_offset` is added to `other`'s mismatch rows.
    pub fn merge(&mut self, other: &Report, row_offset: usize) {
        self.elements += other.elements;
        self.max_abs_err = self.max_abs_err.max(other.max_abs_err);
        self.max_rel_err = self.max_rel_err.max(other.max_rel_err);
        self.mismatches += other.mismatches;
        for m in &other.first_mismatches {
            if self.first_mismatches.len() < MISMATCHES_SHOWN {
                self.first_mismatches.push(Mismatch {
                    row: m.row + row_offset,
                    ..*m
                });
            }
        }
        self.l2_sums.0 += other.l2_sums.0;
        self.l2_sums.1 += other.l2_sums.1;
        self.finish();
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} elements, max abs err {:.3e}, max rel err {:.3e}, rel L2 err {:.3e}, \
             {} mismatches -> {}",
            self.name,
            self.elements,
            self.max_abs_err,
            self.max_rel_err,
            self.rel_l2_err,
            self.mismatches,
            if self.pass { "PASS" } else { "FAIL" }
        )?;
        for m in &self.first_mismatches {
            write!(
                f,
                "\n    [{}, {}]: gpu {:e}, reference {:e}",
                m.row, m.col, m.gpu, m.reference
            )?;
        }
        if self.mismatches > self.first_mismatches.len() {
            write!(
                f,
                "\n    ... and {} more",
                self.mismatches - self.first_mismatches.len()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Tolerance = Tolerance {
        atol: 1e-5,
        rtol: 1e-4,
    };

    #[test]
    fn exact_and_within_tolerance_pass() {
        let r = validate("Q", &[1.0, 2.0, 3.0], &[1.0, 2.0000001, 3.0], 3, TOL);
        assert!(r.pass, "{r}");
        assert_eq!(r.mismatches, 0);
    }

    #[test]
    fn a_planted_wrong_element_fails_and_is_located() {
        let gpu = [1.0, 2.0, 3.0, 4.5, 5.0, 6.0];
        let reference = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let r = validate("K", &gpu, &reference, 3, TOL);
        assert!(!r.pass);
        assert_eq!(r.mismatches, 1);
        assert_eq!(
            r.first_mismatches[0],
            Mismatch {
                row: 1,
                col: 0,
                gpu: 4.5,
                reference: 4.0
            }
        );
        assert!((r.max_abs_err - 0.5).abs() < 1e-12);
        assert!(r.to_string().contains("[1, 0]: gpu 4.5e0, reference 4e0"));
    }

    #[test]
    fn an_unwritten_nan_element_fails() {
        let r = validate("V", &[1.0, f32::NAN], &[1.0, 2.0], 2, TOL);
        assert!(!r.pass);
        assert_eq!(r.mismatches, 1);
        assert!(r.max_abs_err.is_infinite());
        assert!(r.to_string().contains("FAIL"));
    }

    #[test]
    fn nan_matches_nan_and_infinities_match_themselves() {
        let r = validate(
            "Q",
            &[f32::NAN, f32::INFINITY],
            &[f64::NAN, f64::INFINITY],
            2,
            TOL,
        );
        assert!(r.pass, "{r}");
        let r = validate("Q", &[f32::INFINITY], &[f64::NEG_INFINITY], 1, TOL);
        assert!(!r.pass);
    }

    #[test]
    fn merged_reports_equal_one_report_of_all_rows() {
        let gpu = [1.0, 2.0, 3.0, 4.5, 5.0, 6.25];
        let reference = [1.0, 2.1, 3.0, 4.0, 5.0, 6.0];
        let whole = validate("Q", &gpu, &reference, 2, TOL);
        let mut merged = validate("Q", &gpu[..2], &reference[..2], 2, TOL);
        merged.merge(&validate("Q", &gpu[2..], &reference[2..], 2, TOL), 1);
        assert_eq!(merged.elements, whole.elements);
        assert_eq!(merged.mismatches, whole.mismatches);
        assert_eq!(merged.first_mismatches, whole.first_mismatches);
        assert!((merged.rel_l2_err - whole.rel_l2_err).abs() < 1e-15);
        assert_eq!(merged.max_abs_err, whole.max_abs_err);
        assert!(!merged.pass);
    }

    #[test]
    fn tolerance_scales_with_d_model_and_magnitudes() {
        let a = Tolerance::for_f32_accumulation(100, 1.0, 1.0);
        let b = Tolerance::for_f32_accumulation(400, 1.0, 1.0);
        assert!((b.atol / a.atol - 2.0).abs() < 1e-12);
        let c = Tolerance::for_f32_accumulation(100, 2.0, 3.0);
        assert!((c.atol / a.atol - 6.0).abs() < 1e-12);
        assert_eq!(absmax(&[-3.0, 2.0, f32::NAN, f32::INFINITY]), 3.0);
    }
}

/// The check of all three outputs of one projection.
#[derive(Debug, Clone, Serialize)]
pub struct QkvReport {
    /// Q against the reference.
    pub q: Report,
    /// K against the reference.
    pub k: Report,
    /// V against the reference.
    pub v: Report,
}

impl QkvReport {
    /// Checks Q, K and V of one run (q: [tokens, q_width], k and v: [tokens, kv_width]).
    pub fn new(
        gpu: (&[f32], &[f32], &[f32]),
        reference: &crate::reference::Reference,
        q_width: u32,
        kv_width: u32,
        tol: Tolerance,
    ) -> Self {
        Self {
            q: validate("Q", gpu.0, &reference.q, q_width as usize, tol),
            k: validate("K", gpu.1, &reference.k, kv_width as usize, tol),
            v: validate("V", gpu.2, &reference.v, kv_width as usize, tol),
        }
    }

    /// Folds in the check of more rows (another chunk); `row_offset` is added to the rows
    /// `other` names.
    pub fn merge(&mut self, other: &QkvReport, row_offset: usize) {
        self.q.merge(&other.q, row_offset);
        self.k.merge(&other.k, row_offset);
        self.v.merge(&other.v, row_offset);
    }

    /// Checks a token-major run of `shape` against its reference.
    pub fn of(
        out: &crate::projector::QkvOutput,
        reference: &crate::reference::Reference,
        shape: &crate::shape::QkvShape,
        tol: Tolerance,
    ) -> Self {
        Self::new(
            (&out.q, &out.k, &out.v),
            reference,
            shape.q_width,
            shape.kv_width,
            tol,
        )
    }

    /// The three reports.
    pub fn parts(&self) -> [&Report; 3] {
        [&self.q, &self.k, &self.v]
    }

    /// True when all three pass.
    pub fn pass(&self) -> bool {
        self.parts().iter().all(|r| r.pass)
    }

    /// The worst max absolute error of the three.
    pub fn max_abs_err(&self) -> f64 {
        self.parts()
            .iter()
            .map(|r| r.max_abs_err)
            .fold(0.0, f64::max)
    }

    /// The worst max relative error of the three.
    pub fn max_rel_err(&self) -> f64 {
        self.parts()
            .iter()
            .map(|r| r.max_rel_err)
            .fold(0.0, f64::max)
    }

    /// The worst relative L2 error of the three.
    pub fn rel_l2_err(&self) -> f64 {
        self.parts()
            .iter()
            .map(|r| r.rel_l2_err)
            .fold(0.0, f64::max)
    }
}
