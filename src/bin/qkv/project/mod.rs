//! `qkv project`: X from a `.npy` file through Q/K/V weights from a safetensors or GGUF
//! checkpoint, checked against the CPU reference, written as `q.npy`, `k.npy`, `v.npy`.

use crate::args::{dtype_help, kernel_help, parse_kernels, resolve_kernels, weight_layout_parser};
use crate::args::{parse_weight_type, weight_type_help};
use crate::args::{ChunkArgs, GpuArgs, KernelChoice, ToleranceArgs};
use crate::exit::Failure;
use crate::output_files::{metadata, OutFormat, PartialOutputs};
use crate::stdout::outln;
use crate::text::{ms, progress, token_bar};
use clap::{ArgGroup, Args, ValueEnum};
use qkv_wgpu::io::checkpoint::{LoadedWeights, WeightLayout};
use qkv_wgpu::io::commit::OutputDir;
use qkv_wgpu::io::npy::{NpyRows, XDims};
use qkv_wgpu::io::shards::{self, FileDigest as Digest, Inputs, Manifest, MANIFEST};
use qkv_wgpu::io::NonFinite;
use qkv_wgpu::measure::{self, keep_source_rows, weights_read, CheckRows, KeptRows};
use qkv_wgpu::quant::WeightType;
use qkv_wgpu::{
    ChunkPlan, ElementType, Error, HeadSplit, OutputLayout, Projector, QkvReport, QkvShape,
};
use std::path::{Path, PathBuf};
use std::time::Instant;

mod load;
mod report;
mod sharded;

use load::{load, GgufFacts, Loaded};

use report::{print_text, Facts};

