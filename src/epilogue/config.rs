//! The epilogue a Hugging Face model's `config.json` describes for one attention layer: its
//! heads, its RoPE (the base, partial rotary dimensions, `linear` and `llama3` scaling, in
//! both the `rope_theta` + `rope_scaling` form and transformers 5's `rope_parameters`, per
//! layer type where a model alternates them, as Gemma 3 does) and its QK-norm (Qwen3 and
//! Gemma 3 per head, Gemma's as 1 + w; OLMo 2 over the width). The norms' weights are the
//! checkpoint's, read beside Q, K and V; this says which and how they apply.

use super::{NormScope, Rope, RopePairs, RopeScaling};
use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// What a model's config says of one attention layer after its projection.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerEpilogue {
    /// The model's `model_type`.
    pub model_type: String,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub rope: Rope,
    /// The QK-norm's scope, ε and whether its weight is an offset from 1; None where the
    /// model has none.
    pub norm: Option<(NormScope, f64, bool)>,
}

/// The families whose QK-norm and RoPE this reads: (model_type, the norm's scope and
/// whether its weight is 1 + w). Every one rotates half-and-half pairs, as transformers does.
const FAMILIES: [(&str, Option<(NormScope, bool)>); 11] = [
    ("llama", None),
    ("mistral", None),
    ("mixtral", None),
    ("qwen2", None),
    ("qwen3", Some((NormScope::PerHead, false))),
    ("qwen3_moe", Some((NormScope::PerHead, false))),
    ("gemma", None),
    ("gemma2", None),
    ("gemma3", Some((NormScope::PerHead, true))),
    ("gemma3_text", Some((NormScope::PerHead, true))),
    ("olmo2", Some((NormScope::Width, false))),
];

fn number(m: &Map<String, Value>, key: &str) -> Option<f64> {
    m.get(key).and_then(Value::as_f64)
}

fn count(m: &Map<String, Value>, key: &str) -> Result<Option<u32>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0)
            .map(Some)
            .ok_or_else(|| Error::Input(format!("config.json: {key} is {v}, not a count"))),
    }
}

/// The layer's attention type where the model alternates sliding and full attention
/// (Gemma 3): from `layer_types`, else every `sliding_window_pattern`-th layer is full.
fn layer_type(m: &Map<String, Value>, layer: Option<u32>) -> Result<Option<String>> {
    let alternates = m.contains_key("layer_types") || m.contains_key("sliding_window_pattern");
    if !alternates {
        return Ok(None);
    }
    let Some(layer) = layer else {
        return Err(Error::Input(
            "this model's layers alternate sliding and full attention, with different RoPE: \
             name the layer (its prefix, `model.layers.N`)"
                .into(),
        ));
    };
    if let Some(types) = m.get("layer_types").and_then(Value::as_array) {
        return match types.get(layer as usize).and_then(Value::as_str) {
            Some(t) => Ok(Some(t.to_string())),
            None => Err(Error::Input(format!(
                "config.json's layer_types names {} layers; layer {layer} is not one",
                types.len()
            ))),
        };
    }
    let pattern = count(m, "sliding_window_pattern")?.unwrap_or(6);
    Ok(Some(
        if (layer + 1) % pattern == 0 {
            "full_attention"
        } else {
            "sliding_attention"
        }
        .to_string(),
    ))
}

/// The layer's RoPE parameters as one object: transformers 5's `rope_parameters` (per layer
/// type where it is keyed so), else `rope_theta` (or Gemma 3's `rope_local_base_freq` for a
/// sliding layer) with `rope_scaling` (for a full layer only, in Gemma 3).
fn rope_parameters(m: &Map<String, Value>, layer_type: Option<&str>) -> Result<Map<String, Value>> {
    if let Some(Value::Object(p)) = m.get("rope_parameters") {
        let by_type = layer_type.and_then(|t| p.get(t)).and_then(Value::as_object);
        return Ok(by_type.unwrap_or(p).clone());
    }
    let mut p = Map::new();
    let theta = match layer_type {
        Some("sliding_attention") => m.get("rope_local_base_freq").or(m.get("rope_theta")),
        _ => m.get("rope_theta"),
    };
    p.insert(
        "rope_theta".into(),
        theta.cloned().unwrap_or(Value::from(10_000.0)),
    );
    if layer_type != Some("sliding_attention") {
        if let Some(Value::Object(s)) = m.get("rope_scaling") {
            p.extend(s.clone());
        }
    }
    Ok(p)
}

