//! What current models do to Q and K right after the projection: RMSNorm of Q and K (per
//! head, as Qwen3 and Gemma 3 do, or over the whole width, as OLMo 2 does) and then rotary
//! position embeddings (RoPE: the rotate-half pairs of Hugging Face's Llama and of
//! llama.cpp's NEOX mode, or the neighbouring pairs of GPT-J and llama.cpp's NORM mode; a
//! base θ, partial rotary dimensions, Llama 3's and linear frequency scaling; positions from
//! an offset or given). V is left as it is.
//!
//! This module holds the settings ([`Epilogue`]) and their exact reference in f64
//! ([`Epilogue::apply_f64`]), applied to Q and K as [`crate::reference`] computes them:
//! each token a row, [tokens, width]. The rotation's angles come from [`Rope::inv_freq`] in
//! f64, as Hugging Face's `_compute_default_rope_parameters` and `_compute_llama3_parameters`
//! define them. [`config`] reads them from a Hugging Face model's `config.json`.

pub mod config;

use crate::error::{Error, Result};

/// Which elements of a head RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopePairs {
    /// Element i with element i + r/2 (r the rotary dimensions): Hugging Face's
    /// `rotate_half` (Llama, Qwen, Gemma, Mistral) and llama.cpp's NEOX mode.
    Half,
    /// Element 2i with element 2i + 1: GPT-J, and llama.cpp's NORM mode (its Llama GGUF
    /// files, whose Q and K rows its converter reordered to suit it).
    Adjacent,
}

/// How the rotation's frequencies are scaled for contexts past the model's training length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    None,
    /// Every frequency divided by `factor` (`rope_type: "linear"`).
    Linear {
        factor: f64,
    },
    /// Llama 3's (`rope_type: "llama3"`): long wavelengths divided by `factor`, short ones
    /// kept, those between blended smoothly.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// Rotary position embeddings of Q's and K's heads.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    /// The base θ (`rope_theta`; 10,000 in Llama 2, 500,000 in Llama 3).
    pub theta: f64,
    /// The dimensions of each head that are rotated, from its start (even, at most the
    /// head's size; the rest pass through): `head_dim · partial_rotary_factor`.
    pub rotary_dim: u32,
    pub pairs: RopePairs,
    pub scaling: RopeScaling,
    /// Each pair's frequency divided by its factor, after the scaling: how a GGUF file
    /// stores Llama 3's scaling (`rope_freqs.weight`, one factor per pair, as ggml's
    /// `ggml_rope_ext` applies it).
    pub freq_factors: Option<Vec<f64>>,
}

/// Where each token sits in its sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum Positions {
    /// Token t of a sequence of `seq` tokens is at `offset + t mod seq` (X [batch, seq,
    /// d_model]; 2-D X is one sequence). A decode step's offset is the tokens before it.
    Offset(u32),
    /// One position per token of X, in order.
    Given(Vec<u32>),
}

/// Which elements one RMSNorm spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormScope {
    /// Each head's `head_dim` elements (Qwen3, Gemma 3): the weight has head_dim elements.
    PerHead,
    /// The whole of Q's (or K's) width (OLMo 2): the weight has that many.
    Width,
}

/// RMSNorm of Q and K: x · w / sqrt(mean(x²) + ε), or x · (1 + w) / ... where the model
/// stores its weight as an offset from 1 (Gemma).
#[derive(Debug, Clone, PartialEq)]
pub struct QkNorm {
    pub scope: NormScope,
    pub eps: f64,
    /// Q's weight and K's (f32, as checkpoints give them in f32 or wider).
    pub q_weight: Vec<f32>,
    pub k_weight: Vec<f32>,
    /// The weight is stored as w with the scale 1 + w (Gemma's `Gemma3RMSNorm`).
    pub plus_one: bool,
}

/// The operations on Q and K after the projection, in the models' order: the norm, then
/// RoPE.
#[derive(Debug, Clone, PartialEq)]
pub struct Epilogue {
    pub qk_norm: Option<QkNorm>,
    pub rope: Option<Rope>,
    pub positions: Positions,
}

/// Q's and K's head sizes and counts, and the sequence length: what the epilogue needs of the
/// shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    /// Tokens of one sequence (positions restart at the offset after each).
    pub seq: u32,
}