#[derive(Args, Debug)]
#[command(
    group(ArgGroup::new("source").required(true).args(["prefix", "wq", "wqkv"])),
    after_help = "Families --prefix recognizes (P is the prefix of one attention layer):\n  \
        BERT   P.attention.self.{query,key,value}.{weight,bias}   [out, in]\n  \
        Llama  P.self_attn.{q,k,v}_proj.weight (+ .bias)          [out, in]\n  \
        GPT-2  P.attn.c_attn.weight [d_model, 3·d_model] + .bias   [in, out]\n  \
        GGUF   P.attn_{q,k,v}.weight or P.attn_qkv.weight (+ .bias), P = blk.N; heads and \
        d_model from the file's metadata; any of F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, \
        Q4_K, Q5_K, Q6_K, kept in its blocks on the GPU\n\n\
        Examples:\n  \
        qkv project --input x.npy --weights model.safetensors --prefix bert.encoder.layer.0 --out out/\n  \
        qkv project --input x.npy --weights model.safetensors --prefix model.layers.0 \\\n      \
        --heads 32 --kv-heads 8 --head-layout heads --out out/\n  \
        qkv project --input x.npy --weights model-Q4_K_M.gguf --prefix blk.0 --head-layout heads \
        --out out/"
)]
pub struct ProjectArgs {
    /// X as a C-order .npy array of f32, f16 or f64: [tokens, d_model] or [batch, seq,
    /// d_model]. Or shards of X: several files, a directory of them, a quoted glob pattern
    /// ('dir/*.npy') or a list file (.txt or .list: one path a line); each shard's Q, K, V go
    /// to OUT/<name>/ with a manifest, and a rerun skips the shards whose outputs are complete
    #[arg(long, value_name = "X.npy|DIR|PATTERN|LIST", num_args = 1.., required = true)]
    input: Vec<PathBuf>,
    /// Checkpoint holding the projection weights: safetensors (F32, F16 or BF16), or GGUF
    /// (also its block formats, kept in their blocks on the GPU)
    #[arg(long, value_name = "MODEL")]
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
    /// Shards on several adapters at once, each its own projector taking shards from one
    /// queue: `all` (every adapter --backend and --adapter allow), or a comma list of
    /// BACKEND, BACKEND:NAME or NAME (each the best adapter it matches): `vulkan,gl`
    #[arg(long, value_name = "all|LIST")]
    adapters: Option<String>,
    /// How the weights are stored [default: the family's convention, or what the shapes prove]
    #[arg(long, value_parser = weight_layout_parser())]
    weight_layout: Option<WeightLayout>,
    /// Query heads: splits Q for --head-layout heads (and a fused matrix with grouped K/V)
    #[arg(long, value_name = "H")]
    heads: Option<u32>,
    /// Key/value heads [default: --heads, or as many as kv_width holds at Q's head size]
    #[arg(long, value_name = "H", requires = "heads")]
    kv_heads: Option<u32>,
    /// GGUF: put Q's and K's rows (and biases) back in the original model's order where
    /// llama.cpp's converter reordered them for its RoPE (Llama-family files); without it Q
    /// and K come out in the file's order
    #[arg(long)]
    original_order: bool,
    #[arg(long, value_parser = parse_weight_type, help = weight_type_help())]
    weight_type: Option<[WeightType; 3]>,
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
    /// chunk's first and last row included) [default: all while they cost at most 20 GFLOP and 256 MiB kept, else a sample of up to 4096 within 256 MiB]
    #[arg(long, value_parser = measure::parse_check_rows)]
    check_rows: Option<CheckRows>,
    #[command(flatten)]
    chunking: ChunkArgs,
    /// Write the outputs even when X or the weights hold NaN or Inf
    #[arg(long)]
    allow_nonfinite: bool,
    /// One configuration (see below), or `auto`
    #[arg(long, default_value = "auto", value_parser = parse_kernels, long_help = kernel_help())]
    kernel: KernelChoice,
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

/// The head split for `--head-layout heads`, or a check of the heads alone: --heads and
/// --kv-heads, else a GGUF file's own.
fn head_split(
    args: &ProjectArgs,
    gguf: Option<&GgufFacts>,
    shape: &QkvShape,
    seq: u32,
) -> Result<Option<HeadSplit>, Error> {
    let (heads, kv_heads) = match (args.heads, gguf) {
        (Some(h), _) => (Some(h), args.kv_heads),
        (None, Some(g)) => (g.heads, g.kv_heads),
        (None, None) => (None, None),
    };
    let Some(heads) = heads else {
        if args.head_layout == HeadLayoutArg::Heads {
            return Err(Error::Input(
                "--head-layout heads needs --heads (a GGUF file's metadata gives them)".into(),
            ));
        }
        return Ok(None);
    };
    HeadSplit::with_default_kv(shape, seq, heads, kv_heads).map(Some)
}

/// The head split (for `--head-layout heads`, or a check of the heads alone) and the
/// outputs' layout.
fn output_layout(
    args: &ProjectArgs,
    gguf: Option<&GgufFacts>,
    shape: &QkvShape,
    dims: XDims,
) -> Result<(Option<HeadSplit>, OutputLayout), Error> {
    let seq = dims.batch_seq.map_or(dims.tokens, |(_, s)| s);
    let split = head_split(args, gguf, shape, seq)?;
    let layout = match (args.head_layout, split) {
        (HeadLayoutArg::Heads, Some(h)) => OutputLayout::Heads(h),
        _ => OutputLayout::Tokens,
    };
    Ok((split, layout))
}

pub fn project(gpu: &GpuArgs, args: &ProjectArgs) -> Result<(), Failure> {
    // From here a SIGINT, SIGTERM or SIGHUP removes the partial files before the process
    // dies by it.
    crate::signals::remove_partials_on_signal();
    let input = match shards::expand(&args.input)? {
        Inputs::One(input) => input,
        Inputs::Shards(list) => return sharded::project_shards(gpu, args, &list),
    };
    if args.adapters.is_some() {
        return Err(Error::Input(format!(
            "--adapters spreads shards over adapters; {} is one file, which runs on one \
             (--adapter picks it)",
            input.display()
        ))
        .into());
    }
    // X is read chunk by chunk as the projection streams; only its header is read here.
    let x = NpyRows::open(&input)?;
    let loaded = load(args, x.x_dims()?.d_model)?;
    let ctx = gpu.context()?;
    let session = Session {
        loaded: &loaded,
        ctx: &ctx,
    };
    let run = project_file(
        &session,
        args,
        (&input, x),
        &args.out,
        None,
        Bar::Own(!args.json),
    )?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string(&run.result).expect("results serialize")
        );
    } else {
        print_text(&run.result, run.report.as_ref(), &run.tol);
    }
    run.outcome.verdict()
}

