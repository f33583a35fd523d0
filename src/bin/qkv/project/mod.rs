//! `qkv project`: X from a `.npy` file through Q/K/V weights from a safetensors checkpoint,
//! checked against the CPU reference, written as `q.npy`, `k.npy`, `v.npy`.

use crate::args::{dtype_help, kernel_help, parse_kernels, resolve_kernels, weight_layout_parser};
use crate::args::{ChunkArgs, GpuArgs, KernelList, ToleranceArgs};
use crate::exit::Failure;
use crate::out::outln;
use crate::outputs::{OutFormat, PartialOutputs};
use crate::report::{ms, progress, token_bar, Stages};
use clap::{ArgGroup, Args, ValueEnum};
use qkv_wgpu::io::checkpoint::{Checkpoint, Names, WeightLayout, WeightRequest, WeightSource};
use qkv_wgpu::io::commit::OutputDir;
use qkv_wgpu::io::npy::NpyRows;
use qkv_wgpu::io::NonFinite;
use qkv_wgpu::measure::{self, keep_source_rows, weights_read, CheckRows, KeptRows};
use qkv_wgpu::{
    ChunkPlan, ElementType, Error, HeadSplit, OutputLayout, Projector, QkvReport, QkvShape,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

mod report;

use report::{print_text, ProjectResult};

#[derive(Args, Debug)]
#[command(
    group(ArgGroup::new("source").required(true).args(["prefix", "wq", "wqkv"])),
    after_help = "Families --prefix recognizes (P is the prefix of one attention layer):\n  \
        BERT   P.attention.self.{query,key,value}.{weight,bias}   [out, in]\n  \
        Llama  P.self_attn.{q,k,v}_proj.weight (+ .bias)          [out, in]\n  \
        GPT-2  P.attn.c_attn.weight [d_model, 3·d_model] + .bias   [in, out]\n\n\
        Examples:\n  \
        qkv project --input x.npy --weights model.safetensors --prefix bert.encoder.layer.0 --out out/\n  \
        qkv project --input x.npy --weights model.safetensors --prefix model.layers.0 \\\n      \
        --heads 32 --kv-heads 8 --head-layout heads --out out/"
)]
pub struct ProjectArgs {
    /// X as a C-order .npy array of f32, f16 or f64: [tokens, d_model] or [batch, seq, d_model]
    #[arg(long, value_name = "X.npy")]
    input: PathBuf,
    /// safetensors checkpoint holding the projection weights (F32, F16 or BF16)
    #[arg(long, value_name = "MODEL.safetensors")]
    weights: PathBuf,
    /// Find a BERT, Llama or GPT-2 attention layer under this tensor-name prefix
    #[arg(long, value_name = "P")]
    prefix: Option<String>,
    /// Name of Wq (with --wk and --wv)
    #[arg(long, value_name = "NAME", requires_all = ["wk", "wv"])]
    wq: Option<String>,
    /// Name of Wk
    #[arg(long, value_name = "NAME", requires = "wq")]
    wk: Option<String>,
    /// Name of Wv
    #[arg(long, value_name = "NAME", requires = "wq")]
    wv: Option<String>,
    /// Name of bq (with --bk and --bv)
    #[arg(long, value_name = "NAME", requires_all = ["wq", "bk", "bv"])]
    bq: Option<String>,
    /// Name of bk
    #[arg(long, value_name = "NAME", requires = "bq")]
    bk: Option<String>,
    /// Name of bv
    #[arg(long, value_name = "NAME", requires = "bq")]
    bv: Option<String>,
    /// Name of one fused [Wq | Wk | Wv] matrix
    #[arg(long, value_name = "NAME")]
    wqkv: Option<String>,
    /// Name of its fused bias
    #[arg(long, value_name = "NAME", requires = "wqkv")]
    bqkv: Option<String>,
    /// How the weights are stored [default: the family's convention, or what the shapes prove]
    #[arg(long, value_parser = weight_layout_parser())]
    weight_layout: Option<WeightLayout>,
    /// Query heads: splits Q for --head-layout heads (and a fused matrix with grouped K/V)
    #[arg(long, value_name = "H")]
    heads: Option<u32>,
    /// Key/value heads [default: --heads, or as many as kv_width holds at Q's head size]
    #[arg(long, value_name = "H", requires = "heads")]
    kv_heads: Option<u32>,
    /// Output layout: [tokens, width] (or [batch, seq, width]), or [batch, heads, seq, head_dim]
    #[arg(long, value_enum, default_value_t = HeadLayoutArg::Tokens)]
    head_layout: HeadLayoutArg,
    /// Storage type of X, the weights and Q, K, V on the GPU [default: the checkpoint's
    /// stored type: a BF16 checkpoint runs in bf16]
    #[arg(long, long_help = format!(
        "{} [default: the checkpoint's stored type: a BF16 checkpoint runs in bf16 with no f32 \
         copy of W; an F32 checkpoint asked for bf16 or f16 is rounded to nearest even]",
        dtype_help()))]
    dtype: Option<ElementType>,
    /// Output files: `npy` writes q.npy, k.npy, v.npy (f32, or f16 for an f16 run; bf16
    /// results, which NumPy has no type for, are widened to f32 without loss); `safetensors`
    /// writes qkv.safetensors, tensors q, k, v in the run's type with metadata naming the
    /// source
    #[arg(long, value_enum, default_value_t = OutFormat::Npy)]
    out_format: OutFormat,
    /// Directory for the outputs (created if missing)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Overwrite q.npy, k.npy, v.npy if they exist
    #[arg(long)]
    force: bool,
    /// Skip the CPU reference check
    #[arg(long, conflicts_with = "check_rows")]
    no_check: bool,
    /// Rows checked against the f64 reference: `all`, or N rows spread over every chunk (each
    /// chunk's first and last row included) [default: all up to 20 GFLOP, else 4096]
    #[arg(long, value_parser = measure::parse_check_rows)]
    check_rows: Option<CheckRows>,
    #[command(flatten)]
    chunking: ChunkArgs,
    /// Write the outputs even when X or the weights hold NaN or Inf
    #[arg(long)]
    allow_nonfinite: bool,
    /// One configuration (see below), or `auto`
    #[arg(long, default_value = "auto", value_parser = parse_kernels, long_help = kernel_help())]
    kernel: KernelList,
    /// Autotune again instead of using the cached choice (with --kernel auto)
    #[arg(long)]
    tune: bool,
    #[command(flatten)]
    tolerance: ToleranceArgs,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HeadLayoutArg {
    /// [tokens, width], or [batch, seq, width] when X is 3-D
    Tokens,
    /// [batch, heads, seq, head_dim] for Q, [batch, kv_heads, seq, head_dim] for K and V
    Heads,
}

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