impl RopeScaling {
    /// Refuses factors that give infinite or undefined frequencies: each finite and above 0,
    /// Llama 3's high-frequency factor above its low one.
    fn check(&self) -> Result<()> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        let good = match *self {
            RopeScaling::None => true,
            RopeScaling::Linear { factor } => ok(factor),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                ok(factor)
                    && ok(low_freq_factor)
                    && ok(high_freq_factor)
                    && ok(original_max_position_embeddings)
                    && high_freq_factor > low_freq_factor
            }
        };
        if good {
            Ok(())
        } else {
            Err(Error::Input(format!(
                "RoPE scaling {self:?}: every factor must be finite and above 0, and Llama 3's \
                 high_freq_factor above its low_freq_factor"
            )))
        }
    }
}

impl Rope {
    /// The angle per position of each rotated pair, in f64: θ^(-2i/r) for i < r/2, then
    /// scaled ([`RopeScaling`]) as Hugging Face's rope initializers do.
    pub fn inv_freq(&self) -> Vec<f64> {
        let r = self.rotary_dim as f64;
        let base: Vec<f64> = (0..self.rotary_dim / 2)
            .map(|i| 1.0 / self.theta.powf(2.0 * i as f64 / r))
            .collect();
        let scaled = self.scaled(base);
        match &self.freq_factors {
            Some(ff) => scaled.iter().zip(ff).map(|(f, d)| f / d).collect(),
            None => scaled,
        }
    }

    /// `base` frequencies scaled as [`RopeScaling`] says.
    fn scaled(&self, base: Vec<f64>) -> Vec<f64> {
        match self.scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            } => {
                let low_freq_wavelen = old / low_freq_factor;
                let high_freq_wavelen = old / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_freq_wavelen {
                            f
                        } else if wavelen > low_freq_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }

    /// The two elements of a head that pair i of `rotary_dim / 2` rotates.
    pub fn pair(&self, i: u32) -> (usize, usize) {
        match self.pairs {
            RopePairs::Half => (i as usize, (i + self.rotary_dim / 2) as usize),
            RopePairs::Adjacent => (2 * i as usize, 2 * i as usize + 1),
        }
    }

    /// Rotates one head's elements `x` at position `pos` (f64, in place), and where `m`
    /// holds their magnitudes, each rotated pair's becomes the sum of the two: |a·cos -
    /// b·sin| errs by at most |cos|·e_a + |sin|·e_b <= e_a + e_b.
    fn rotate(&self, x: &mut [f64], mut m: Option<&mut [f64]>, pos: f64, inv_freq: &[f64]) {
        for (i, f) in inv_freq.iter().enumerate() {
            let (a, b) = self.pair(i as u32);
            let (sin, cos) = (pos * f).sin_cos();
            let (xa, xb) = (x[a], x[b]);
            x[a] = xa * cos - xb * sin;
            x[b] = xb * cos + xa * sin;
            if let Some(m) = m.as_deref_mut() {
                let sum = m[a] + m[b];
                (m[a], m[b]) = (sum, sum);
            }
        }
    }
}

impl QkNorm {
    /// Normalizes `x` (one head, or the whole width) with `w` in place, and where `m` holds
    /// the magnitudes its errors are bounded by (|e_i| <= τ·m_i), propagates them to first
    /// order: with S = Σy², r = (S/n + ε)^-1/2 and out_i = y_i·r·w_i, an error e in y moves
    /// out_i by w_i·(r·e_i - y_i·r³·Σ_j y_j·e_j / n), at most τ·|w_i|·r·(m_i + |y_i|·r²·Σ_j
    /// |y_j|·m_j / n): the new m_i.
    fn normalize(&self, x: &mut [f64], m: Option<&mut [f64]>, w: &[f32]) {
        let n = x.len() as f64;
        let mean = x.iter().map(|v| v * v).sum::<f64>() / n;
        let scale = 1.0 / (mean + self.eps).sqrt();
        let weight = |w: f32| {
            if self.plus_one {
                1.0 + w as f64
            } else {
                w as f64
            }
        };
        if let Some(m) = m {
            let spread = x
                .iter()
                .zip(m.iter())
                .map(|(y, m)| y.abs() * m)
                .sum::<f64>()
                / n;
            for ((mi, y), &w) in m.iter_mut().zip(x.iter()).zip(w) {
                *mi = weight(w).abs() * scale * (*mi + y.abs() * scale * scale * spread);
            }
        }
        for (v, &w) in x.iter_mut().zip(w) {
            *v *= scale * weight(w);
        }
    }
}

