//! What a GGUF file says of one attention layer after its projection, as llama.cpp applies
//! it: RoPE from `{arch}.rope.freq_base`, `.dimension_count`, `.scaling.type` and
//! `.scaling.factor` (linear; llama.cpp's default type when a factor is given), and Llama
//! 3's scaling as the `rope_freqs.weight` tensor (a divisor per pair); NEOX pairs (half and
//! half) for qwen2, qwen3, gemma2, gemma3 and olmo2, NORM pairs (neighbours) for llama,
//! whose Q and K rows the converter reordered for them (half and half again once they are
//! put back, `original_order`); Gemma 3's sliding layers at base 10,000 unscaled (hard-coded
//! in llama.cpp); and the QK-norm, `attn_q_norm.weight` and `attn_k_norm.weight` with
//! `{arch}.attention.layer_norm_rms_epsilon`, per head, or over the width for olmo2
//! (Gemma's weights are stored as 1 + w by the converter, so they multiply as they are).

use super::Gguf;
use crate::epilogue::{NormScope, QkNorm, Rope, RopePairs, RopeScaling};
use crate::error::{Error, Result};

/// A GGUF layer's epilogue: its RoPE, and its QK-norm where it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufEpilogue {
    pub rope: Rope,
    pub qk_norm: Option<QkNorm>,
}

/// The architectures whose RoPE this reads, and the pairs llama.cpp rotates in each
/// (`llama_model_rope_type`).
const ARCHITECTURES: [(&str, RopePairs); 6] = [
    ("llama", RopePairs::Adjacent),
    ("qwen2", RopePairs::Half),
    ("qwen3", RopePairs::Half),
    ("gemma2", RopePairs::Half),
    ("gemma3", RopePairs::Half),
    ("olmo2", RopePairs::Half),
];

