//! `qkv gguf`: what a GGUF file holds for a projection: its architecture, d_model and heads
//! from the metadata, and each attention layer's Q, K and V formats, shapes and sizes, so a
//! user knows which `--prefix` to give and how each matrix is stored. The first layer (or
//! the one `--prefix` names) is read and checked as a projection would read it; the others
//! are listed from the file's table alone, without reading their bytes.

use crate::exit::Failure;
use crate::stdout::outln;
use clap::Args;
use qkv_wgpu::io::gguf::{AttentionLayer, Gguf, TensorInfo};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct GgufArgs {
    /// The GGUF file
    pub file: PathBuf,
    /// Show only this layer's projections (e.g. blk.0) [default: every layer]
    #[arg(long)]
    pub prefix: Option<String>,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Bytes as KiB below a MiB, else MiB.
fn size(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    }
}

/// A tensor's short name under its layer (`attn_q.weight`).
fn short<'a>(prefix: &str, t: &'a TensorInfo) -> &'a str {
    t.name
        .strip_prefix(prefix)
        .and_then(|n| n.strip_prefix('.'))
        .unwrap_or(&t.name)
}

/// A tensor's shape as NumPy and PyTorch write it, `[out, in]` for a weight: ggml's
/// dimensions reversed.
fn shape(t: &TensorInfo) -> Vec<u64> {
    t.dims.iter().rev().copied().collect()
}

pub fn gguf(args: &GgufArgs) -> Result<(), Failure> {
    let g = Gguf::open(&args.file)?;
    let prefixes = match &args.prefix {
        Some(p) => vec![p.clone()],
        None => g.attention_prefixes(),
    };
    // The first layer read and checked whole: its heads, widths and formats.
    let first: Option<AttentionLayer> = match prefixes.first() {
        Some(p) => Some(g.attention(p)?),
        None => None,
    };
    let layers: Vec<(&str, Vec<&TensorInfo>)> = prefixes
        .iter()
        .map(|p| (p.as_str(), g.attention_tensors(p)))
        .collect();
    if args.json {
        let listed = |(p, ts): &(&str, Vec<&TensorInfo>)| {
            let tensors: Vec<serde_json::Value> = ts
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "name": short(p, t), "type": t.ty.to_string().to_ascii_lowercase(),
                        "shape": shape(t), "bytes": t.bytes,
                    })
                })
                .collect();
            serde_json::json!({"prefix": p, "tensors": tensors})
        };
        let summary = serde_json::json!({
            "file": args.file.display().to_string(),
            "version": g.version,
            "architecture": g.architecture(),
            "tensors": g.tensors.len(),
            "d_model": first.as_ref().map(|l| l.d_model),
            "heads": first.as_ref().and_then(|l| l.heads),
            "kv_heads": first.as_ref().and_then(|l| l.kv_heads),
            "q_width": first.as_ref().map(|l| l.q_width()),
            "kv_width": first.as_ref().map(|l| l.kv_width()),
            "rows_reordered": first.as_ref().map(|l| l.rows_reordered),
            "layers": layers.iter().map(listed).collect::<Vec<_>>(),
        });
        outln!("{summary}");
        return Ok(());
    }
    outln!(
        "{}: GGUF v{}, architecture {}, {} tensors",
        args.file.display(),
        g.version,
        g.architecture().unwrap_or("not given"),
        g.tensors.len()
    );
    let Some(first) = first else {
        outln!("no attention layers (no tensor named *.attn_q.weight or *.attn_qkv.weight)");
        return Ok(());
    };
    let show = |v: Option<u32>| v.map_or("not given".to_string(), |v| v.to_string());
    outln!(
        "d_model {}, heads {}, KV heads {}; Q {} wide, K and V {} ({} checked)",
        first.d_model,
        show(first.heads),
        show(first.kv_heads),
        first.q_width(),
        first.kv_width(),
        first.prefix
    );
    if first.rows_reordered {
        outln!(
            "Q's and K's rows are in llama.cpp's order for its RoPE (its converter reorders \
             them for {}), not the original model's",
            first.architecture.as_deref().unwrap_or("this architecture")
        );
    }
    for (p, ts) in &layers {
        let parts: Vec<String> = ts
            .iter()
            .map(|t| {
                let dims: Vec<String> = shape(t).iter().map(|d| d.to_string()).collect();
                format!(
                    "{} {} [{}] {}",
                    short(p, t),
                    t.ty.to_string().to_ascii_lowercase(),
                    dims.join(", "),
                    size(t.bytes)
                )
            })
            .collect();
        outln!("  {p}: {}", parts.join("; "));
    }
    Ok(())
}
