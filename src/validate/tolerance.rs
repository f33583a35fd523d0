//! The check's tolerance: the probabilistic bound of each kernel's accumulation, the
//! deterministic one no summation order exceeds, a user's overrides, and the one condition
//! ([`Tolerance::judge`]) that decides each element.

use serde::Serialize;

/// The tolerance of the check `|gpu - ref| <= atol + rtol·|ref| + terms·Σ|x·w|`, and the
/// deterministic bound `sound_terms` past which no summation order can err.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerance {
    /// Absolute part.
    pub atol: f64,
    /// Relative part (to |ref|).
    pub rtol: f64,
    /// Part relative to the element's sum of |terms|, Σ_i |x_i·w_i| + |b|
    /// ([`crate::Reference`]'s magnitudes): the probabilistic bound.
    pub terms: f64,
    /// The deterministic bound's part relative to Σ|x·w| (at least `terms`): an element past
    /// `terms` but within this passes flagged ([`Verdict::Flagged`]), past it fails. Equal
    /// to `terms` for a tolerance of one bound ([`Tolerance::single`]), where nothing is
    /// flagged.
    pub sound_terms: f64,
}

/// What the check says of one element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the probabilistic bound.
    Pass,
    /// Past the probabilistic bound, within the deterministic one: correct, but its rounding
    /// errors did not cancel.
    Flagged,
    /// Past the deterministic bound (or NaN or infinite where the reference is not).
    Fail,
}

/// A user's tolerance: each part given takes the place of the kernel's own
/// ([`Tolerance::for_kernel`]); the parts not given keep it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ToleranceOverrides {
    /// Absolute part.
    pub atol: Option<f64>,
    /// Relative part.
    pub rtol: Option<f64>,
    /// Part relative to each element's Σ|x·w| + |b|.
    pub ttol: Option<f64>,
    /// The deterministic bound's part ([`Tolerance::sound_terms`]); when not given, `ttol`
    /// where that is given (a user's bound is one bound), else the default's.
    pub sound_ttol: Option<f64>,
}

impl ToleranceOverrides {
    /// Every part of `t` (the tuner's way of holding candidates to one tolerance).
    pub fn all(t: Tolerance) -> Self {
        Self {
            atol: Some(t.atol),
            rtol: Some(t.rtol),
            ttol: Some(t.terms),
            sound_ttol: Some(t.sound_terms),
        }
    }

    /// `default` with the parts given taking precedence. A user's `ttol` is one bound: it
    /// is both the probabilistic and the deterministic part (nothing is flagged; past it
    /// fails), since a user who names a bound means it.
    pub fn over(&self, default: Tolerance) -> Tolerance {
        Tolerance {
            atol: self.atol.unwrap_or(default.atol),
            rtol: self.rtol.unwrap_or(default.rtol),
            terms: self.ttol.unwrap_or(default.terms),
            sound_terms: self.sound_ttol.or(self.ttol).unwrap_or(default.sound_terms),
        }
    }
}

/// The unit roundoff of f32, 2^-24.
pub const F32_UNIT_ROUNDOFF: f64 = 1.0 / 16_777_216.0;

/// Higham's γ_n = n·u / (1 - n·u): a sum of n terms (and a dot product of n products),
/// accumulated in any order with unit roundoff `u`, errs by at most γ_n·Σ|terms| (Accuracy
/// and Stability of Numerical Algorithms, 3.1). Infinite where n·u >= 1: no finite bound
/// holds there (an f16 accumulator of 2048 ones stalls at 2048).
pub fn gamma_n(n: f64, u: f64) -> f64 {
    let nu = n * u;
    if nu >= 1.0 {
        f64::INFINITY
    } else {
        nu / (1.0 - nu)
    }
}

/// Units of f32 rounding (u = 2^-24) the norm's steps after its sum of squares add to each
/// element's error, relative to its magnitude (at least |out|): ε rounded to f32, 1/n rounded
/// and the product by it, the addition of ε (4u on mean + ε, so 2u on its inverse root),
/// `inverseSqrt` (2 ulp: 4u), y·r and ·w (2u), and 1 + w (u). [`Tolerance::with_epilogue`].
pub const NORM_STEPS: f64 = 9.0;

