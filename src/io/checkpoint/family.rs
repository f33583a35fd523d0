//! The naming conventions `--prefix` knows: which model families store their Q/K/V
//! projections under which tensor names, and in which layout.

use std::fmt;

/// How a weight matrix is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightLayout {
    /// [out_features, in_features], y = x·Wᵀ + b: PyTorch nn.Linear (BERT, Llama, most models).
    OutIn,
    /// [in_features, out_features], y = x·W + b: GPT-2's Conv1D, and this crate's own layout.
    InOut,
}

impl WeightLayout {
    /// Both layouts.
    pub const ALL: [WeightLayout; 2] = [WeightLayout::OutIn, WeightLayout::InOut];

    /// The name users type (`--weight-layout out-in`).
    pub const fn name(self) -> &'static str {
        match self {
            WeightLayout::OutIn => "out-in",
            WeightLayout::InOut => "in-out",
        }
    }

    /// One line on what the layout is and who uses it.
    pub const fn description(self) -> &'static str {
        match self {
            WeightLayout::OutIn => {
                "[out_features, in_features], y = x·Wᵀ + b: PyTorch nn.Linear (BERT, Llama, \
                 most models)"
            }
            WeightLayout::InOut => {
                "[in_features, out_features], y = x·W + b: GPT-2's Conv1D, and this crate's \
                 own layout"
            }
        }
    }
}

impl fmt::Display for WeightLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for WeightLayout {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        WeightLayout::ALL
            .into_iter()
            .find(|l| l.name() == s.trim())
            .ok_or_else(|| format!("invalid value '{s}'; possible values: out-in, in-out"))
    }
}

/// A model family whose attention projections `--prefix` recognizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// BERT, RoBERTa and friends: separate query/key/value nn.Linear layers.
    Bert,
    /// Llama, Mistral, Qwen and friends: q_proj/k_proj/v_proj, often grouped K/V.
    Llama,
    /// GPT-2: one fused c_attn Conv1D.
    Gpt2,
}

impl Family {
    /// Every family, in the order `--prefix` tries them.
    pub const ALL: [Family; 3] = [Family::Bert, Family::Llama, Family::Gpt2];

    /// Name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Family::Bert => "BERT",
            Family::Llama => "Llama",
            Family::Gpt2 => "GPT-2",
        }
    }

    /// The layout the family stores its weights in.
    pub fn layout(self) -> WeightLayout {
        match self {
            Family::Bert | Family::Llama => WeightLayout::OutIn,
            Family::Gpt2 => WeightLayout::InOut,
        }
    }

    /// The attention module's own name under a layer's prefix: what a model's printed
    /// modules show (`encoder.layer.0.attention.self`, `model.layers.0.self_attn`,
    /// `h.0.attn`), and what `--prefix` accepts as well as the layer's prefix.
    pub fn module(self) -> &'static str {
        match self {
            Family::Bert => "attention.self",
            Family::Llama => "self_attn",
            Family::Gpt2 => "attn",
        }
    }

    /// The tensor-name suffixes of (weights, biases) after the layer's prefix.
    pub(super) fn names(self) -> Names<&'static str> {
        match self {
            Family::Bert => Names::Separate {
                w: [
                    "attention.self.query.weight",
                    "attention.self.key.weight",
                    "attention.self.value.weight",
                ],
                b: Some([
                    "attention.self.query.bias",
                    "attention.self.key.bias",
                    "attention.self.value.bias",
                ]),
            },
            Family::Llama => Names::Separate {
                w: [
                    "self_attn.q_proj.weight",
                    "self_attn.k_proj.weight",
                    "self_attn.v_proj.weight",
                ],
                b: Some([
                    "self_attn.q_proj.bias",
                    "self_attn.k_proj.bias",
                    "self_attn.v_proj.bias",
                ]),
            },
            Family::Gpt2 => Names::Fused {
                w: "attn.c_attn.weight",
                b: Some("attn.c_attn.bias"),
            },
        }
    }
}

/// Tensor names of one attention layer's Q/K/V projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Names<S> {
    /// Three matrices, and optionally three biases.
    Separate {
        /// Wq, Wk, Wv.
        w: [S; 3],
        /// bq, bk, bv.
        b: Option<[S; 3]>,
    },
    /// One matrix with Q, K, V side by side (in that order), and optionally one bias.
    Fused {
        /// Wqkv.
        w: S,
        /// bqkv.
        b: Option<S>,
    },
}