/// What every file of a run shares: the weights, loaded once, and an adapter's context (a
/// sharded run over several adapters has one session each, the weights shared).
pub(super) struct Session<'a> {
    loaded: &'a Loaded,
    ctx: &'a qkv_wgpu::GpuContext,
}

/// The progress bar a file's projection moves: its own over its tokens (shown or not), or a
/// sharded run's over every shard's tokens (shards may run at once on several adapters).
#[derive(Clone, Copy)]
pub(super) enum Bar<'a> {
    Own(bool),
    Shared(&'a indicatif::ProgressBar),
}

/// One file projected: its result, its check, and what decides its exit.
pub(super) struct FileRun {
    result: report::ProjectResult,
    report: Option<QkvReport>,
    tol: qkv_wgpu::Tolerance,
    outcome: Outcome,
}

/// The projection of X of `dims` (from `input`) through `w`.
fn file_shape(input: &Path, dims: XDims, w: &qkv_wgpu::FusedWeights) -> Result<QkvShape, Error> {
    if dims.d_model != w.d_model {
        return Err(Error::Input(format!(
            "{}: X has {} columns, the weights' d_model is {}",
            input.display(),
            dims.d_model,
            w.d_model
        )));
    }
    QkvShape::new(
        dims.tokens,
        dims.d_model,
        w.q_width,
        w.kv_width,
        w.bias.is_some(),
    )
}

/// X from `input` (its rows opened) through the session's weights into `out`, checked, the
/// outputs put in place (with a shard's manifest where `seal` is given) only where all is
/// well.
fn project_file(
    session: &Session,
    args: &ProjectArgs,
    (input, mut x): (&Path, NpyRows),
    out: &Path,
    seal: Option<&Seal>,
    bar: Bar<'_>,
) -> Result<FileRun, Failure> {
    let dims = x.x_dims()?;
    let Loaded {
        loaded,
        gguf,
        original,
        element,
    } = session.loaded;
    let (ctx, element) = (session.ctx, *element);
    let w = &loaded.weights;
    let shape = file_shape(input, dims, w)?;
    let (split, layout) = output_layout(args, gguf.as_ref(), &shape, dims)?;
    let out_dir = open_out_dir(args, input, out, seal.is_some())?;
    let kinds = (element, w.w_formats());
    let specs = resolve_kernels(ctx, &shape, &args.kernel, args.tune, kinds)?;
    let [(spec, config_reason)] = <[_; 1]>::try_from(specs).map_err(|_| {
        Error::Input("qkv project runs one kernel configuration; name one, or auto".into())
    })?;
    let opts = args.chunking.options();
    let plan = ChunkPlan::new(&ctx.limits(), &shape, &spec, layout, &opts)?;
    let mut projector = Projector::from_plan(ctx, spec, plan)?;
    projector.set_weights(w)?;
    let out_shapes = [
        layout.dims(&shape, false, dims.batch_seq),
        layout.dims(&shape, true, dims.batch_seq),
    ];
    let sources = [
        ("source_input", input),
        ("source_weights", args.weights.as_path()),
    ];
    let meta = metadata(sources, loaded, element, projector.config(), layout);
    let [q_shape, kv_shape] = &out_shapes;
    let outputs = PartialOutputs::create(
        &out_dir,
        args.out_format,
        args.out_format.stored(element),
        [q_shape, kv_shape, kv_shape],
        &meta,
    )?;
    let check = (!args.no_check).then(|| args.check_rows.unwrap_or(CheckRows::default_for(&shape)));
    let quiet = seal.is_some();
    let mut run = stream(&mut projector, &mut x, outputs, args, (check, quiet), bar)?;
    // Inputs that carry NaN or Inf (allowed by --allow-nonfinite) carry them into the
    // outputs: no overflow then.
    if run.x_nonfinite.is_some() || !loaded.nonfinite.is_empty() {
        run.kept.inputs_not_finite();
    }
    let weights = (w, original.as_ref());
    let checked = check_rows(
        &projector,
        &mut run,
        args,
        (check.is_some(), quiet),
        weights,
    )?;
    let (outcome, written) = settle(
        &mut run,
        &checked,
        (loaded, element),
        args,
        (&out_dir, seal),
    )?;
    let facts = Facts {
        args,
        ctx,
        input,
        x: &x,
        dims,
        loaded,
        shape: &shape,
        split,
        out_shapes: &out_shapes,
        projector: &projector,
        config_reason,
        gguf: gguf.as_ref(),
    };
    let result = facts.result(
        &run,
        &checked,
        (outcome.overflow.clone(), outcome.pass),
        &outcome.nonfinite,
        &out_dir,
        written,
    );
    Ok(FileRun {
        result,
        report: checked.report,
        tol: checked.tol,
        outcome,
    })
}