/// Units of f32 rounding RoPE adds, relative to the rotated pair's summed magnitudes: cos and
/// sin from the angle-sum of two f32 tables (each value within u, two products and a sum: 7u
/// absolute), the products by them and their sum (2u). [`Tolerance::with_epilogue`].
pub const ROPE_STEPS: f64 = 9.0;

/// γ̃_n(λ) = exp(λ·√n·u + n·u²/(1 - u)) - 1, the probabilistic bound of a sum of n terms
/// ([`Tolerance::for_f32_accumulation`]).
fn probabilistic_gamma(n: f64, u: f64) -> f64 {
    (LAMBDA * n.sqrt() * u + n * u * u / (1.0 - u)).exp_m1()
}

/// λ of the probabilistic bound ([`Tolerance::for_f32_accumulation`]): an element exceeds it
/// with probability at most 2·exp(-λ²/2) ≈ 4e-22 under the model.
pub const LAMBDA: f64 = 10.0;

impl Tolerance {
    /// The bound of f32 accumulation of a dot product of `d_model` terms (and a bias).
    ///
    /// Each f32 addition (or fused multiply-add) rounds its result with a relative error of
    /// at most u = 2^-24, and every partial sum is at most Σ|x_i·w_i| (+ |b|) in magnitude,
    /// so the computed sum errs by at most γ_n·Σ|x·w|, γ_n = n·u/(1 - n·u) (Higham, Accuracy
    /// and Stability of Numerical Algorithms, 3.1). That worst case needs every rounding to
    /// go the same way; modelling the rounding errors as independent and mean zero, the
    /// error is at most γ̃_n(λ)·Σ|x·w| with γ̃_n(λ) = exp(λ·√n·u + n·u²/(1 - u)) - 1 ≈ λ·√n·u,
    /// with probability at least 1 - 2·exp(-λ²(1 - u)²/2) (Higham and Mary, "A new approach
    /// to probabilistic rounding error analysis", SIAM J. Sci. Comput. 41(5), 2019). With
    /// λ = 10 a correct element fails with probability about 4e-22. n = d_model + 2 counts
    /// the bias and the result's own rounding to f32. At d_model 768 the bound is 1.7e-5 of
    /// Σ|x·w|, while one missed term is about 1/768 = 1.3e-3 of it: any wrong index fails.
    /// `atol` and `rtol` are 0: the bound follows each element.
    pub fn for_f32_accumulation(d_model: u32) -> Self {
        Self::for_accumulation(d_model, F32_UNIT_ROUNDOFF)
    }

    /// The bound [`for_f32_accumulation`](Self::for_f32_accumulation) derives, for an
    /// accumulator of unit roundoff `u`.
    fn for_accumulation(d_model: u32, u: f64) -> Self {
        let n = d_model as f64 + 2.0;
        let gamma = probabilistic_gamma(n, u);
        Self {
            atol: 0.0,
            rtol: 0.0,
            terms: gamma,
            sound_terms: gamma.max(gamma_n(d_model as f64 + 1.0, u)),
        }
    }

    /// A tolerance of one bound: `terms` is both the probabilistic and the deterministic
    /// part, so nothing is flagged and past it fails.
    pub fn single(atol: f64, rtol: f64, terms: f64) -> Self {
        Self {
            atol,
            rtol,
            terms,
            sound_terms: terms,
        }
    }

    /// This tolerance for results stored as `element`: the f32 accumulation's bound plus the
    /// kernels' final rounding of the f32 result to the storage type.
    ///
    /// The inputs the reference reads are the rounded ones the GPU read, so input rounding
    /// costs nothing here (its cost is reported apart, as the precision cost). Products of two
    /// f16 or bf16 values are exact in f32 (11 + 11 and 8 + 8 significant bits fit in 24), so
    /// accumulation errs as in f32, by at most the bound `e`. The f32 result `g` is then
    /// rounded once to nearest even, with a relative error of at most `u`
    /// ([`crate::ElementType::rounding_rel`]: half an ulp) plus half of f16's subnormal
    /// spacing `s`; since `|g| <= |ref| + e`, the total is at most `e (1 + u) + s + u |ref|`.
    /// For f32 it is the f32 tolerance.
    pub fn for_output(self, element: crate::element::ElementType) -> Self {
        let u = element.rounding_rel();
        Self {
            atol: self.atol * (1.0 + u) + element.rounding_abs(),
            rtol: self.rtol * (1.0 + u) + u,
            terms: self.terms * (1.0 + u),
            sound_terms: self.sound_terms * (1.0 + u),
        }
    }

