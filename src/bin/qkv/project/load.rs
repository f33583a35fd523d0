//! Where `qkv project`'s weights come from: a safetensors checkpoint's layer (by family
//! prefix or by name) or a GGUF file's (`blk.N`, each matrix in its format, the heads from the
//! metadata, Q's and K's rows in the file's order or the model's), refused where they hold
//! NaN or Inf or do not fit the run's type, and stored as `--weight-type` asks.

use super::ProjectArgs;
use crate::exit::Failure;
use crate::text::progress;
use qkv_wgpu::io::checkpoint::{
    Checkpoint, LoadedWeights, Names, WeightLayout, WeightRequest, WeightSource,
};
use qkv_wgpu::io::gguf::{is_gguf, Gguf};
use qkv_wgpu::quant::WeightType;
use qkv_wgpu::{ElementType, Error};

fn request(args: &ProjectArgs) -> WeightRequest {
    let source = if let Some(p) = &args.prefix {
        WeightSource::Prefix(p.clone())
    } else if let Some(w) = &args.wqkv {
        WeightSource::Named(Names::Fused {
            w: w.clone(),
            b: args.bqkv.clone(),
        })
    } else {
        // clap's group and `requires` guarantee all three when --wq is given.
        let name = |n: &Option<String>| n.clone().unwrap_or_default();
        WeightSource::Named(Names::Separate {
            w: [name(&args.wq), name(&args.wk), name(&args.wv)],
            b: args
                .bq
                .as_ref()
                .map(|_| [name(&args.bq), name(&args.bk), name(&args.bv)]),
        })
    };
    WeightRequest {
        source,
        layout: args.weight_layout,
        heads: args.heads,
        kv_heads: args.kv_heads,
    }
}

/// What a GGUF file told beyond its weights.
pub(super) struct GgufFacts {
    /// Heads from the metadata.
    pub(super) heads: Option<u32>,
    pub(super) kv_heads: Option<u32>,
    /// Whether Q's and K's rows are in llama.cpp's order (the file's), not the model's.
    pub(super) rows_reordered: bool,
}

/// A GGUF layer found by --prefix, each matrix kept in its format: the weights as
/// `LoadedWeights` (rows are output features: the out-in layout), and the heads.
fn load_gguf(args: &ProjectArgs, d_model: u32) -> Result<(LoadedWeights, GgufFacts), Error> {
    let Some(prefix) = &args.prefix else {
        return Err(Error::Input(format!(
            "{} is a GGUF file: its layers are found by --prefix (blk.0, blk.1, ...); --wq, \
             --wk, --wv and --wqkv name safetensors tensors",
            args.weights.display()
        )));
    };
    if args.weight_layout.is_some() {
        return Err(Error::Input(
            "--weight-layout does not apply to a GGUF file: it stores every matrix [out, in]"
                .into(),
        ));
    }
    let file = Gguf::open(&args.weights)?;
    let mut layer = file.attention(prefix)?;
    if args.original_order {
        if !layer.rows_reordered {
            eprintln!(
                "note: --original-order: {} ({}) was not reordered by the converter; its rows \
                 are the model's already",
                args.weights.display(),
                layer
                    .architecture
                    .as_deref()
                    .unwrap_or("no architecture named")
            );
        }
        layer = layer.into_original_order()?;
    }
    if layer.d_model != d_model {
        return Err(Error::Shape(format!(
            "X has d_model {d_model} but {prefix} of {} reads rows of {}",
            args.weights.display(),
            layer.d_model
        )));
    }
    let weights = layer.weights()?;
    let tensors = layer
        .tensors
        .iter()
        .map(|(name, ty, dims)| {
            // [out, in], as the other checkpoints' tensors are shown.
            let shape = dims.iter().rev().map(|&d| d as usize).collect();
            (name.clone(), ty.name().to_uppercase(), shape)
        })
        .collect();
    let facts = GgufFacts {
        heads: layer.heads,
        kv_heads: layer.kv_heads,
        rows_reordered: layer.rows_reordered,
    };
    let loaded = LoadedWeights {
        weights,
        family: None,
        layout: WeightLayout::OutIn,
        layout_reason: "GGUF: a row per output feature".into(),
        tensors,
        nonfinite: Vec::new(),
    };
    Ok((loaded, facts))
}

/// The weights `--weights` holds, as the run uses them.
pub(super) struct Loaded {
    pub(super) loaded: LoadedWeights,
    pub(super) gguf: Option<GgufFacts>,
    /// The weights before --weight-type stored them otherwise.
    pub(super) original: Option<qkv_wgpu::FusedWeights>,
    /// The run's type.
    pub(super) element: ElementType,
}

/// Reads the weights of a safetensors or GGUF checkpoint, refuses NaN or Inf in them
/// (unless allowed) and a type that cannot hold them, and stores them as --weight-type asks.
pub(super) fn load(args: &ProjectArgs, d_model: u32) -> Result<Loaded, Failure> {
    progress(&format!("reading {}", args.weights.display()));
    let (mut loaded, gguf) = if is_gguf(&args.weights) {
        let (l, facts) = load_gguf(args, d_model)?;
        (l, Some(facts))
    } else {
        if args.original_order {
            return Err(Error::Input(
                "--original-order applies to GGUF files, whose converter reorders Q and K".into(),
            )
            .into());
        }
        let ckpt = Checkpoint::open(&args.weights)?;
        (ckpt.load_qkv(&request(args), d_model)?, None)
    };
    refuse_nonfinite_weights(args, &loaded)?;
    let element = run_element(args, &loaded)?;
    let formats = args
        .weight_type
        .and_then(|t| WeightType::stored_formats(t, element));
    let original = match formats {
        Some(types) => {
            progress(&format!(
                "storing W as {} (llama.cpp's reference quantizers)",
                WeightType::parts_name(types)
            ));
            let quantized = loaded.weights.stored_as(types)?;
            Some(std::mem::replace(&mut loaded.weights, quantized))
        }
        None => None,
    };
    Ok(Loaded {
        loaded,
        gguf,
        original,
        element,
    })
}

/// NaN or Inf in the weights is refused before any GPU work, unless allowed (then each is a
/// warning).
fn refuse_nonfinite_weights(args: &ProjectArgs, loaded: &LoadedWeights) -> Result<(), Failure> {
    if !loaded.nonfinite.is_empty() && !args.allow_nonfinite {
        return Err(Error::Input(format!(
            "the weights hold NaN or Inf ({}); nothing was run. Pass --allow-nonfinite to \
             project them anyway",
            loaded
                .nonfinite
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ))
        .into());
    }
    for nf in &loaded.nonfinite {
        eprintln!("warning: {nf}");
    }
    Ok(())
}

/// The storage type to run in: the checkpoint's own unless asked otherwise; a weight the
/// type cannot hold is refused by name before any GPU work.
fn run_element(args: &ProjectArgs, loaded: &LoadedWeights) -> Result<ElementType, Failure> {
    let w = &loaded.weights;
    let element = args.dtype.unwrap_or(w.w.element());
    w.check_range(element).map_err(|e| {
        let names: Vec<&str> = loaded.tensors.iter().map(|t| t.0.as_str()).collect();
        // The message alone: Error::Input's own "invalid input: " is added once, when shown.
        let e = match e {
            Error::Input(m) => m,
            other => other.to_string(),
        };
        Error::Input(format!(
            "{e}; the weights are {} in {}: run them in f32 (--dtype f32) or bf16",
            names.join(", "),
            args.weights.display()
        ))
    })?;
    Ok(element)
}