impl Gguf {
    /// The float at `key`, if it is a number.
    pub fn float(&self, key: &str) -> Option<f64> {
        match self.metadata.get(key)? {
            super::Value::Float(v) => Some(*v),
            super::Value::Uint(v) => Some(*v as f64),
            super::Value::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// An F32 tensor's values, or None where the file has no tensor `name`.
    fn f32_tensor(&self, name: &str) -> Result<Option<Vec<f32>>> {
        let Some(t) = self.tensor(name) else {
            return Ok(None);
        };
        if t.ty.0 != 0 {
            return Err(Error::Input(format!(
                "{}: {name} is {}, not F32",
                self.name,
                t.ty.name().unwrap_or("of an unknown type")
            )));
        }
        let bytes = self.read(t)?;
        Ok(Some(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ))
    }

    /// The epilogue of the layer under `prefix` (`blk.N`) whose heads are `head_dim` wide,
    /// `q_width` and `kv_width` in all; `original_order` where Q's and K's rows were put
    /// back in the model's order (llama's pairs are then half and half).
    pub fn epilogue(
        &self,
        prefix: &str,
        (head_dim, q_width, kv_width): (u32, u32, u32),
        original_order: bool,
    ) -> Result<GgufEpilogue> {
        let arch = self.architecture().unwrap_or("");
        let Some(&(_, pairs)) = ARCHITECTURES.iter().find(|(a, _)| *a == arch) else {
            let known: Vec<&str> = ARCHITECTURES.iter().map(|a| a.0).collect();
            return Err(Error::Input(format!(
                "{}: architecture '{arch}' is not one whose RoPE and QK-norm this reads ({})",
                self.name,
                known.join(", ")
            )));
        };
        let key = |k: &str| format!("{arch}.{k}");
        let layer = crate::epilogue::config::layer_of(prefix);
        // Gemma 3's sliding layers (five of every six where it has a sliding window) rotate
        // at base 10,000, unscaled: llama.cpp's `rope_freq_base_train_swa`.
        let sliding = arch == "gemma3"
            && self.uint(&key("attention.sliding_window")).unwrap_or(0) > 0
            && layer.is_some_and(|l| l % 6 < 5);
        let theta = match sliding {
            true => 10_000.0,
            false => self.float(&key("rope.freq_base")).unwrap_or(10_000.0),
        };
        let scaling = match sliding {
            true => RopeScaling::None,
            false => self.scaling(&key)?,
        };
        let rotary_dim = match self.uint(&key("rope.dimension_count")) {
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
            None => head_dim,
        };
        let freq_factors = match self.f32_tensor("rope_freqs.weight")? {
            Some(f) if !sliding => Some(f.iter().map(|&v| v as f64).collect()),
            _ => None,
        };
        let rope = Rope {
            theta,
            rotary_dim,
            pairs: match (pairs, original_order) {
                (RopePairs::Adjacent, true) => RopePairs::Half,
                (p, _) => p,
            },
            scaling,
            freq_factors,
        };
        let q = self.f32_tensor(&format!("{prefix}.attn_q_norm.weight"))?;
        let k = self.f32_tensor(&format!("{prefix}.attn_k_norm.weight"))?;
        let qk_norm = match (q, k) {
            (None, None) => None,
            (Some(q_weight), Some(k_weight)) => Some(QkNorm {
                // OLMo 2 normalizes Q and K over their whole width, before the heads.
                scope: if q_weight.len() == q_width as usize
                    && k_weight.len() == kv_width as usize
                    && q_width != head_dim
                {
                    NormScope::Width
                } else {
                    NormScope::PerHead
                },
                eps: self
                    .float(&key("attention.layer_norm_rms_epsilon"))
                    .ok_or_else(|| {
                        Error::Input(format!(
                            "{}: {prefix} has a QK-norm but no {}",
                            self.name,
                            key("attention.layer_norm_rms_epsilon")
                        ))
                    })?,
                q_weight,
                k_weight,
                plus_one: false,
            }),
            _ => {
                return Err(Error::Input(format!(
                    "{}: {prefix} has a norm of Q or of K, not of both",
                    self.name
                )))
            }
        };
        Ok(GgufEpilogue { rope, qk_norm })
    }

    /// The RoPE scaling the file's keys name (`key` gives an architecture's key): llama.cpp
    /// reads the type as "linear" where it is absent; a factor of 0 or none is no scaling.
    fn scaling(&self, key: &dyn Fn(&str) -> String) -> Result<RopeScaling> {
        if let Some(a) = self.float(&key("rope.scaling.attn_factor")) {
            if a != 1.0 {
                return Err(Error::Input(format!(
                    "{}: {} is {a}: a rotation that also scales is not supported",
                    self.name,
                    key("rope.scaling.attn_factor")
                )));
            }
        }
        let kind = self
            .string(&key("rope.scaling.type"))
            .unwrap_or("linear")
            .to_string();
        let factor = self
            .float(&key("rope.scaling.factor"))
            .or_else(|| self.float(&key("rope.scale_linear")))
            .filter(|&f| f != 0.0);
        match (kind.as_str(), factor) {
            ("none", _) | (_, None) => Ok(RopeScaling::None),
            ("linear", Some(factor)) => Ok(RopeScaling::Linear { factor }),
            (other, _) => Err(Error::Input(format!(
                "{}: RoPE scaling '{other}' is not supported (none and linear are, and Llama \
                 3's frequency factors)",
                self.name
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{str_value, Writer};
    use super::*;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn header(arch: &str) -> Writer {
        Writer::new()
            .meta("general.architecture", 8, &str_value(arch))
            .meta(
                &format!("{arch}.attention.head_count"),
                4,
                &4u32.to_le_bytes(),
            )
    }

    fn open(w: Writer) -> Gguf {
        Gguf::from_bytes("model.gguf", w.bytes()).unwrap()
    }

    #[test]
    fn llama_reads_its_base_pairs_and_llama3_frequency_factors() {
        let g = open(
            header("llama")
                .meta("llama.rope.freq_base", 6, &500_000f32.to_le_bytes())
                .tensor("rope_freqs.weight", &[4], 0, f32s(&[1.0, 1.0, 2.0, 8.0])),
        );
        let e = g.epilogue("blk.0", (8, 32, 16), false).unwrap();
        assert_eq!(e.rope.theta, 500_000.0);
        assert_eq!(e.rope.rotary_dim, 8, "the head's size by default");
        assert_eq!(e.rope.pairs, RopePairs::Adjacent, "NORM on the file's rows");
        assert_eq!(e.rope.scaling, RopeScaling::None);
        let f = e.rope.inv_freq();
        assert_eq!(f[0], 1.0);
        assert!((f[3] - 500_000f64.powf(-0.75) / 8.0).abs() < 1e-18, "{f:?}");
        assert_eq!(e.qk_norm, None);
        let back = g.epilogue("blk.0", (8, 32, 16), true).unwrap();
        assert_eq!(
            back.rope.pairs,
            RopePairs::Half,
            "rows put back in the model's order"
        );
    }

    #[test]
    fn qwen3_and_olmo2_norms_and_gemma3_s_sliding_layers() {
        let norm = |w: Writer, q: usize, k: usize| {
            w.tensor(
                "blk.5.attn_q_norm.weight",
                &[q as u64],
                0,
                f32s(&vec![1.5; q]),
            )
            .tensor(
                "blk.5.attn_k_norm.weight",
                &[k as u64],
                0,
                f32s(&vec![0.5; k]),
            )
        };
        let rename = |arch: &str| {
            header(arch).meta(
                &format!("{arch}.attention.layer_norm_rms_epsilon"),
                6,
                &1e-6f32.to_le_bytes(),
            )
        };
        let q3 = open(norm(rename("qwen3"), 8, 8));
        let e = q3.epilogue("blk.5", (8, 32, 16), false).unwrap();
        let n = e.qk_norm.unwrap();
        assert_eq!(
            (n.scope, n.plus_one, n.q_weight.len()),
            (NormScope::PerHead, false, 8)
        );
        assert!((n.eps - 1e-6).abs() < 1e-12);
        assert_eq!(e.rope.pairs, RopePairs::Half);
        let o2 = open(norm(rename("olmo2"), 32, 16));
        let n = o2
            .epilogue("blk.5", (8, 32, 16), false)
            .unwrap()
            .qk_norm
            .unwrap();
        assert_eq!(n.scope, NormScope::Width);
        // Gemma 3: layer 5 is global (base and scaling from the file), layer 4 sliding.
        let gemma = |layer: &str| {
            open(
                header("gemma3")
                    .meta("gemma3.rope.freq_base", 6, &1e6f32.to_le_bytes())
                    .meta("gemma3.rope.scaling.factor", 6, &8f32.to_le_bytes())
                    .meta("gemma3.attention.sliding_window", 4, &512u32.to_le_bytes()),
            )
            .epilogue(layer, (8, 32, 16), false)
            .unwrap()
            .rope
        };
        let global = gemma("blk.5");
        assert_eq!(global.theta, 1e6);
        assert_eq!(global.scaling, RopeScaling::Linear { factor: 8.0 });
        let local = gemma("blk.4");
        assert_eq!((local.theta, local.scaling), (10_000.0, RopeScaling::None));
    }

    #[test]
    fn what_it_cannot_apply_is_refused_by_name() {
        let cases = [
            (header("phi2"), "architecture 'phi2'"),
            (
                header("qwen2")
                    .meta("qwen2.rope.scaling.type", 8, &str_value("yarn"))
                    .meta("qwen2.rope.scaling.factor", 6, &4f32.to_le_bytes()),
                "'yarn' is not supported",
            ),
            (
                header("qwen2").meta("qwen2.rope.scaling.attn_factor", 6, &1.5f32.to_le_bytes()),
                "also scales",
            ),
            (
                header("qwen3").tensor("blk.0.attn_q_norm.weight", &[8], 0, f32s(&[1.0; 8])),
                "not of both",
            ),
            (
                header("qwen3")
                    .tensor("blk.0.attn_q_norm.weight", &[8], 0, f32s(&[1.0; 8]))
                    .tensor("blk.0.attn_k_norm.weight", &[8], 0, f32s(&[1.0; 8])),
                "no qwen3.attention.layer_norm_rms_epsilon",
            ),
        ];
        for (w, says) in cases {
            let e = open(w)
                .epilogue("blk.0", (8, 32, 16), false)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}