impl Epilogue {
    /// Checks the settings against the heads: rotary dimensions even and within a head, the
    /// norm weights of the size their scope needs, as many positions as tokens.
    pub fn check(&self, h: &Heads, tokens: u32) -> Result<()> {
        if h.seq == 0 || h.head_dim == 0 || h.heads == 0 || h.kv_heads == 0 {
            return Err(Error::Input(format!(
                "the epilogue's heads ({} and {} KV heads of {}) and sequence length ({}) must \
                 all be at least 1",
                h.heads, h.kv_heads, h.head_dim, h.seq
            )));
        }
        if h.heads.checked_mul(h.head_dim).is_none() || h.kv_heads.checked_mul(h.head_dim).is_none()
        {
            return Err(Error::Input(format!(
                "{} heads of {} are past 32 bits of columns",
                h.heads.max(h.kv_heads),
                h.head_dim
            )));
        }
        if let Some(r) = &self.rope {
            r.scaling.check()?;
            if r.rotary_dim == 0 || r.rotary_dim % 2 != 0 || r.rotary_dim > h.head_dim {
                return Err(Error::Input(format!(
                    "RoPE rotates {} dimensions of each head: give an even number from 2 to \
                     the head size, {}",
                    r.rotary_dim, h.head_dim
                )));
            }
            if let Some(ff) = &r.freq_factors {
                if ff.len() != (r.rotary_dim / 2) as usize
                    || ff.iter().any(|f| !(f.is_finite() && *f > 0.0))
                {
                    return Err(Error::Input(format!(
                        "RoPE's frequency factors: {} given for {} pairs; each a finite \
                         number above 0",
                        ff.len(),
                        r.rotary_dim / 2
                    )));
                }
            }
            if !(r.theta.is_finite() && r.theta > 1.0) {
                return Err(Error::Input(format!(
                    "RoPE's base θ is {}: give a finite number above 1",
                    r.theta
                )));
            }
        }
        if let Some(n) = &self.qk_norm {
            let (q, k) = match n.scope {
                NormScope::PerHead => (h.head_dim, h.head_dim),
                NormScope::Width => (h.heads * h.head_dim, h.kv_heads * h.head_dim),
            };
            for (what, w, want) in [("Q", &n.q_weight, q), ("K", &n.k_weight, k)] {
                if w.len() != want as usize {
                    return Err(Error::Input(format!(
                        "{what}'s norm weight has {} elements; its {:?} norm needs {want}",
                        w.len(),
                        n.scope
                    )));
                }
            }
            // The GPU adds it in f32: it must stay a positive normal number there.
            if !(n.eps.is_finite() && n.eps > 0.0 && (n.eps as f32).is_normal()) {
                return Err(Error::Input(format!(
                    "the norm's ε is {}: give a finite number above 0 that f32 holds (1.2e-38 \
                     or more)",
                    n.eps
                )));
            }
        }
        if let Positions::Given(p) = &self.positions {
            if p.len() != tokens as usize {
                return Err(Error::Input(format!(
                    "{} positions given for {tokens} tokens: give one per token",
                    p.len()
                )));
            }
        }
        Ok(())
    }

    /// The largest angle any rotation turns by, in radians (the last position times the
    /// highest frequency; 0 without RoPE): what the f64 rounding of the angles scales with.
    pub fn max_angle(&self, h: &Heads) -> f64 {
        let Some(r) = &self.rope else {
            return 0.0;
        };
        let last = match &self.positions {
            Positions::Offset(o) => *o as f64 + h.seq.max(1) as f64 - 1.0,
            Positions::Given(p) => p.iter().copied().max().unwrap_or(0) as f64,
        };
        last * r.inv_freq().into_iter().fold(0.0, f64::max)
    }

    /// The position of token `t`.
    pub fn position(&self, t: usize, seq: u32) -> f64 {
        match &self.positions {
            Positions::Offset(o) => (*o as u64 + (t as u64 % seq.max(1) as u64)) as f64,
            Positions::Given(p) => p[t] as f64,
        }
    }

