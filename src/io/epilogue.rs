//! A layer's epilogue (QK-norm and RoPE, [`crate::epilogue`]) from the model's own files, for
//! every front end: a Hugging Face `config.json` beside a safetensors checkpoint (the norm
//! weights from the checkpoint, `P.self_attn.q_norm.weight` and `k_norm`), or a GGUF file's
//! metadata and its `attn_q_norm`/`attn_k_norm` tensors ([`super::gguf::Gguf::epilogue`]).

use super::checkpoint::Checkpoint;
use super::gguf::{is_gguf, Gguf};
use crate::epilogue::config::{from_hf_config, layer_of};
use crate::epilogue::{Epilogue, Heads, Positions, QkNorm};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The most bytes a `config.json` is read up to.
const CONFIG_CAP: u64 = 16 << 20;

/// What a front end asks of the model's epilogue.
#[derive(Debug, Clone, PartialEq)]
pub struct EpilogueRequest {
    /// Rotate Q and K as the model does.
    pub rope: bool,
    /// RMS-normalize Q and K as the model does.
    pub qk_norm: bool,
    /// The model's `config.json` (None: `config.json` beside the checkpoint).
    pub config: Option<PathBuf>,
    pub positions: Positions,
    /// The query heads and KV heads the user named, if any: refused where the model's files
    /// say otherwise.
    pub heads: (Option<u32>, Option<u32>),
}

/// The layer under `prefix` of the checkpoint at `weights` (Q `q_width` and K `kv_width`
/// wide): the epilogue `req` asks for, over the heads the model's files give, or None where
/// it asks for neither step. `seq` is 0, which the projector refuses: the caller sets it from
/// its X (tokens per sequence; a 2-D X is one sequence).
/// `original_order`: a GGUF file's Q and K rows were put back in the model's order.
pub fn layer_epilogue(
    weights: &Path,
    prefix: Option<&str>,
    (q_width, kv_width): (u32, u32),
    original_order: bool,
    req: &EpilogueRequest,
) -> Result<Option<(Epilogue, Heads)>> {
    if !req.rope && !req.qk_norm {
        return Ok(None);
    }
    let (qk_norm, rope, heads, kv_heads, head_dim) = if is_gguf(weights) {
        if let Some(c) = &req.config {
            return Err(Error::Input(format!(
                "{} is a GGUF file, whose metadata gives RoPE and QK-norm: {} is not read",
                weights.display(),
                c.display()
            )));
        }
        let file = Gguf::open(weights)?;
        let Some((heads, kv_heads)) = file.head_counts()? else {
            return Err(Error::Input(format!(
                "{}: the metadata names no head count, which RoPE and QK-norm need",
                weights.display()
            )));
        };
        let prefix = prefix.unwrap_or_default();
        let head_dim = q_width / heads;
        let g = file.epilogue(prefix, (head_dim, q_width, kv_width), original_order)?;
        if req.qk_norm && g.qk_norm.is_none() {
            return Err(Error::Input(format!(
                "QK-norm: {prefix} of {} has no QK-norm ({prefix}.attn_q_norm.weight)",
                weights.display()
            )));
        }
        (g.qk_norm, g.rope, heads, kv_heads, head_dim)
    } else {
        from_config(weights, prefix, req)?
    };
    let ep = Epilogue {
        qk_norm: qk_norm.filter(|_| req.qk_norm),
        rope: req.rope.then_some(rope),
        positions: req.positions.clone(),
    };
    let heads = Heads {
        heads,
        kv_heads,
        head_dim,
        seq: 0,
    };
    check_heads(&heads, (q_width, kv_width), req.heads)?;
    Ok(Some((ep, heads)))
}

/// Refuses heads from the model's files that do not make Q's and K's widths, or that are not
/// the ones the user named.
fn check_heads(
    h: &Heads,
    (q_width, kv_width): (u32, u32),
    named: (Option<u32>, Option<u32>),
) -> Result<()> {
    let cols = |n: u32| n as u64 * h.head_dim as u64;
    if cols(h.heads) != q_width as u64 || cols(h.kv_heads) != kv_width as u64 {
        return Err(Error::Shape(format!(
            "the model's files say {} heads and {} KV heads of {}, which do not make Q's width \
             {q_width} and K's {kv_width}",
            h.heads, h.kv_heads, h.head_dim
        )));
    }
    let wrong = named.0.is_some_and(|n| n != h.heads) || named.1.is_some_and(|n| n != h.kv_heads);
    if wrong {
        let said: Vec<String> = [
            named.0.map(|n| format!("{n} heads")),
            named.1.map(|n| format!("{n} KV heads")),
        ]
        .into_iter()
        .flatten()
        .collect();
        return Err(Error::Input(format!(
            "{} named, but the model's files say {} heads and {} KV heads",
            said.join(" and "),
            h.heads,
            h.kv_heads
        )));
    }
    Ok(())
}

/// A safetensors checkpoint's layer: RoPE, the norm and the heads from config.json, the
/// norm's weights from the checkpoint.
fn from_config(
    weights: &Path,
    prefix: Option<&str>,
    req: &EpilogueRequest,
) -> Result<(Option<QkNorm>, crate::epilogue::Rope, u32, u32, u32)> {
    let path = match &req.config {
        Some(p) => p.clone(),
        None => weights
            .parent()
            .unwrap_or(Path::new("."))
            .join("config.json"),
    };
    let text = super::read_small_text(&path, CONFIG_CAP, "the model's config")?;
    let c = from_hf_config(&text, prefix.and_then(layer_of))
        .map_err(|err| Error::Input(format!("{}: {err}", path.display())))?;
    let qk_norm = if req.qk_norm {
        let Some((scope, eps, plus_one)) = c.norm else {
            return Err(Error::Input(format!(
                "QK-norm: {} ({}) has no QK-norm",
                path.display(),
                c.model_type
            )));
        };
        let Some(prefix) = prefix else {
            return Err(Error::Input(
                "QK-norm finds the norm weights under the layer's prefix \
                 (P.self_attn.q_norm.weight): name it"
                    .into(),
            ));
        };
        let ckpt = Checkpoint::open(weights)?;
        let attn = if prefix.ends_with("self_attn") {
            prefix.to_string()
        } else {
            format!("{prefix}.self_attn")
        };
        let weight = |which: &str| -> Result<Vec<f32>> {
            let t = ckpt.tensor(&format!("{attn}.{which}_norm.weight"))?;
            Ok(t.data.as_ref().to_f32())
        };
        Some(QkNorm {
            scope,
            eps,
            q_weight: weight("q")?,
            k_weight: weight("k")?,
            plus_one,
        })
    } else {
        None
    };
    Ok((qk_norm, c.rope, c.heads, c.kv_heads, c.head_dim))
}
