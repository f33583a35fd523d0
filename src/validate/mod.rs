//! Validation of GPU results against the f64 reference. One condition decides and reports:
//! an element passes when |gpu - ref| <= atol + rtol·|ref| + terms·Σ|x·w| (NaN matches NaN
//! and an infinity matches the same infinity, so inputs that carry them compare like for
//! like), where Σ|x·w| is the element's own sum of |terms| (and |bias|), computed in f64
//! beside the reference: each element is held to the rounding bound of its own dot product,
//! so an outlier row or column widens nothing but itself.
//!
//! The check is sound both ways. `terms` is the probabilistic bound (errors that cancel, as
//! independent roundings do); `sound_terms` the deterministic one that holds for every
//! summation order and every way the roundings fall. An element within the first passes;
//! one past it but within the second passes **flagged** (its errors did not cancel: a
//! correct result all the same, reported with how many and the worst); past the second it
//! fails. A correct result never fails, and a wrong one fails once its error is past what
//! any f32 summation of the same terms could produce.

use serde::Serialize;
use std::fmt;

mod tolerance;
pub use tolerance::{gamma_n, Tolerance, ToleranceOverrides, Verdict, F32_UNIT_ROUNDOFF, LAMBDA};

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
    /// Largest |gpu - ref| / Σ|x·w| (the element's sum of |terms| and |bias|) over elements
    /// with a non-zero sum: the error as a fraction of what the element was summed from,
    /// which stays meaningful where the result itself is near zero.
    pub max_rel_err: f64,
    /// ||gpu - ref||_2 / ||ref||_2 over elements that are finite on both sides.
    pub rel_l2_err: f64,
    /// Elements that failed the check: past the deterministic bound.
    pub mismatches: usize,
    /// Elements past the probabilistic bound but within the deterministic one: correct, but
    /// their rounding errors did not cancel ([`Verdict::Flagged`]).
    pub flagged: usize,
    /// The largest |gpu - ref| / Σ|x·w| among the flagged elements (0 for none), to set
    /// beside the two bounds' parts.
    pub worst_flagged: f64,
    /// Elements of the whole output, checked rows or not, that are NaN or infinite
    /// ([`Report::add_non_finite`]): with finite inputs, an overflow. Any fails the report.
    pub non_finite: usize,
    /// Where the first of them is (row, column; the column within the output's row in its
    /// layout).
    pub first_non_finite: Option<(usize, usize)>,
    /// The first few of them, in row-major order.
    pub first_mismatches: Vec<Mismatch>,
    /// The tolerance applied.
    pub tolerance: Tolerance,
    /// Which bound decided the verdict: "deterministic" when an element failed it or was
    /// flagged within it, "probabilistic" when every element was within that one,
    /// "non-finite" when only NaN or infinite elements of the whole output failed.
    pub decided_by: &'static str,
    /// True when no element failed.
    pub pass: bool,
    /// Sums of squared differences and squared references behind `rel_l2_err`, so that
    /// reports of chunks can be merged.
    #[serde(skip)]
    l2_sums: (f64, f64),
}

/// How many mismatches a report keeps for printing.
pub const MISMATCHES_SHOWN: usize = 5;