    /// Applies the norm, then RoPE, to Q [tokens, heads · head_dim] and K [tokens,
    /// kv_heads · head_dim] in f64, in place.
    pub fn apply_f64(&self, q: &mut [f64], k: &mut [f64], h: &Heads) {
        self.apply((q, None), (k, None), h, None);
    }

    /// As [`apply_f64`](Self::apply_f64), carrying each element's magnitude (the scale its
    /// error is bounded by, [`crate::Reference`]'s) through the norm and the rotation to
    /// first order (see [`QkNorm`]'s and [`Rope`]'s steps), so that the kernel's error bound
    /// still holds of every element after them. Row i is the batch's token `rows[i]` (its
    /// position is that token's), or with `rows` None token i.
    pub fn apply_with_magnitudes(
        &self,
        (q, q_mag): (&mut [f64], &mut [f64]),
        (k, k_mag): (&mut [f64], &mut [f64]),
        h: &Heads,
        rows: Option<&[usize]>,
    ) {
        self.apply((q, Some(q_mag)), (k, Some(k_mag)), h, rows);
    }

    fn apply(
        &self,
        q: (&mut [f64], Option<&mut [f64]>),
        k: (&mut [f64], Option<&mut [f64]>),
        h: &Heads,
        rows: Option<&[usize]>,
    ) {
        let d = h.head_dim as usize;
        let inv_freq = self.rope.as_ref().map(Rope::inv_freq);
        let norm = self.qk_norm.as_ref();
        for ((x, mut mag), heads, w) in [
            (q, h.heads as usize, norm.map(|n| &n.q_weight)),
            (k, h.kv_heads as usize, norm.map(|n| &n.k_weight)),
        ] {
            let width = heads * d;
            for (t, row) in x.chunks_exact_mut(width).enumerate() {
                let mut m = mag
                    .as_deref_mut()
                    .map(|m| &mut m[t * width..(t + 1) * width]);
                if let (Some(n), Some(w)) = (norm, w) {
                    match n.scope {
                        NormScope::Width => n.normalize(row, m.as_deref_mut(), w),
                        NormScope::PerHead => {
                            for (i, hd) in row.chunks_exact_mut(d).enumerate() {
                                let hm = m.as_deref_mut().map(|m| &mut m[i * d..(i + 1) * d]);
                                n.normalize(hd, hm, w);
                            }
                        }
                    }
                }
                if let (Some(r), Some(f)) = (&self.rope, &inv_freq) {
                    let pos = self.position(rows.map_or(t, |r| r[t]), h.seq);
                    for (i, hd) in row.chunks_exact_mut(d).enumerate() {
                        let hm = m.as_deref_mut().map(|m| &mut m[i * d..(i + 1) * d]);
                        r.rotate(hd, hm, pos, f);
                    }
                }
            }
        }
    }
}