/// The head split for `--head-layout heads`, or a check of --heads alone.
fn head_split(args: &ProjectArgs, shape: &QkvShape, seq: u32) -> Result<Option<HeadSplit>, Error> {
    let Some(heads) = args.heads else {
        if args.head_layout == HeadLayoutArg::Heads {
            return Err(Error::Input("--head-layout heads needs --heads".into()));
        }
        return Ok(None);
    };
    if !shape.q_width.is_multiple_of(heads) {
        return Err(Error::Shape(format!(
            "q_width {} is not divisible by --heads {heads}",
            shape.q_width
        )));
    }
    let head_dim = shape.q_width / heads;
    let kv_heads = match args.kv_heads {
        Some(kv) => kv,
        None if shape.kv_width.is_multiple_of(head_dim) => shape.kv_width / head_dim,
        None => {
            return Err(Error::Shape(format!(
                "kv_width {} is not a multiple of Q's head size {head_dim}; give --kv-heads",
                shape.kv_width
            )))
        }
    };
    HeadSplit::new(shape, seq, heads, kv_heads).map(Some)
}

pub fn project(gpu: &GpuArgs, args: &ProjectArgs) -> Result<(), Failure> {
    // From here a SIGINT, SIGTERM or SIGHUP removes the partial files before the process
    // dies by it.
    crate::signals::remove_partials_on_signal();

    // X is read chunk by chunk as the projection streams; only its header is read here.
    let mut x = NpyRows::open(&args.input)?;
    let x_dims = x.shape.clone();
    let (batch_seq, d_model) = match x_dims.as_slice() {
        &[t, d] => (None, (t, d)),
        &[b, s, d] => (Some((b, s)), (b * s, d)),
        other => {
            return Err(Error::Input(format!(
                "{}: X has shape {other:?}; it must be [tokens, d_model] or [batch, seq, d_model]",
                args.input.display()
            ))
            .into())
        }
    };
    let to_u32 = |v: usize, what: &str| {
        u32::try_from(v).map_err(|_| Error::Shape(format!("{what} = {v} is too large")))
    };
    if d_model.0 == 0 {
        return Err(Error::Input(format!(
            "{}: X has no rows ({x_dims:?}): there is nothing to project",
            args.input.display()
        ))
        .into());
    }
    let (tokens, d_model) = (to_u32(d_model.0, "tokens")?, to_u32(d_model.1, "d_model")?);
    let batch_seq = match batch_seq {
        Some((b, s)) => Some((to_u32(b, "batch")?, to_u32(s, "seq")?)),
        None => None,
    };

    progress(&format!("reading {}", args.weights.display()));
    let ckpt = Checkpoint::open(&args.weights)?;
    let loaded = ckpt.load_qkv(&request(args), d_model)?;
    let w = &loaded.weights;
    let shape = QkvShape::new(tokens, d_model, w.q_width, w.kv_width, w.bias.is_some())?;
    let seq = batch_seq.map_or(tokens, |(_, s)| s);
    let split = head_split(args, &shape, seq)?;
    let layout = match (args.head_layout, split) {
        (HeadLayoutArg::Heads, Some(h)) => OutputLayout::Heads(h),
        _ => OutputLayout::Tokens,
    };
    // NaN or Inf in the weights is refused now, before any GPU work, unless allowed.
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

    // The output directory, locked against other runs, before any GPU work: what an
    // interrupted run left there is cleaned up and named, inputs are never outputs, and
    // existing outputs need --force.
    let out_dir = OutputDir::open(&args.out)?;
    for note in &out_dir.notes {
        eprintln!("note: {note}");
    }
    let outputs_named = args.out_format.files();
    // First what is at the outputs' names (a FIFO there must be refused before anything
    // opens it), then whether any is an input.
    out_dir.check_free(outputs_named, args.force)?;
    out_dir.check_not_inputs(
        outputs_named,
        &[("--input", &args.input), ("--weights", &args.weights)],
    )?;

    // The checkpoint's own type unless asked otherwise; a value the asked type cannot hold
    // is refused by name before any GPU work.
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
    let out_element = args.out_format.stored(element);
    let ctx = gpu.context()?;
    let specs = resolve_kernels(&ctx, &shape, &args.kernel, args.tune, element)?;
    let [(spec, config_reason)] = <[_; 1]>::try_from(specs).map_err(|_| {
        Error::Input("qkv project runs one kernel configuration; name one, or auto".into())
    })?;
    let config = spec.config;
    let plan = ChunkPlan::new(
        &ctx.limits(),
        &shape,
        &spec,
        layout,
        &args.chunking.options(),
    )?;
    let mut projector = Projector::from_plan(&ctx, spec, plan.clone())?;
    projector.set_weights(w)?;

    let q_shape = layout.dims(&shape, false, batch_seq);
    let kv_shape = layout.dims(&shape, true, batch_seq);
    let metadata = BTreeMap::from([
        ("source_input".to_string(), args.input.display().to_string()),
        (
            "source_weights".to_string(),
            args.weights.display().to_string(),
        ),
        (
            "tensors".to_string(),
            loaded
                .tensors
                .iter()
                .map(|t| t.0.clone())
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("dtype".to_string(), element.to_string()),
        ("kernel".to_string(), config.to_string()),
        (
            "layout".to_string(),
            match layout {
                OutputLayout::Tokens => "tokens".to_string(),
                OutputLayout::Heads(_) => "heads [batch, heads, seq, head_dim]".to_string(),
            },
        ),
        (
            "producer".to_string(),
            format!("qkv-wgpu {}", env!("CARGO_PKG_VERSION")),
        ),
    ]);
    let mut outputs = PartialOutputs::create(
        &out_dir,
        args.out_format,
        out_element,
        [&q_shape, &kv_shape, &kv_shape],
        &metadata,
    )?;
    let check = (!args.no_check).then(|| args.check_rows.unwrap_or(CheckRows::default_for(&shape)));
    let mut kept = KeptRows::default();
    let mut x_nonfinite: Option<NonFinite> = None;
    let mut write_time = std::time::Duration::ZERO;
    progress(&format!(
        "projecting on {}: {} chunk(s) of up to {} tokens",
        ctx.summary.name,
        plan.chunks(),
        plan.chunk_tokens
    ));
    let bar = token_bar(tokens, plan.chunks(), !args.json);
    // X as given for the kept rows: the reference's inputs (rounded as the GPU read them) and
    // the precision cost.
    let mut source_x = Vec::new();
    let mut piece = Vec::new();
    let d = d_model as usize;
    let allow_nonfinite = args.allow_nonfinite;
    let timings = projector.stream(
        |rows, mut dst| {
            // What every value read goes through: the NaN/Inf scan, the kept rows.
            let mut inspect = |r0: usize, values: &[f32]| -> Result<(), Error> {
                let start = (rows.start as usize + r0) * d;
                let found = NonFinite::scan_at("X", values, start, &x_dims);
                x_nonfinite = NonFinite::merge(x_nonfinite.take(), found);
                // Refused at the chunk that holds it, not after the whole run.
                if !allow_nonfinite {
                    if let Some(nf) = &x_nonfinite {
                        return Err(Error::Input(format!(
                            "X holds NaN or Inf ({nf}); the run stopped there and nothing was \
                             written. Pass --allow-nonfinite to project it anyway"
                        )));
                    }
                }
                if let Some(check) = check {
                    let chunk = (rows.len(), tokens as usize);
                    keep_source_rows(&mut source_x, chunk, check, r0, values, d);
                }
                Ok(())
            };
            // Read in pieces of about 64K elements (whole rows), inspected while they are
            // in cache and written into place (rounded to a half type): the destination is
            // GPU staging memory, which is written, never read.
            let per = (65536 / d).max(1);
            for r0 in (0..rows.len()).step_by(per) {
                let r1 = (r0 + per).min(rows.len());
                piece.resize((r1 - r0) * d, 0.0);
                x.read(&mut piece)?;
                inspect(r0, &piece)?;
                dst.put_f32(r0 * d, &piece)
                    .map_err(|e| e.in_rows("X", rows.start + r0 as u32, d_model))?;
            }
            Ok(())
        },
        |c| {
            let start = Instant::now();
            outputs.write([c.q, c.k, c.v])?;
            write_time += start.elapsed();
            match check {
                Some(check) => kept.take(&c, &shape, layout, check),
                // Unchecked, every element is still scanned for NaN and infinities.
                None => kept.scan(&c, &shape, layout),
            }
            Ok(())
        },
        |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();

    // Inputs that carry NaN or Inf (allowed by --allow-nonfinite) carry them into the
    // outputs: no overflow then.
    if x_nonfinite.is_some() || !loaded.nonfinite.is_empty() {
        kept.inputs_not_finite();
    }
    let tol = measure::tolerance(d_model, projector.spec(), &args.tolerance.overrides());
    let f32_tol = args.tolerance.tolerance(d_model, ElementType::F32);
    let (report, cost, cpu_ms) = match check {
        None => (None, None, None),
        Some(_) => {
            progress(&format!(
                "checking {} rows against the CPU reference (f64)",
                kept.len()
            ));
            kept.set_source_x(std::mem::take(&mut source_x), d_model);
            let input = projector.input_element();
            let read = weights_read(w, element, input);
            let (report, took) = kept.check(&shape, &read, (element, input), tol);
            let cost = input
                .is_half()
                .then(|| kept.precision_cost(&shape, w, f32_tol));
            (Some(report), cost, Some(ms(took)))
        }
    };
    let mut nonfinite: Vec<NonFinite> = x_nonfinite.into_iter().collect();
    nonfinite.extend(loaded.nonfinite.iter().cloned());
    if let Some(nf) = nonfinite.first().filter(|n| n.what == "X") {
        eprintln!("warning: {nf}");
    }

    // With finite inputs, a NaN or infinity in the outputs is an overflow (the report of the
    // checked rows counts it too): the run fails and nothing is written. Inputs that carry
    // NaN or Inf (--allow-nonfinite) carry them into the outputs.
    let overflow = kept.non_finite_outputs();
    let pass = match (&report, &overflow) {
        (_, Some(_)) => Some(false),
        (r, None) => r.as_ref().map(QkvReport::pass),
    };
    let blocked_by_nonfinite = !nonfinite.is_empty() && !args.allow_nonfinite;
    let outputs = if pass != Some(false) && !blocked_by_nonfinite {
        outputs.commit(&out_dir, args.force)?
    } else {
        drop(outputs);
        Vec::new()
    };

    let s = &ctx.summary;
    let result = ProjectResult {
        adapter: s.name.clone(),
        backend: s.backend.clone(),
        device_type: s.device_type.clone(),
        kernel: config.to_string(),
        config_reason,
        input: args.input.display().to_string(),
        input_dtype: x.dtype,
        dtype: element,
        out_format: match args.out_format {
            OutFormat::Npy => "npy",
            OutFormat::Safetensors => "safetensors",
        },
        out_dtype: out_element,
        weights: args.weights.display().to_string(),
        family: loaded.family.map(|f| f.name()),
        weight_layout: loaded.layout.to_string(),
        weight_layout_reason: loaded.layout_reason.clone(),
        tensors: loaded.tensors.clone(),
        tokens,
        batch: batch_seq.map(|b| b.0),
        seq: batch_seq.map(|b| b.1),
        d_model,
        q_width: shape.q_width,
        kv_width: shape.kv_width,
        bias: shape.bias,
        head_layout: match layout {
            OutputLayout::Tokens => "tokens",
            OutputLayout::Heads(_) => "heads",
        },
        heads: split.map(|h| h.heads),
        kv_heads: split.map(|h| h.kv_heads),
        q_shape: q_shape.clone(),
        kv_shape: kv_shape.clone(),
        gpu_kernel_ms: ms(timings.kernel),
        gpu_total_ms: ms(timings.total()),
        chunks: plan.chunks(),
        chunk_tokens: plan.chunk_tokens,
        chunk_reason: plan.chunk_reason.clone(),
        streamed: projector.streaming(),
        read_ms: ms(timings.input),
        write_ms: ms(write_time),
        stages: Stages::of(&timings),
        tokens_per_s: tokens as f64 / timings.total().as_secs_f64(),
        cpu_ms,
        gflops: shape.gflops(timings.kernel.as_secs_f64()),
        checked: report.is_some(),
        checked_rows: kept.len(),
        max_abs_err: report.as_ref().map(QkvReport::max_abs_err),
        max_rel_err: report.as_ref().map(QkvReport::max_rel_err),
        rel_l2_err: report.as_ref().map(QkvReport::rel_l2_err),
        precision_max_abs_err: cost.as_ref().map(QkvReport::max_abs_err),
        precision_max_rel_err: cost.as_ref().map(QkvReport::max_rel_err),
        precision_rel_l2_err: cost.as_ref().map(QkvReport::rel_l2_err),
        atol: tol.atol,
        rtol: tol.rtol,
        ttol: tol.terms,
        overflow: overflow.clone(),
        pass,
        nonfinite: nonfinite.iter().map(|n| n.to_string()).collect(),
        notes: out_dir.notes.clone(),
        written: !outputs.is_empty(),
        outputs,
    };
    if args.json {
        outln!(
            "{}",
            serde_json::to_string(&result).expect("results serialize")
        );
    } else {
        print_text(&result, report.as_ref(), &tol);
    }

    if let Some(o) = &overflow {
        eprintln!(
            "FAIL: the projection overflowed {}'s range (the inputs are finite): {o}; nothing \
             was written",
            element
        );
        return Err(Failure::Validation);
    }
    if pass == Some(false) {
        eprintln!("FAIL: the GPU result does not match the reference; nothing was written");
        return Err(Failure::Validation);
    }
    if blocked_by_nonfinite {
        return Err(Error::Input(format!(
            "the inputs hold NaN or Inf ({}); nothing was written. Pass --allow-nonfinite to \
             write the outputs anyway",
            nonfinite
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ))
        .into());
    }
    Ok(())
}