    /// The f32 accumulation's tolerance for an f16 accumulator instead: `coopmat(acc=16)`,
    /// for adapters that offer no f32 one. Each addition then rounds the running sum to f16,
    /// whose unit roundoff is 2^-11: the same bound with that u (for d_model 768, 14.5% of
    /// Σ|x·w|, about 111 average terms: it still catches wrong rows, columns and unwritten
    /// (NaN) elements, not every single missed term), plus, since a partial sum below f16's
    /// smallest normal (2^-14) rounds to a multiple of 2^-24 rather than relatively, n·2^-25
    /// absolute. Apply before [`for_output`](Self::for_output).
    pub fn for_f16_accumulator(d_model: u32) -> Self {
        let n = d_model as f64 + 2.0;
        Self {
            atol: n * 2f64.powi(-25),
            ..Self::for_accumulation(d_model, 1.0 / 2048.0)
        }
    }

    /// The bound of a cooperative-matrix (tensor-core) multiply-add chain with an f32
    /// accumulator: hardware may truncate rather than round to nearest (NVIDIA's tensor cores
    /// do), so the errors are neither mean-zero nor half an ulp. The deterministic bound
    /// γ_n·Σ|x·w| with u = 2^-23 (a whole ulp), γ_n = n·u/(1 - n·u), holds for any such
    /// rounding: at d_model 768, 9.2e-5 of Σ|x·w|, still 14 times below one missed average
    /// term.
    pub fn for_matrix_accumulation(d_model: u32) -> Self {
        let terms = gamma_n(d_model as f64 + 2.0, 2.0 * F32_UNIT_ROUNDOFF);
        Self::single(0.0, 0.0, terms)
    }

    /// The tolerance of `spec`'s results over `d_model`: its accumulator's bound
    /// ([`for_accumulator`](Self::for_accumulator)), then the final rounding to its outputs'
    /// type ([`for_output`](Self::for_output)). The rounding of X and W to their types is not
    /// in it: the reference is computed from the inputs rounded as the kernel reads them.
    pub fn for_kernel(d_model: u32, spec: &crate::kernels::KernelSpec) -> Self {
        Self::for_accumulator(d_model, spec).for_output(spec.types.out)
    }

    /// The bound of `spec`'s accumulation over `d_model`, before the final rounding:
    /// [`for_f16_accumulator`](Self::for_f16_accumulator) where it accumulates in f16,
    /// [`for_matrix_accumulation`](Self::for_matrix_accumulation) for cooperative matrices
    /// with an f32 one, else [`for_f32_accumulation`](Self::for_f32_accumulation).
    pub fn for_accumulator(d_model: u32, spec: &crate::kernels::KernelSpec) -> Self {
        if spec.accumulates_in_f16() {
            Self::for_f16_accumulator(d_model)
        } else if matches!(spec.arithmetic, crate::kernels::Arithmetic::Matrix { .. }) {
            Self::for_matrix_accumulation(d_model)
        } else {
            Self::for_f32_accumulation(d_model)
        }
    }