impl std::fmt::Display for Epilogue {
    /// One line: "RMSNorm per head (ε 1e-6) then RoPE (rotate-half pairs, θ 1000000, 128 of
    /// each head's dimensions), positions from 0".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut steps = Vec::new();
        if let Some(n) = &self.qk_norm {
            let scope = match n.scope {
                NormScope::PerHead => "per head",
                NormScope::Width => "over the width",
            };
            let weight = if n.plus_one { ", weights as 1 + w" } else { "" };
            steps.push(format!("RMSNorm {scope} (ε {:e}{weight})", n.eps));
        }
        if let Some(r) = &self.rope {
            let pairs = match r.pairs {
                RopePairs::Half => "rotate-half pairs",
                RopePairs::Adjacent => "neighbouring pairs",
            };
            let scaling = match r.scaling {
                RopeScaling::None => String::new(),
                RopeScaling::Linear { factor } => format!(", linear scaling {factor}"),
                RopeScaling::Llama3 { factor, .. } => format!(", Llama 3 scaling {factor}"),
            };
            let factors = if r.freq_factors.is_some() {
                ", per-pair frequency factors"
            } else {
                ""
            };
            steps.push(format!(
                "RoPE ({pairs}, θ {}, {} dimensions of each head{scaling}{factors})",
                r.theta, r.rotary_dim
            ));
        }
        write!(f, "{}", steps.join(" then "))?;
        match &self.positions {
            _ if self.rope.is_none() => Ok(()),
            Positions::Offset(o) => write!(f, ", positions from {o}"),
            Positions::Given(p) => write!(f, ", {} positions given", p.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(head_dim: u32) -> Heads {
        Heads {
            heads: 1,
            kv_heads: 1,
            head_dim,
            seq: 8,
        }
    }

    fn rope(rotary_dim: u32, pairs: RopePairs) -> Rope {
        Rope {
            theta: 10_000.0,
            rotary_dim,
            pairs,
            scaling: RopeScaling::None,
            freq_factors: None,
        }
    }

    #[test]
    fn rope_rotates_the_pairs_of_each_layout_by_position_times_frequency() {
        // head_dim 4, θ 10,000: frequencies 1 and 10,000^(-1/2) = 0.01.
        let (c1, s1) = (1f64.cos(), 1f64.sin());
        let (c2, s2) = (0.01f64.cos(), 0.01f64.sin());
        let e = Epilogue {
            qk_norm: None,
            rope: Some(rope(4, RopePairs::Half)),
            positions: Positions::Offset(1),
        };
        // Token 0 at position 1: pairs (0, 2) by 1 rad and (1, 3) by 0.01 rad.
        let (mut q, mut k) = (vec![1.0, 2.0, 3.0, 4.0], vec![1.0, 0.0, 0.0, 0.0]);
        e.apply_f64(&mut q, &mut k, &heads(4));
        let want = [
            1.0 * c1 - 3.0 * s1,
            2.0 * c2 - 4.0 * s2,
            3.0 * c1 + 1.0 * s1,
            4.0 * c2 + 2.0 * s2,
        ];
        for (g, w) in q.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{q:?} {want:?}");
        }
        assert!(
            (k[0] - c1).abs() < 1e-15 && (k[2] - s1).abs() < 1e-15,
            "{k:?}"
        );
        // Neighbouring pairs: (0, 1) by 1 rad, (2, 3) by 0.01 rad.
        let e = Epilogue {
            rope: Some(rope(4, RopePairs::Adjacent)),
            ..e
        };
        let (mut q, mut k) = (vec![1.0, 2.0, 3.0, 4.0], vec![0.0; 4]);
        e.apply_f64(&mut q, &mut k, &heads(4));
        let want = [
            1.0 * c1 - 2.0 * s1,
            2.0 * c1 + 1.0 * s1,
            3.0 * c2 - 4.0 * s2,
            4.0 * c2 + 3.0 * s2,
        ];
        for (g, w) in q.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{q:?} {want:?}");
        }
        // Position 0 (offset 0, first token) leaves everything as it was; partial rotary
        // dimensions leave the rest of the head alone at every position.
        let e = Epilogue {
            rope: Some(rope(2, RopePairs::Half)),
            positions: Positions::Offset(0),
            ..e
        };
        let mut q = vec![1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0];
        e.apply_f64(&mut q, &mut [0.0; 8], &heads(4));
        assert_eq!(&q[..4], &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(&q[6..], &[3.0, 4.0], "dimensions 2 and 3 are not rotated");
        assert!((q[4] - (c1 - 2.0 * s1)).abs() < 1e-15, "{q:?}");
    }

    #[test]
    fn positions_restart_each_sequence_at_the_offset_or_are_given() {
        let e = Epilogue {
            qk_norm: None,
            rope: None,
            positions: Positions::Offset(100),
        };
        let p: Vec<f64> = (0..6).map(|t| e.position(t, 3)).collect();
        assert_eq!(p, [100.0, 101.0, 102.0, 100.0, 101.0, 102.0]);
        let e = Epilogue {
            positions: Positions::Given(vec![7, 3, 9]),
            ..e
        };
        assert_eq!(e.position(2, 3), 9.0);
        assert!(e.check(&heads(4), 4).is_err(), "3 positions for 4 tokens");
        assert!(e.check(&heads(4), 3).is_ok());
    }

    #[test]
    fn llama3_scaling_keeps_short_wavelengths_divides_long_ones_and_blends_between() {
        // Llama 3.1's settings; head_dim 128.
        let r = Rope {
            theta: 500_000.0,
            rotary_dim: 128,
            pairs: RopePairs::Half,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            },
            freq_factors: None,
        };
        let plain = Rope {
            scaling: RopeScaling::None,
            ..r.clone()
        }
        .inv_freq();
        let scaled = r.inv_freq();
        let wavelen = |f: f64| 2.0 * std::f64::consts::PI / f;
        let (mut kept, mut divided, mut blended) = (0, 0, 0);
        for (&p, &s) in plain.iter().zip(&scaled) {
            if wavelen(p) < 8192.0 / 4.0 {
                assert_eq!(s, p);
                kept += 1;
            } else if wavelen(p) > 8192.0 {
                assert!((s - p / 8.0).abs() <= 1e-18);
                divided += 1;
            } else {
                assert!(s < p && s > p / 8.0, "{p} {s}");
                blended += 1;
            }
        }
        assert!(
            kept > 0 && divided > 0 && blended > 0,
            "{kept} {divided} {blended}"
        );
        let linear = Rope {
            scaling: RopeScaling::Linear { factor: 4.0 },
            ..r
        };
        assert_eq!(linear.inv_freq()[3], plain[3] / 4.0);
    }

