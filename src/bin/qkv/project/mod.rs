//! `qkv project`: X from a `.npy` file through Q/K/V weights from a safetensors or GGUF
//! checkpoint, checked against the CPU reference, written as `q.npy`, `k.npy`, `v.npy`.

use crate::args::{dtype_help, kernel_help, parse_kernels, resolve_kernels, weight_layout_parser};
use crate::args::{parse_weight_type, weight_type_help};
use crate::args::{ChunkArgs, GpuArgs, KernelChoice, ToleranceArgs};
use crate::exit::Failure;
use crate::stdout::outln;
use crate::text::{progress, token_bar};
use clap::{ArgGroup, Args, ValueEnum};
use qkv_wgpu::io::checkpoint::WeightLayout;
use qkv_wgpu::io::npy::{NpyRows, XDims};
use qkv_wgpu::io::outputs::{OutFormat, PartialOutputs};
use qkv_wgpu::io::project::{self as file, FileJob, JobWeights, Outcome, Seal};
use qkv_wgpu::io::shards::{self, Inputs};
use qkv_wgpu::measure::{self, CheckRows};
use qkv_wgpu::quant::WeightType;
use qkv_wgpu::{
    ChunkPlan, ElementType, Error, HeadSplit, OutputLayout, Projector, QkvReport, QkvShape,
};
use std::path::{Path, PathBuf};

mod epilogue;
mod load;
mod report;
mod sharded;

use load::{load, Loaded};

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
        --out out/\n  \
        qkv project --input x.npy --weights qwen3/model.safetensors --prefix model.layers.0 \
        --rope --qk-norm --position-offset 512 --head-layout heads --out out/"
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
    #[arg(long, value_name = "npy|safetensors", default_value = "npy",
          value_parser = |s: &str| s.parse::<OutFormat>())]
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
    #[command(flatten)]
    epilogue: epilogue::EpilogueArgs,
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

/// The heads asked for: --heads and --kv-heads, else the model's files' (the config.json of
/// --rope and --qk-norm, or a GGUF file's metadata).
fn requested_heads(
    args: &ProjectArgs,
    (loaded, epilogue): (&Loaded, &epilogue::Settings),
) -> Option<(u32, Option<u32>)> {
    let files = match (epilogue, &loaded.gguf) {
        (Some((_, h)), _) => Some((h.heads, Some(h.kv_heads))),
        (None, Some(g)) => g.heads.map(|h| (h, g.kv_heads)),
        (None, None) => None,
    };
    match args.heads {
        Some(h) => Some((h, args.kv_heads)),
        None => files,
    }
}

