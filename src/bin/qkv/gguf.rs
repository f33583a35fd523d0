//! `qkv gguf`: what a GGUF file holds for a projection: its architecture, d_model and heads
//! from the metadata, and each attention layer's Q, K and V formats, shapes and sizes, so a
//! user knows which `--prefix` to give and how each matrix is stored.

use crate::exit::Failure;
use crate::stdout::outln;
use clap::Args;
use qkv_wgpu::io::gguf::Gguf;
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
fn size(bytes: usize) -> String {
    if bytes < 1 << 20 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    }
}

pub fn gguf(args: &GgufArgs) -> Result<(), Failure> {
    let g = Gguf::open(&args.file)?;
    let prefixes = match &args.prefix {
        Some(p) => vec![p.clone()],
        None => g.attention_prefixes(),
    };
    let mut layers = Vec::new();
    for p in &prefixes {
        let layer = g.attention(p)?;
        let parts: Vec<serde_json::Value> = ["q", "k", "v"]
            .iter()
            .zip(&layer.matrices)
            .map(|(name, m)| {
                serde_json::json!({
                    "part": name, "type": m.ty.name(), "rows": m.rows, "cols": m.cols,
                    "bytes": m.bytes.len(),
                })
            })
            .collect();
        layers.push((layer, parts));
    }
    let first = layers.first().map(|(l, _)| l);
    let summary = serde_json::json!({
        "file": args.file.display().to_string(),
        "version": g.version,
        "architecture": g.architecture(),
        "tensors": g.tensors.len(),
        "d_model": first.map(|l| l.d_model),
        "heads": first.and_then(|l| l.heads),
        "kv_heads": first.and_then(|l| l.kv_heads),
        "rows_reordered": first.map(|l| l.rows_reordered),
        "layers": layers.iter().map(|(l, parts)| serde_json::json!({
            "prefix": l.prefix, "bias": l.bias.is_some(), "matrices": parts,
        })).collect::<Vec<_>>(),
    });
    if args.json {
        outln!("{summary}");
        return Ok(());
    }
    let show = |v: Option<u32>| v.map_or("not given".to_string(), |v| v.to_string());
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
    outln!(
        "d_model {}, heads {}, KV heads {}",
        first.d_model,
        show(first.heads),
        show(first.kv_heads)
    );
    if first.rows_reordered {
        outln!(
            "Q's and K's rows are in llama.cpp's order for its RoPE (its converter reorders \
             them for {}), not the original model's",
            first.architecture.as_deref().unwrap_or("this architecture")
        );
    }
    for (l, _) in &layers {
        let parts: Vec<String> = ["Q", "K", "V"]
            .iter()
            .zip(&l.matrices)
            .map(|(n, m)| {
                format!(
                    "{n} {} [{}, {}] {}",
                    m.ty,
                    m.rows,
                    m.cols,
                    size(m.bytes.len())
                )
            })
            .collect();
        let bias = if l.bias.is_some() { ", bias" } else { "" };
        outln!("  {}: {}{bias}", l.prefix, parts.join("; "));
    }
    Ok(())
}
