//! `--rope` and `--qk-norm`: Q and K made ready for attention as the model itself does it,
//! its settings from the model's own files ([`qkv_wgpu::io::epilogue`]).

use super::load::Loaded;
use super::ProjectArgs;
use clap::{ArgGroup, Args};
use qkv_wgpu::epilogue::{Epilogue, Heads, Positions};
use qkv_wgpu::io::epilogue::{layer_epilogue, EpilogueRequest};
use qkv_wgpu::io::npy::XDims;
use qkv_wgpu::Error;
use std::path::PathBuf;

/// `--rope` and `--qk-norm` as the model's files say, over which heads, if asked for.
pub(super) type Settings = Option<(Epilogue, Heads)>;

/// The most bytes `--positions` is read up to.
const TEXT_CAP: u64 = 64 << 20;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("epilogue_step").args(["rope", "qk_norm"]).multiple(true)))]
pub struct EpilogueArgs {
    /// Rotate Q and K (RoPE) as the model does: base, rotary dimensions, scaling and pairs
    /// from config.json beside a safetensors checkpoint (--config), or from a GGUF file's
    /// metadata; applied on the GPU after the projection, in f32, before the final rounding
    #[arg(long)]
    rope: bool,
    /// RMS-normalize Q and K as the model does (Qwen3, Gemma 3 per head; OLMo 2 over the
    /// width), with the layer's own norm weights (P.self_attn.q_norm.weight and k_norm, or a
    /// GGUF file's attn_q_norm and attn_k_norm); before RoPE, as in the model
    #[arg(long)]
    qk_norm: bool,
    /// The model's config.json [default: config.json beside --weights]
    #[arg(long, value_name = "FILE", requires = "epilogue_step")]
    config: Option<PathBuf>,
    /// With --rope: each sequence's first token is at this position (a decode step's
    /// offset: the tokens before it) [default: 0]
    #[arg(
        long,
        value_name = "N",
        requires = "rope",
        conflicts_with = "positions"
    )]
    position_offset: Option<u32>,
    /// With --rope: each token's position, one per token of X in order, as integers in a
    /// text file (separated by spaces, commas or newlines)
    #[arg(long, value_name = "FILE", requires = "rope")]
    positions: Option<PathBuf>,
    /// Run --rope and --qk-norm as a pass of their own after the kernel, even where the
    /// kernel could apply them in its store (blocktile, when every head lies inside its
    /// 128-column tile and the norm is per head): to compare the two
    #[arg(long, requires = "epilogue_step")]
    epilogue_pass: bool,
}

impl EpilogueArgs {
    /// Whether any step was asked for.
    pub fn any(&self) -> bool {
        self.rope || self.qk_norm
    }

    /// Whether the epilogue must run as a pass of its own (`--epilogue-pass`).
    pub fn separate_pass(&self) -> bool {
        self.epilogue_pass
    }

    /// Whether the positions come from a file (one list for one X).
    pub fn positions_given(&self) -> bool {
        self.positions.is_some()
    }
}

/// The chunking the user asked for, with Q and K in f32 for the pass where `--epilogue-pass`
/// asks for it.
pub(super) fn chunk_options(args: &ProjectArgs) -> qkv_wgpu::ChunkOptions {
    qkv_wgpu::ChunkOptions {
        qk_f32: args.epilogue.separate_pass(),
        ..args.chunking.options()
    }
}

/// The positions: an offset, or the list in the file (its length is checked against X's
/// tokens when the projector is made).
fn positions(e: &EpilogueArgs) -> Result<Positions, Error> {
    let Some(path) = &e.positions else {
        return Ok(Positions::Offset(e.position_offset.unwrap_or(0)));
    };
    let text = qkv_wgpu::io::read_small_text(path, TEXT_CAP, "the positions")?;
    let list = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>().map_err(|_| {
                Error::Input(format!(
                    "{}: '{s}' is not a position (an integer from 0 to {})",
                    path.display(),
                    u32::MAX
                ))
            })
        })
        .collect::<Result<Vec<u32>, Error>>()?;
    Ok(Positions::Given(list))
}

/// The epilogue `--rope` and `--qk-norm` ask for, over the heads the model's files give (a
/// sequence of one token until [`for_file`] sets it; `--heads` and `--kv-heads`, if given,
/// must be those), or None where neither was asked for.
pub(super) fn settings(args: &ProjectArgs, loaded: &Loaded) -> Result<Settings, Error> {
    let e = &args.epilogue;
    let req = EpilogueRequest {
        rope: e.rope,
        qk_norm: e.qk_norm,
        config: e.config.clone(),
        positions: if e.any() {
            positions(e)?
        } else {
            Positions::Offset(0)
        },
        heads: (args.heads, args.kv_heads),
    };
    let w = &loaded.loaded.weights;
    layer_epilogue(
        &args.weights,
        args.prefix.as_deref(),
        (w.q_width, w.kv_width),
        args.original_order,
        &req,
    )
}

/// The run's `settings` for a file of X of `dims`: positions restart with each sequence
/// ([batch, seq, d_model]; 2-D X is one sequence).
pub(super) fn for_file(
    settings: &Option<(Epilogue, Heads)>,
    dims: XDims,
) -> Option<(Epilogue, Heads)> {
    settings.as_ref().map(|(ep, h)| {
        let seq = dims.batch_seq.map_or(dims.tokens, |(_, s)| s);
        (ep.clone(), Heads { seq, ..*h })
    })
}