/// The output directory, locked against other runs, before any GPU work: what an
/// interrupted run left there is cleaned up and named, inputs are never outputs, and
/// existing outputs need --force (a shard's manifest among them).
fn open_out_dir(
    args: &ProjectArgs,
    input: &Path,
    out: &Path,
    shard: bool,
) -> Result<OutputDir, Failure> {
    let out_dir = OutputDir::open(out)?;
    for note in &out_dir.notes {
        eprintln!("note: {note}");
    }
    let mut outputs_named = args.out_format.files().to_vec();
    if shard {
        outputs_named.push(qkv_wgpu::io::shards::MANIFEST);
    }
    // First what is at the outputs' names (a FIFO there must be refused before anything
    // opens it), then whether any is an input.
    out_dir.check_free(&outputs_named, args.force)?;
    out_dir.check_not_inputs(
        &outputs_named,
        &[("--input", input), ("--weights", &args.weights)],
    )?;
    Ok(out_dir)
}

/// A streamed projection: its times, the rows kept for the check (and X as given for them),
/// NaN or Inf found in X, and the partial outputs written so far (taken when committed).
struct Streamed {
    timings: qkv_wgpu::RunTimings,
    kept: KeptRows,
    source_x: Vec<f32>,
    x_nonfinite: Option<NonFinite>,
    write_time: std::time::Duration,
    outputs: Option<PartialOutputs>,
}