    /// This tolerance for Q and K after `ep` over `heads` ([`crate::epilogue`], the GPU's
    /// pass in f32, before the final rounding to `out`), against a reference that carried
    /// each element's magnitude through the norm and the rotation
    /// ([`crate::epilogue::Epilogue::apply_with_magnitudes`]): there the accumulation's error
    /// is still within `terms` of the new magnitudes, to first order, and each step's own
    /// rounding adds its part. The norm's sum of n squares (all positive) errs by at most
    /// γ_n of itself (probabilistically γ̃_n(λ), as the accumulation), half of which reaches
    /// its inverse root, plus [`NORM_STEPS`] units; RoPE adds [`ROPE_STEPS`], and the f64
    /// rounding of the angles (the reference's p·f and the two tables' parts, 2^-53 of the
    /// largest angle each: [`Epilogue::max_angle`](crate::epilogue::Epilogue::max_angle)). Those
    /// parts are added times 1 + u of `out`'s rounding, as [`for_output`](Self::for_output)
    /// scales `terms`, so this applies before or after it alike. An absolute part (`atol`, of
    /// an f16 accumulator's subnormal sums) is turned with its pair: |cos|·e_a + |sin|·e_b <=
    /// √2·atol (the norm, which would scale it by |w|/rms, is refused after such a kernel).
    /// For Q and K only: V keeps the kernel's.
    pub fn with_epilogue(
        self,
        ep: &crate::epilogue::Epilogue,
        heads: &crate::epilogue::Heads,
        out: crate::element::ElementType,
    ) -> Self {
        let u = F32_UNIT_ROUNDOFF;
        let (mut prob, mut det) = (0.0, 0.0);
        if let Some(n) = &ep.qk_norm {
            let span = match n.scope {
                crate::epilogue::NormScope::PerHead => heads.head_dim as f64,
                crate::epilogue::NormScope::Width => {
                    heads.heads.max(heads.kv_heads) as f64 * heads.head_dim as f64
                }
            };
            prob += 0.5 * probabilistic_gamma(span, u) + NORM_STEPS * u;
            det += 0.5 * gamma_n(span, u) + NORM_STEPS * u;
        }
        let mut atol = self.atol;
        if ep.rope.is_some() {
            let angles = 3.0 * ep.max_angle(heads) * f64::EPSILON / 2.0;
            prob += ROPE_STEPS * u + angles;
            det += ROPE_STEPS * u + angles;
            atol *= std::f64::consts::SQRT_2;
        }
        let scale = 1.0 + out.rounding_rel();
        Self {
            atol,
            terms: self.terms + prob * scale,
            sound_terms: self.sound_terms + det * scale,
            ..self
        }
    }

    /// The bound for one element: `atol + rtol·|reference| + terms·magnitude`.
    pub fn bound(&self, reference: f64, magnitude: f64) -> f64 {
        self.atol + self.rtol * reference.abs() + self.terms * magnitude
    }

    /// The deterministic bound for one element: `atol + rtol·|reference| +
    /// sound_terms·magnitude` (never below [`bound`](Self::bound)).
    pub fn sound_bound(&self, reference: f64, magnitude: f64) -> f64 {
        // An infinite deterministic part (an f16 accumulator past 2047 terms) times a zero
        // magnitude is no bound at all, not NaN.
        let terms = if magnitude == 0.0 {
            0.0
        } else {
            self.sound_terms * magnitude
        };
        let sound = self.atol + self.rtol * reference.abs() + terms;
        sound.max(self.bound(reference, magnitude))
    }

    /// What the check says of one element, `magnitude` being its Σ|x·w| + |b|. This is the
    /// only place the condition is written.
    pub fn judge(&self, gpu: f32, reference: f64, magnitude: f64) -> Verdict {
        let g = gpu as f64;
        if g.is_nan() && reference.is_nan() || g == reference {
            return Verdict::Pass;
        }
        // Otherwise a non-finite value on either side is a mismatch: the bound below would
        // accept +inf against -inf, since a bound of inf is itself infinite.
        if !g.is_finite() || !reference.is_finite() || !magnitude.is_finite() {
            return Verdict::Fail;
        }
        let err = (g - reference).abs();
        if err <= self.bound(reference, magnitude) {
            Verdict::Pass
        } else if err <= self.sound_bound(reference, magnitude) {
            Verdict::Flagged
        } else {
            Verdict::Fail
        }
    }

    /// Whether one element passes, flagged or not ([`judge`](Self::judge)).
    pub fn accepts(&self, gpu: f32, reference: f64, magnitude: f64) -> bool {
        self.judge(gpu, reference, magnitude) != Verdict::Fail
    }
}