    #[test]
    fn rms_norm_per_head_or_over_the_width_with_gemma_s_offset_weight() {
        let h = Heads {
            heads: 2,
            kv_heads: 1,
            head_dim: 2,
            seq: 1,
        };
        let norm = QkNorm {
            scope: NormScope::PerHead,
            eps: 1e-6,
            q_weight: vec![1.0, 2.0],
            k_weight: vec![0.5, 0.5],
            plus_one: false,
        };
        let e = Epilogue {
            qk_norm: Some(norm.clone()),
            rope: None,
            positions: Positions::Offset(0),
        };
        let (mut q, mut k) = (vec![3.0, 4.0, 1.0, 1.0], vec![6.0, 8.0]);
        e.apply_f64(&mut q, &mut k, &h);
        // Head 0: rms = sqrt((9 + 16) / 2) = 5/√2.
        let s = 1.0 / (12.5f64 + 1e-6).sqrt();
        assert!(
            (q[0] - 3.0 * s).abs() < 1e-15 && (q[1] - 8.0 * s).abs() < 1e-15,
            "{q:?}"
        );
        let s1 = 1.0 / (1.0f64 + 1e-6).sqrt();
        assert!(
            (q[2] - s1).abs() < 1e-15 && (q[3] - 2.0 * s1).abs() < 1e-15,
            "{q:?}"
        );
        let sk = 1.0 / (50.0f64 + 1e-6).sqrt();
        assert!((k[0] - 3.0 * sk).abs() < 1e-15, "{k:?}");
        // Over the width: one norm over Q's four elements; Gemma's 1 + w.
        let e = Epilogue {
            qk_norm: Some(QkNorm {
                scope: NormScope::Width,
                q_weight: vec![0.0, 1.0, 0.0, 1.0],
                k_weight: vec![0.0, 0.0],
                plus_one: true,
                ..norm
            }),
            ..e
        };
        let (mut q, mut k) = (vec![3.0, 4.0, 1.0, 1.0], vec![6.0, 8.0]);
        e.check(&h, 1).unwrap();
        e.apply_f64(&mut q, &mut k, &h);
        let s = 1.0 / ((9.0 + 16.0 + 1.0 + 1.0) / 4.0 + 1e-6f64).sqrt();
        let want = [3.0 * s, 8.0 * s, s, 2.0 * s];
        for (g, w) in q.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{q:?} {want:?}");
        }
        // Weights of the wrong size for their scope are refused.
        let bad = Epilogue {
            qk_norm: Some(QkNorm {
                scope: NormScope::PerHead,
                ..e.qk_norm.clone().unwrap()
            }),
            ..e
        };
        assert!(bad
            .check(&h, 1)
            .unwrap_err()
            .to_string()
            .contains("needs 2"));
    }

    #[test]
    fn bad_rotary_dimensions_and_bases_are_refused() {
        let e = |rotary_dim, theta| Epilogue {
            qk_norm: None,
            rope: Some(Rope {
                theta,
                ..rope(rotary_dim, RopePairs::Half)
            }),
            positions: Positions::Offset(0),
        };
        for (r, t) in [(0, 1e4), (3, 1e4), (6, 1e4), (4, f64::NAN), (4, 1.0)] {
            assert!(e(r, t).check(&heads(4), 1).is_err(), "{r} {t}");
        }
        assert!(e(4, 1e4).check(&heads(4), 1).is_ok());
    }
}