/// Checks `gpu` against `reference`, both [rows, cols] row-major, with `tol`; `magnitude`
/// holds each element's Σ|x·w| + |b| ([`crate::Reference`]).
pub fn validate(
    name: &'static str,
    gpu: &[f32],
    (reference, magnitude): (&[f64], &[f64]),
    cols: usize,
    tol: Tolerance,
) -> Report {
    assert_eq!(gpu.len(), reference.len(), "{name}: lengths differ");
    assert_eq!(gpu.len(), magnitude.len(), "{name}: lengths differ");
    let mut report = Report {
        name,
        elements: gpu.len(),
        max_abs_err: 0.0,
        max_rel_err: 0.0,
        rel_l2_err: 0.0,
        mismatches: 0,
        flagged: 0,
        worst_flagged: 0.0,
        non_finite: 0,
        first_non_finite: None,
        first_mismatches: Vec::new(),
        tolerance: tol,
        decided_by: "probabilistic",
        pass: true,
        l2_sums: (0.0, 0.0),
    };
    let (mut diff2, mut ref2) = (0f64, 0f64);
    for (i, ((&g, &r), &m)) in gpu.iter().zip(reference).zip(magnitude).enumerate() {
        let verdict = tol.judge(g, r, m);
        let ok = verdict != Verdict::Fail;
        let g64 = g as f64;
        if g64.is_finite() && r.is_finite() {
            let err = (g64 - r).abs();
            report.max_abs_err = report.max_abs_err.max(err);
            if m > 0.0 && m.is_finite() {
                report.max_rel_err = report.max_rel_err.max(err / m);
            }
            if verdict == Verdict::Flagged {
                report.flagged += 1;
                let rel = if m > 0.0 { err / m } else { f64::INFINITY };
                report.worst_flagged = report.worst_flagged.max(rel);
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
        self.decided_by = if self.mismatches > 0 || self.flagged > 0 {
            "deterministic"
        } else if self.non_finite > 0 {
            "non-finite"
        } else {
            "probabilistic"
        };
        let (diff2, ref2) = self.l2_sums;
        self.rel_l2_err = if self.max_abs_err.is_infinite() {
            f64::INFINITY
        } else if ref2 > 0.0 {
            (diff2 / ref2).sqrt()
        } else {
            diff2.sqrt()
        };
        self.pass = self.mismatches == 0 && self.non_finite == 0;
    }

    /// Counts `count` NaN or infinite elements found in the output (by a scan of every
    /// element, [`crate::Elements::non_finite`], not only the rows checked against the
    /// reference), the first at `first` (row, column). Any fails the report: the inputs
    /// were checked finite, so such an element is an overflow (past f16's 65504, say) or a
    /// kernel that wrote garbage.
    pub fn add_non_finite(&mut self, count: usize, first: Option<(usize, usize)>) {
        if self.first_non_finite.is_none() {
            self.first_non_finite = first;
        }
        self.non_finite += count;
        self.finish();
    }

    /// Folds in the check of more rows of the same output (another chunk, say), as if both
    /// had been checked at once. `row_offset` is added to `other`'s mismatch rows.
    pub fn merge(&mut self, other: &Report, row_offset: usize) {
        self.elements += other.elements;
        self.max_abs_err = self.max_abs_err.max(other.max_abs_err);
        self.max_rel_err = self.max_rel_err.max(other.max_rel_err);
        self.mismatches += other.mismatches;
        self.flagged += other.flagged;
        self.worst_flagged = self.worst_flagged.max(other.worst_flagged);
        if self.first_non_finite.is_none() {
            self.first_non_finite = other.first_non_finite.map(|(r, c)| (r + row_offset, c));
        }
        self.non_finite += other.non_finite;
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
            "{}: {} elements, max abs err {:.3e}, max err/Σ|x·w| {:.3e}, rel L2 err {:.3e}, \
             {} mismatches -> {}",
            self.name,
            self.elements,
            self.max_abs_err,
            self.max_rel_err,
            self.rel_l2_err,
            self.mismatches,
            if self.pass && self.flagged > 0 {
                "PASS (flagged)"
            } else if self.pass {
                "PASS"
            } else {
                "FAIL"
            }
        )?;
        if self.flagged > 0 {
            write!(
                f,
                "\n    {} element(s) past the probabilistic bound (ttol {:.3e}) but within the \
                 deterministic one (ttol {:.3e}), the worst at {:.3e} of Σ|x·w|: errors did \
                 not cancel, the result is still correct",
                self.flagged, self.tolerance.terms, self.tolerance.sound_terms, self.worst_flagged
            )?;
        }
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
        if self.mismatches > 0 {
            write!(
                f,
                "\n    {} element(s) past the deterministic bound (ttol {:.3e} of Σ|x·w|)",
                self.mismatches, self.tolerance.sound_terms
            )?;
        }
        if self.non_finite > 0 {
            write!(
                f,
                "\n    {} element(s) of {} are NaN or infinite (an overflow: the inputs are finite)",
                self.non_finite, self.name
            )?;
            if let Some((r, c)) = self.first_non_finite {
                write!(f, ", the first at row {r}, column {c}")?;
            }
            write!(f, " -> FAIL")?;
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
        terms: 0.0,
        sound_terms: 0.0,
    };

    /// `validate` with magnitudes of 1.
    fn validate(name: &'static str, gpu: &[f32], r: &[f64], cols: usize, tol: Tolerance) -> Report {
        super::validate(name, gpu, (r, &vec![1.0; r.len()]), cols, tol)
    }

    #[test]
    fn errors_that_do_not_cancel_pass_flagged_and_past_the_sound_bound_fail() {
        // Issue #32: X = 1, W = 1.1 over d_model 4096, summed in order in f32: every
        // rounding goes the same way, past the probabilistic bound, inside the deterministic
        // one. Correct: it must pass, flagged. One term missed is past both: FAIL.
        let d = 4096;
        let w = 1.1f32;
        let sequential = (0..d).fold(0f32, |acc, _| acc + w);
        let reference = d as f64 * w as f64;
        let magnitude = reference;
        let tol = Tolerance::for_f32_accumulation(d as u32);
        let err = (sequential as f64 - reference).abs() / magnitude;
        assert!(err > tol.terms && err <= tol.sound_terms, "{err} {tol:?}");
        assert_eq!(
            tol.judge(sequential, reference, magnitude),
            Verdict::Flagged
        );
        let r = super::validate(
            "Q",
            &[sequential; 3],
            (&[reference; 3], &[magnitude; 3]),
            3,
            tol,
        );
        assert!(r.pass, "{r}");
        assert_eq!(
            (r.flagged, r.mismatches, r.decided_by),
            (3, 0, "deterministic")
        );
        assert!(r.to_string().contains("errors did not cancel"), "{r}");
        // At this d_model the deterministic bound (2.4e-4 of Σ|x·w|) is about one average
        // term (1/4096): a single missed term can hide in it, flagged; two cannot.
        let missed = sequential - 2.0 * w;
        assert_eq!(tol.judge(missed, reference, magnitude), Verdict::Fail);
        let r = super::validate("Q", &[missed], (&[reference], &[magnitude]), 1, tol);
        assert!(!r.pass && r.decided_by == "deterministic", "{r}");
        // A bound the user names is one bound: nothing flagged, past it fails.
        let user = ToleranceOverrides {
            ttol: Some(tol.terms),
            ..Default::default()
        }
        .over(tol);
        assert_eq!(user.judge(sequential, reference, magnitude), Verdict::Fail);
    }

    #[test]
    fn the_deterministic_bound_is_gamma_n_of_d_model_plus_one() {
        // n = d_model products plus the bias; γ_n = n·u / (1 - n·u), u = 2^-24.
        let t = Tolerance::for_f32_accumulation(768);
        let n = 769.0 * F32_UNIT_ROUNDOFF;
        assert_eq!(t.sound_terms, n / (1.0 - n));
        // Still below one missed average term at d_model 768 (1/768 = 1.3e-3).
        assert!(t.sound_terms * 20.0 < 1.0 / 768.0, "{t:?}");
        // An f16 accumulator past 2047 terms has no finite bound, and a zero magnitude is
        // no NaN bound.
        let f16 = Tolerance::for_f16_accumulator(4096);
        assert!(f16.sound_terms.is_infinite());
        assert_eq!(f16.judge(1.0, 0.0, 0.0), Verdict::Fail);
    }

    #[test]
    fn exact_and_within_tolerance_pass() {
        let r = validate("Q", &[1.0, 2.0, 3.0], &[1.0, 2.0000001, 3.0], 3, TOL);
        assert!(r.pass, "{r}");
        assert_eq!(r.mismatches, 0);
    }

    #[test]
    fn each_element_is_held_to_its_own_terms() {
        // Issue #22, item 2: one outlier row (terms of 1e30) beside ordinary rows (terms of
        // about 5): the outlier's bound is huge, the ordinary rows' stay tight, and a planted
        // error of 1e-3 in an ordinary row fails.
        let tol = Tolerance::for_f32_accumulation(64);
        let reference = [1e30, 2.5, -1.0, 0.5];
        let magnitude = [2e30, 5.0, 4.0, 6.0];
        let mut gpu = reference.map(|r| r as f32);
        gpu[0] = (1e30f64 * (1.0 + 1e-7)) as f32;
        let r = super::validate("Q", &gpu, (&reference, &magnitude), 2, tol);
        assert!(r.pass, "{r}");
        gpu[2] += 1e-3;
        let r = super::validate("Q", &gpu, (&reference, &magnitude), 2, tol);
        assert_eq!((r.mismatches, r.first_mismatches[0].row), (1, 1), "{r}");
        // The bound is the probabilistic one: λ·√(d+2)·2^-24 within rounding.
        let expected = 10.0 * 66f64.sqrt() / 16_777_216.0;
        assert!((tol.terms / expected - 1.0).abs() < 1e-5, "{tol:?}");
        // One missed average term (1/d of the sum) is 79 times the bound at d_model 768.
        let t = Tolerance::for_f32_accumulation(768);
        assert!(1.0 / 768.0 > 75.0 * t.terms, "{t:?}");
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
    fn an_inf_outside_the_checked_rows_fails_the_report() {
        // Issue #22, item 1: a PASS over the sampled rows, but the scan of every element
        // found two infinities elsewhere.
        let mut r = validate("Q", &[1.0, 2.0], &[1.0, 2.0], 2, TOL);
        assert!(r.pass);
        r.add_non_finite(2, Some((7, 1)));
        assert!(!r.pass, "{r}");
        let text = r.to_string();
        assert!(
            text.contains("2 element(s) of Q are NaN or infinite")
                && text.contains("row 7, column 1"),
            "{text}"
        );
        let mut whole = validate("Q", &[1.0], &[1.0], 1, TOL);
        whole.merge(&r, 10);
        assert_eq!(
            (whole.non_finite, whole.first_non_finite, whole.pass),
            (2, Some((17, 1)), false)
        );
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
    fn tolerance_scales_with_the_square_root_of_d_model() {
        let a = Tolerance::for_f32_accumulation(98);
        let b = Tolerance::for_f32_accumulation(398);
        assert!((b.terms / a.terms - 2.0).abs() < 1e-5);
        assert_eq!((a.atol, a.rtol), (0.0, 0.0));
        // An f16 accumulator: 2^13 times wider (to first order), and an absolute part.
        let h = Tolerance::for_f16_accumulator(98);
        assert!((h.terms / a.terms / 8192.0 - 1.0).abs() < 0.03, "{h:?}");
        assert_eq!(h.atol, 100.0 * 2f64.powi(-25));
        // Tensor cores: the deterministic bound with a whole ulp, 14x below a missed term.
        let m = Tolerance::for_matrix_accumulation(766);
        assert!(
            (m.terms / (768.0 * 2f64.powi(-23)) - 1.0).abs() < 1e-3,
            "{m:?}"
        );
        assert!(1.0 / 768.0 > 14.0 * m.terms);
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
        Self::split(gpu, reference, (q_width, kv_width), (tol, tol))
    }

    /// As [`new`](Self::new), Q and K checked with `qk_tol` and V with `v_tol`: after an
    /// epilogue ([`Tolerance::with_epilogue`]), which V does not pass through.
    pub fn split(
        gpu: (&[f32], &[f32], &[f32]),
        reference: &crate::reference::Reference,
        (q_width, kv_width): (u32, u32),
        (qk_tol, v_tol): (Tolerance, Tolerance),
    ) -> Self {
        let r = reference;
        Self {
            q: validate("Q", gpu.0, (&r.q, &r.q_mag), q_width as usize, qk_tol),
            k: validate("K", gpu.1, (&r.k, &r.k_mag), kv_width as usize, qk_tol),
            v: validate("V", gpu.2, (&r.v, &r.v_mag), kv_width as usize, v_tol),
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

    /// Elements of the three flagged: past the probabilistic bound, within the
    /// deterministic one.
    pub fn flagged(&self) -> usize {
        self.parts().iter().map(|r| r.flagged).sum()
    }

    /// The worst |gpu - ref| / Σ|x·w| among the flagged elements of the three (0 for none).
    pub fn worst_flagged(&self) -> f64 {
        self.parts()
            .iter()
            .map(|r| r.worst_flagged)
            .fold(0.0, f64::max)
    }

    /// Which bound decided the verdict of the three ([`Report::decided_by`]): the
    /// deterministic one where any part says so, else non-finite elements, else the
    /// probabilistic one.
    pub fn decided_by(&self) -> &'static str {
        ["deterministic", "non-finite"]
            .into_iter()
            .find(|d| self.parts().iter().any(|r| r.decided_by == *d))
            .unwrap_or("probabilistic")
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