/// Streams X from the file through the projector into the partial outputs, keeping the rows
/// `check` picks (or scanning every row for NaN and infinities, unchecked).
fn stream(
    projector: &mut Projector<'_>,
    x: &mut NpyRows,
    mut outputs: PartialOutputs,
    args: &ProjectArgs,
    (check, quiet): (Option<CheckRows>, bool),
    bar: Bar<'_>,
) -> Result<Streamed, Failure> {
    let (shape, layout, plan) = (
        *projector.shape(),
        projector.layout(),
        projector.plan().clone(),
    );
    if !quiet {
        progress(&format!(
            "projecting: {} chunk(s) of up to {} tokens",
            plan.chunks(),
            plan.chunk_tokens
        ));
    }
    let own = match bar {
        Bar::Own(show) => Some(token_bar(shape.tokens, plan.chunks(), show)),
        Bar::Shared(..) => None,
    };
    // A shared bar counts every shard's tokens: this one's are added as they are done.
    let counted = std::cell::Cell::new(0u64);
    let set_position = |done: u64| match (&own, bar) {
        (Some(b), _) => b.set_position(done),
        (None, Bar::Shared(b)) => b.inc(done.saturating_sub(counted.replace(done))),
        (None, Bar::Own(_)) => {}
    };
    let (mut kept, mut source_x) = (KeptRows::default(), Vec::new());
    let mut x_nonfinite: Option<NonFinite> = None;
    let mut write_time = std::time::Duration::ZERO;
    let (d, x_dims) = (shape.d_model as usize, x.shape.clone());
    let allow_nonfinite = args.allow_nonfinite;
    let timings = projector.stream(
        |rows, dst| {
            // What every value read goes through: the NaN/Inf scan, the kept rows.
            let inspect = |r0: usize, values: &[f32]| -> Result<(), Error> {
                let start = (rows.start as usize + r0) * d;
                let found = NonFinite::scan_at("X", values, start, &x_dims);
                x_nonfinite = NonFinite::merge(x_nonfinite.take(), found);
                // Refused at the chunk that holds it, not after the whole run.
                if let Some(nf) = x_nonfinite.as_ref().filter(|_| !allow_nonfinite) {
                    return Err(Error::Input(format!(
                        "X holds NaN or Inf ({nf}); the run stopped there and nothing was \
                         written. Pass --allow-nonfinite to project it anyway"
                    )));
                }
                if let Some(check) = check {
                    let chunk = (rows.len(), shape.tokens as usize);
                    keep_source_rows(&mut source_x, chunk, check, r0, values, d);
                }
                Ok(())
            };
            x.fill_rows((rows.start, rows.len(), d), dst, inspect)
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
        |done| set_position(done as u64),
    )?;
    match (own, bar) {
        (Some(b), _) => b.finish_and_clear(),
        (None, Bar::Shared(b)) => b.inc((shape.tokens as u64).saturating_sub(counted.get())),
        (None, Bar::Own(_)) => {}
    }
    Ok(Streamed {
        timings,
        kept,
        source_x,
        x_nonfinite,
        write_time,
        outputs: Some(outputs),
    })
}

/// The check of the kept rows: its report, the precision cost, the reference's time, and
/// the tolerance.
struct Checked {
    report: Option<QkvReport>,
    cost: Option<QkvReport>,
    /// Against the weights before --weight-type quantized them.
    quantization: Option<QkvReport>,
    cpu_ms: Option<f64>,
    tol: qkv_wgpu::Tolerance,
}

/// Checks the kept rows against the f64 reference of the inputs as the GPU read them
/// ([`KeptRows::check`]), where asked.
fn check_rows(
    projector: &Projector<'_>,
    run: &mut Streamed,
    args: &ProjectArgs,
    (checked, quiet): (bool, bool),
    (w, original): (&qkv_wgpu::FusedWeights, Option<&qkv_wgpu::FusedWeights>),
) -> Result<Checked, Failure> {
    let (shape, spec) = (projector.shape(), projector.spec());
    let d_model = shape.d_model;
    let tol = measure::tolerance(d_model, spec, &args.tolerance.overrides());
    let f32_tol = args.tolerance.tolerance(d_model, ElementType::F32);
    if !checked {
        return Ok(Checked {
            report: None,
            cost: None,
            quantization: None,
            cpu_ms: None,
            tol,
        });
    }
    let kept = &mut run.kept;
    if !quiet {
        progress(&format!(
            "checking {} rows against the CPU reference (f64)",
            kept.len()
        ));
    }
    kept.set_source_x(std::mem::take(&mut run.source_x), d_model);
    let (dtype, types) = (spec.dtype(), spec.types);
    let read = weights_read(w, dtype, types.w);
    let (report, took) = kept.check(shape, &read, (dtype, types.x), tol);
    let cost = types
        .reads_half()
        .then(|| kept.precision_cost(shape, w, f32_tol));
    let quantization = original.map(|o| kept.precision_cost(shape, o, f32_tol));
    Ok(Checked {
        report: Some(report),
        cost,
        quantization,
        cpu_ms: Some(ms(took)),
        tol,
    })
}

/// How a checked run ends.
pub(super) struct Outcome {
    /// The run's storage type.
    element: ElementType,
    /// NaN or Inf found in X and in the weights.
    nonfinite: Vec<NonFinite>,
    /// NaN or infinities in the outputs of finite inputs.
    overflow: Option<String>,
    /// The check's verdict (None unchecked).
    pass: Option<bool>,
    /// Inputs held NaN or Inf and that was not allowed.
    blocked_by_nonfinite: bool,
}

/// A shard's manifest, but for its outputs: the job and the input's digest, taken before
/// the input was read.
pub(super) struct Seal {
    job: String,
    input: PathBuf,
    digest: Digest,
}

/// Decides the run: the outputs are put in place only where the check passed, nothing
/// overflowed and the inputs were finite (or allowed not to be); else the partial files
/// are removed. A shard's manifest, with each output's size and checksum, is put in place
/// with them. Returns the outcome and the files put in place.
fn settle(
    run: &mut Streamed,
    checked: &Checked,
    (loaded, element): (&LoadedWeights, ElementType),
    args: &ProjectArgs,
    (out_dir, seal): (&OutputDir, Option<&Seal>),
) -> Result<(Outcome, Vec<String>), Failure> {
    let mut nonfinite: Vec<NonFinite> = run.x_nonfinite.iter().cloned().collect();
    nonfinite.extend(loaded.nonfinite.iter().cloned());
    if let Some(nf) = nonfinite.first().filter(|n| n.what == "X") {
        eprintln!("warning: {nf}");
    }
    // With finite inputs, a NaN or infinity in the outputs is an overflow (the report of the
    // checked rows counts it too): the run fails and nothing is written. Inputs that carry
    // NaN or Inf (--allow-nonfinite) carry them into the outputs.
    let overflow = run.kept.non_finite_outputs();
    let pass = match (&checked.report, &overflow) {
        (_, Some(_)) => Some(false),
        (r, None) => r.as_ref().map(QkvReport::pass),
    };
    let blocked_by_nonfinite = !nonfinite.is_empty() && !args.allow_nonfinite;
    let manifest = |named: &[(&str, &Path)]| -> Result<_, Error> {
        let Some(seal) = seal else {
            return Ok(None);
        };
        let mut m = Manifest::new(&seal.input, seal.digest.clone(), &seal.job);
        for (name, path) in named {
            m.outputs.insert(name.to_string(), Digest::of(path)?);
        }
        Ok(Some((MANIFEST, m.to_bytes())))
    };
    let written = match run.outputs.take() {
        Some(o) if pass != Some(false) && !blocked_by_nonfinite => {
            o.commit_with(out_dir, args.force, manifest)?
        }
        _ => Vec::new(),
    };
    let outcome = Outcome {
        element,
        nonfinite,
        overflow,
        pass,
        blocked_by_nonfinite,
    };
    Ok((outcome, written))
}

impl Outcome {
    /// The exit: a failure for an overflow, a failed check or inputs that hold NaN or Inf
    /// (unless allowed), each said on stderr.
    fn verdict(&self) -> Result<(), Failure> {
        match self.why_not_written() {
            None => Ok(()),
            Some((true, why)) => {
                eprintln!("FAIL: {why}");
                Err(Failure::Validation)
            }
            Some((false, why)) => Err(Error::Input(why).into()),
        }
    }

    /// Why the outputs were not written, if they were not, and whether that is the check's
    /// verdict (an overflow or a mismatch: exit 1) rather than the input's (NaN or Inf).
    fn why_not_written(&self) -> Option<(bool, String)> {
        if let Some(o) = &self.overflow {
            return Some((
                true,
                format!(
                    "the projection overflowed {}'s range (the inputs are finite): {o}; \
                     nothing was written",
                    self.element
                ),
            ));
        }
        if self.pass == Some(false) {
            return Some((
                true,
                "the GPU result does not match the reference; nothing was written".into(),
            ));
        }
        self.blocked_by_nonfinite.then(|| {
            let found: Vec<String> = self.nonfinite.iter().map(|n| n.to_string()).collect();
            (
                false,
                format!(
                    "the inputs hold NaN or Inf ({}); nothing was written. Pass \
                     --allow-nonfinite to write the outputs anyway",
                    found.join("; ")
                ),
            )
        })
    }
}