/// The scaling `p` names (`rope_type`, or the older `type`).
fn scaling(p: &Map<String, Value>) -> Result<RopeScaling> {
    let kind = p
        .get("rope_type")
        .or(p.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let need = |key: &str| {
        number(p, key)
            .ok_or_else(|| Error::Input(format!("config.json: {kind} RoPE scaling without {key}")))
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear {
            factor: need("factor")?,
        }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: need("factor")?,
            low_freq_factor: need("low_freq_factor")?,
            high_freq_factor: need("high_freq_factor")?,
            original_max_position_embeddings: need("original_max_position_embeddings")?,
        }),
        other => Err(Error::Input(format!(
            "config.json: RoPE scaling '{other}' is not supported (default, linear and llama3 \
             are)"
        ))),
    }
}

/// The epilogue of layer `layer` (where the model's layers differ) of the model whose
/// `config.json` is `text`.
pub fn from_hf_config(text: &str, layer: Option<u32>) -> Result<LayerEpilogue> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::Input(format!("config.json is not JSON: {e}")))?;
    // Multimodal models (Gemma 3's 4B and up) keep the language model's under text_config.
    let m = match v.get("text_config") {
        Some(Value::Object(t)) => t,
        _ => v
            .as_object()
            .ok_or_else(|| Error::Input("config.json holds no object".into()))?,
    };
    let model_type = m
        .get("model_type")
        .or(v.get("model_type"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(&(_, norm)) = FAMILIES.iter().find(|(t, _)| *t == model_type) else {
        let known: Vec<&str> = FAMILIES.iter().map(|f| f.0).collect();
        return Err(Error::Input(format!(
            "config.json: model_type '{model_type}' is not one whose RoPE and QK-norm this \
             reads ({})",
            known.join(", ")
        )));
    };
    let heads = count(m, "num_attention_heads")?
        .ok_or_else(|| Error::Input("config.json has no num_attention_heads".into()))?;
    let kv_heads = count(m, "num_key_value_heads")?.unwrap_or(heads);
    let head_dim = match count(m, "head_dim")? {
        Some(d) => d,
        None => {
            let hidden = count(m, "hidden_size")?
                .ok_or_else(|| Error::Input("config.json has no hidden_size or head_dim".into()))?;
            hidden / heads
        }
    };
    let kind = layer_type(m, layer)?;
    let p = rope_parameters(m, kind.as_deref())?;
    let theta = number(&p, "rope_theta")
        .ok_or_else(|| Error::Input("config.json: rope_theta is not a number".into()))?;
    let partial = number(&p, "partial_rotary_factor")
        .or(number(m, "partial_rotary_factor"))
        .unwrap_or(1.0);
    let rope = Rope {
        theta,
        // As transformers computes it: int(head_dim * partial_rotary_factor).
        rotary_dim: (head_dim as f64 * partial) as u32,
        pairs: RopePairs::Half,
        scaling: scaling(&p)?,
        freq_factors: None,
    };
    let eps = number(m, "rms_norm_eps").unwrap_or(1e-6);
    Ok(LayerEpilogue {
        model_type,
        heads,
        kv_heads,
        head_dim,
        rope,
        norm: norm.map(|(scope, plus_one)| (scope, eps, plus_one)),
    })
}

/// The layer number of a prefix such as `model.layers.12` (its last number), if any.
pub fn layer_of(prefix: &str) -> Option<u32> {
    prefix.rsplit('.').find_map(|p| p.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_3_1_reads_its_base_heads_and_llama3_scaling() {
        let c = r#"{"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32,
            "num_key_value_heads": 8, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3"}}"#;
        let e = from_hf_config(c, None).unwrap();
        assert_eq!((e.heads, e.kv_heads, e.head_dim), (32, 8, 128));
        assert_eq!(e.rope.theta, 500_000.0);
        assert_eq!(e.rope.rotary_dim, 128);
        assert_eq!(e.rope.pairs, RopePairs::Half);
        assert!(matches!(e.rope.scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
        assert_eq!(e.norm, None);
    }

    #[test]
    fn qwen3_and_olmo2_read_their_norms_and_gemma3_its_layer_s_rope() {
        let q = r#"{"model_type": "qwen3", "hidden_size": 1024, "head_dim": 128,
            "num_attention_heads": 16, "num_key_value_heads": 8, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000, "rope_scaling": null}"#;
        let e = from_hf_config(q, None).unwrap();
        assert_eq!((e.head_dim, e.rope.theta), (128, 1e6));
        assert_eq!(e.norm, Some((NormScope::PerHead, 1e-6, false)));
        let o = r#"{"model_type": "olmo2", "hidden_size": 2048, "num_attention_heads": 16,
            "rms_norm_eps": 1e-6, "rope_theta": 500000}"#;
        let e = from_hf_config(o, None).unwrap();
        assert_eq!((e.kv_heads, e.head_dim), (16, 128));
        assert_eq!(e.norm, Some((NormScope::Width, 1e-6, false)));
        // Gemma 3: sliding layers at the local base, every sixth layer full with the
        // scaling; the norm's weight is 1 + w.
        let g = r#"{"model_type": "gemma3", "text_config": {"model_type": "gemma3_text",
            "hidden_size": 2560, "head_dim": 256, "num_attention_heads": 8,
            "num_key_value_heads": 4, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "rope_local_base_freq": 10000.0, "sliding_window_pattern": 6,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"}}}"#;
        let sliding = from_hf_config(g, Some(layer_of("model.layers.0").unwrap())).unwrap();
        assert_eq!(sliding.rope.theta, 10_000.0);
        assert_eq!(sliding.rope.scaling, RopeScaling::None);
        assert_eq!(sliding.norm, Some((NormScope::PerHead, 1e-6, true)));
        let full = from_hf_config(g, layer_of("model.language_model.layers.5")).unwrap();
        assert_eq!(full.rope.theta, 1e6);
        assert_eq!(full.rope.scaling, RopeScaling::Linear { factor: 8.0 });
        assert!(from_hf_config(g, None)
            .unwrap_err()
            .to_string()
            .contains("name the layer"));
    }

    #[test]
    fn transformers_5_rope_parameters_per_layer_type_and_partial_rotation() {
        let c = r#"{"model_type": "gemma3_text", "head_dim": 64, "num_attention_heads": 4,
            "layer_types": ["sliding_attention", "full_attention"],
            "rope_parameters": {
                "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6},
                "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}"#;
        let e = from_hf_config(c, Some(1)).unwrap();
        assert_eq!(
            (e.rope.theta, e.rope.scaling),
            (1e6, RopeScaling::Linear { factor: 4.0 })
        );
        let e = from_hf_config(c, Some(0)).unwrap();
        assert_eq!((e.rope.theta, e.rope.scaling), (1e4, RopeScaling::None));
        assert!(from_hf_config(c, Some(2))
            .unwrap_err()
            .to_string()
            .contains("layer 2"));
        let p = r#"{"model_type": "llama", "hidden_size": 256, "num_attention_heads": 4,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000,
            "partial_rotary_factor": 0.5}}"#;
        assert_eq!(from_hf_config(p, None).unwrap().rope.rotary_dim, 32);
    }

    #[test]
    fn what_it_cannot_read_is_refused_by_name() {
        for (c, says) in [
            ("[1]", "holds no object"),
            ("{", "not JSON"),
            (r#"{"model_type": "bert"}"#, "'bert' is not one"),
            (
                r#"{"model_type": "llama", "hidden_size": 64}"#,
                "num_attention_heads",
            ),
            (
                r#"{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 2,
                "rope_scaling": {"rope_type": "yarn", "factor": 4}}"#,
                "'yarn' is not supported",
            ),
            (
                r#"{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 2,
                "rope_scaling": {"rope_type": "linear"}}"#,
                "without factor",
            ),
            (
                r#"{"model_type": "llama", "hidden_size": 64, "num_attention_heads": -2}"#,
                "not a count",
            ),
        ] {
            let e = from_hf_config(c, None).unwrap_err().to_string();
            assert!(e.contains(says), "{c}: {e}");
        }
    }
}
