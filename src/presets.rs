//! Named projection shapes of real models, shared by `qkv bench` and the criterion benches.

/// One model's attention projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// Name on the command line.
    pub name: &'static str,
    /// What it is.
    pub model: &'static str,
    /// Embedding width.
    pub d_model: u32,
    /// Q width (query heads x head_dim).
    pub q_width: u32,
    /// K and V width (key/value heads x head_dim).
    pub kv_width: u32,
    /// Whether the model's projections carry a bias.
    pub bias: bool,
    /// A natural unit of tokens (ViT-B/16: 197 per image), or 0 for none.
    pub tokens_unit: u32,
}

/// The named shapes.
pub const PRESETS: [Preset; 4] = [
    Preset {
        name: "gpt2",
        model: "GPT-2 small c_attn: 768 -> 3 x 768, 12 heads",
        d_model: 768,
        q_width: 768,
        kv_width: 768,
        bias: true,
        tokens_unit: 0,
    },
    Preset {
        name: "bert-base",
        model: "BERT-base self-attention: 768 -> 768 x 3, 12 heads",
        d_model: 768,
        q_width: 768,
        kv_width: 768,
        bias: true,
        tokens_unit: 0,
    },
    Preset {
        name: "vit-b16",
        model: "ViT-B/16 at 224 px: 197 tokens per image, 768 -> 3 x 768",
        d_model: 768,
        q_width: 768,
        kv_width: 768,
        bias: true,
        tokens_unit: 197,
    },
    Preset {
        name: "llama3-8b",
        model: "Llama-3-8B: 4096 -> 4096 + 1024 + 1024 (32 query, 8 K/V heads of 128)",
        d_model: 4096,
        q_width: 4096,
        kv_width: 1024,
        bias: false,
        tokens_unit: 0,
    },
];

/// The preset called `name`.
pub fn preset(name: &str) -> Result<Preset, String> {
    PRESETS
        .iter()
        .find(|p| p.name == name)
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
            format!("unknown shape '{name}'; known: {}, all", names.join(", "))
        })
}

/// The token counts of a default sweep: `unit` (64 where 0) and its doublings up to `max`.
pub fn token_sweep(unit: u32, max: u32) -> Vec<u32> {
    let base = if unit > 0 { unit } else { 64 };
    let mut out = vec![base];
    while let Some(&last) = out.last() {
        match last.checked_mul(2) {
            Some(next) if next <= max => out.push(next),
            _ => break,
        }
    }
    out
}