/// The head split for `--head-layout heads`, or a check of the heads alone
/// ([`requested_heads`]).
fn head_split(
    args: &ProjectArgs,
    session: &Session,
    shape: &QkvShape,
    seq: u32,
) -> Result<Option<HeadSplit>, Error> {
    let Some((heads, kv_heads)) = requested_heads(args, (session.loaded, &session.epilogue)) else {
        if args.head_layout == HeadLayoutArg::Heads {
            return Err(Error::Input(
                "--head-layout heads needs --heads (a GGUF file's metadata, or the config.json \
                 of --rope and --qk-norm, gives them)"
                    .into(),
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
    session: &Session,
    shape: &QkvShape,
    dims: XDims,
) -> Result<(Option<HeadSplit>, OutputLayout), Error> {
    let seq = dims.batch_seq.map_or(dims.tokens, |(_, s)| s);
    let split = head_split(args, session, shape, seq)?;
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
        Inputs::Shards(list) => {
            if args.epilogue.positions_given() {
                return Err(Error::Input(
                    "--positions lists one X's positions; shards take --position-offset".into(),
                )
                .into());
            }
            return sharded::project_shards(gpu, args, &list);
        }
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
        epilogue: epilogue::settings(args, &loaded)?,
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
    verdict(&run.outcome)
}

/// What every file of a run shares: the weights, loaded once, and an adapter's context (a
/// sharded run over several adapters has one session each, the weights shared).
pub(super) struct Session<'a> {
    loaded: &'a Loaded,
    ctx: &'a qkv_wgpu::GpuContext,
    /// `--rope` and `--qk-norm` as the model's files say ([`epilogue::settings`]).
    epilogue: epilogue::Settings,
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
    let shape = file::file_shape(input, dims, w)?;
    let (split, layout) = output_layout(args, session, &shape, dims)?;
    let out_dir = open_out_dir(args, input, out, seal.is_some())?;
    let kinds = (element, w.w_formats());
    let specs = resolve_kernels(ctx, &shape, &args.kernel, args.tune, kinds)?;
    let [(spec, config_reason)] = <[_; 1]>::try_from(specs).map_err(|_| {
        Error::Input("qkv project runs one kernel configuration; name one, or auto".into())
    })?;
    let opts = epilogue::chunk_options(args);
    let mut projector = match epilogue::for_file(&session.epilogue, dims) {
        None => {
            let plan = ChunkPlan::new(&ctx.limits(), &shape, &spec, layout, &opts)?;
            Projector::from_plan(ctx, spec, plan)?
        }
        Some((ep, heads)) => {
            Projector::with_epilogue(ctx, shape, spec, (layout, &opts), (&ep, heads))?
        }
    };
    projector.set_weights(w)?;
    let sources = [
        ("source_input", input),
        ("source_weights", args.weights.as_path()),
    ];
    let tensors: Vec<&str> = loaded.tensors.iter().map(|t| t.0.as_str()).collect();
    let (outputs, out_shapes) = file::create_outputs(
        &out_dir,
        args.out_format,
        &projector,
        dims.batch_seq,
        (sources, &tensors),
    )?;
    let job = FileJob {
        check: (!args.no_check).then(|| args.check_rows.unwrap_or(CheckRows::default_for(&shape))),
        tolerance: args.tolerance.overrides(),
        allow_nonfinite: args.allow_nonfinite,
        force: args.force,
        cancel: None,
    };
    let quiet = seal.is_some();
    let mut run = stream(&mut projector, &mut x, outputs, &job, quiet, bar)?;
    let weights = JobWeights {
        w,
        original: original.as_ref(),
        nonfinite: &loaded.nonfinite,
    };
    let (checked, outcome, written) = check_and_settle(
        &projector,
        &mut run,
        (&job, weights),
        (&out_dir, seal),
        quiet,
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
/// interrupted run left there is cleaned up and said first, then the library's checks
/// ([`file::check_outputs`]: inputs are never outputs, existing outputs need --force).
fn open_out_dir(
    args: &ProjectArgs,
    input: &Path,
    out: &Path,
    shard: bool,
) -> Result<qkv_wgpu::io::commit::OutputDir, Error> {
    let out_dir = qkv_wgpu::io::commit::OutputDir::open(out)?;
    for note in &out_dir.notes {
        eprintln!("note: {note}");
    }
    let inputs = [("--input", input), ("--weights", args.weights.as_path())];
    file::check_outputs(&out_dir, args.out_format, shard, &inputs, args.force)?;
    Ok(out_dir)
}

/// [`file::stream`] with the run's progress: a line naming the chunks (unless `quiet`, a
/// shard's), and the bar the tokens move.
fn stream(
    projector: &mut Projector<'_>,
    x: &mut NpyRows,
    outputs: PartialOutputs,
    job: &FileJob<'_>,
    quiet: bool,
    bar: Bar<'_>,
) -> Result<file::Streamed, Failure> {
    let (tokens, plan) = (projector.shape().tokens, projector.plan().clone());
    if !quiet {
        progress(&format!(
            "projecting: {} chunk(s) of up to {} tokens",
            plan.chunks(),
            plan.chunk_tokens
        ));
    }
    let own = match bar {
        Bar::Own(show) => Some(token_bar(tokens, plan.chunks(), show)),
        Bar::Shared(..) => None,
    };
    // A shared bar counts every shard's tokens: this one's are added as they are done.
    let counted = std::cell::Cell::new(0u64);
    let set_position = |done: u64| match (&own, bar) {
        (Some(b), _) => b.set_position(done),
        (None, Bar::Shared(b)) => b.inc(done.saturating_sub(counted.replace(done))),
        (None, Bar::Own(_)) => {}
    };
    let run = file::stream(projector, x, outputs, job, |done| set_position(done as u64))?;
    match (own, bar) {
        (Some(b), _) => b.finish_and_clear(),
        (None, Bar::Shared(b)) => b.inc((tokens as u64).saturating_sub(counted.get())),
        (None, Bar::Own(_)) => {}
    }
    Ok(run)
}

/// The streamed run checked ([`file::check`], said unless `quiet`) and settled
/// ([`file::settle`]): the check, how the run ends, and the files put in place.
fn check_and_settle(
    projector: &Projector<'_>,
    run: &mut file::Streamed,
    (job, weights): (&FileJob<'_>, JobWeights<'_>),
    (out_dir, seal): (&qkv_wgpu::io::commit::OutputDir, Option<&Seal>),
    quiet: bool,
) -> Result<(file::Checked, Outcome, Vec<String>), Error> {
    if job.check.is_some() && !quiet {
        progress(&format!(
            "checking {} rows against the CPU reference (f64)",
            run.kept.len()
        ));
    }
    let checked = file::check(projector, run, job, weights);
    let element = projector.dtype();
    let (outcome, written) = file::settle(run, &checked, (weights, element), job, (out_dir, seal))?;
    if let Some(nf) = outcome.nonfinite.first().filter(|n| n.what == "X") {
        eprintln!("warning: {nf}");
    }
    Ok((checked, outcome, written))
}

/// The exit of a one-file run: a failure for an overflow, a failed check or inputs that
/// hold NaN or Inf (unless allowed), each said on stderr.
fn verdict(outcome: &Outcome) -> Result<(), Failure> {
    match outcome.why_not_written() {
        None => Ok(()),
        Some((true, why)) => {
            eprintln!("FAIL: {}", crate::args::flags(&why));
            Err(Failure::Validation)
        }
        Some((false, why)) => Err(Error::Input(why).into()),
    }
}
