//! Arguments every command shares: the adapter (`--backend`, `--adapter`), the kernel list
//! (`--kernel`), chunking (`--chunk-tokens`, `--no-stream`) and tolerances (`--atol`,
//! `--rtol`), with the parsers that check them before any work starts.

use crate::text::progress;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Args;
use qkv_wgpu::io::checkpoint::WeightLayout;
use qkv_wgpu::tune::{Resolved, TuneOptions};
use qkv_wgpu::{
    AdapterFilter, BackendChoice, ChunkOptions, ElementType, Error, GpuContext, Kernel, KernelSpec,
    QkvShape, Tolerance,
};

/// `--backend`: the library's backend names, each with its description.
fn backend_parser() -> impl TypedValueParser<Value = BackendChoice> {
    PossibleValuesParser::new(
        BackendChoice::ALL.map(|b| PossibleValue::new(b.name()).help(b.description())),
    )
    .try_map(|s| s.parse::<BackendChoice>())
}

/// `--weight-layout`: the library's layout names, each with its description.
pub fn weight_layout_parser() -> impl TypedValueParser<Value = WeightLayout> {
    PossibleValuesParser::new(
        WeightLayout::ALL.map(|l| PossibleValue::new(l.name()).help(l.description())),
    )
    .try_map(|s| s.parse::<WeightLayout>())
}

/// Where `--help` lists the options every command takes, apart from the command's own.
const GLOBAL: &str = "Options of every command (before or after it)";

/// Adapter choice, shared by every command.
#[derive(Args, Debug, Clone)]
pub struct GpuArgs {
    /// Graphics API to use [default: the best of Vulkan, Metal, DX12; GL only if none]
    #[arg(long, global = true, env = "QKV_BACKEND", value_parser = backend_parser(),
          help_heading = GLOBAL)]
    backend: Option<BackendChoice>,
    /// Use the first adapter whose name contains this text (case-insensitive), or the one
    /// at a PCI address, `pci:0000:18:00.0` (`qkv adapters` lists them): one of several
    /// identical GPUs
    #[arg(long, global = true, env = "QKV_ADAPTER", value_name = "SUBSTRING|pci:ADDRESS",
          help_heading = GLOBAL)]
    adapter: Option<String>,
    /// Build the kernels whose every memory access the plan proves in bounds (coopmat)
    /// without wgpu's runtime bounds checks and workgroup-memory zeroing. Off by default:
    /// not yet measured faster on a GPU (BENCHMARKS.md); reports say when it was used
    #[arg(long, global = true, help_heading = GLOBAL)]
    unchecked: bool,
}

impl GpuArgs {
    pub fn filter(&self) -> AdapterFilter {
        AdapterFilter {
            backend: self.backend,
            name: self.adapter.clone(),
        }
    }

    fn options(&self) -> qkv_wgpu::ContextOptions {
        qkv_wgpu::ContextOptions {
            unchecked_kernels: self.unchecked,
            ..Default::default()
        }
    }

    pub fn context(&self) -> Result<GpuContext, Error> {
        GpuContext::with_options(&self.filter(), &self.options())
    }

    /// A context on each adapter `spec` names (`--adapters`: all, or a comma list).
    pub fn contexts(&self, spec: &str) -> Result<Vec<GpuContext>, Error> {
        GpuContext::on_each(&self.filter(), spec, &self.options())
    }
}

/// How a batch larger than one dispatch is split; shared by `run`, `project` and `bench`.
#[derive(Args, Debug, Clone, Copy)]
pub struct ChunkArgs {
    /// Tokens per chunk (each chunk its own dispatch) [default: the most that fit the
    /// device's limits and 64 MiB of X, Q, K, V in flight, divided among the buffer sets]
    #[arg(long, value_parser = parse_chunk_tokens)]
    pub chunk_tokens: Option<u32>,
    /// Run chunks one after another instead of overlapping the stages (producing X,
    /// uploading, the GPU, consuming Q, K, V) of different chunks (for comparison)
    #[arg(long)]
    pub no_stream: bool,
    /// Chunk buffer sets in flight when streaming (each one chunk's X, Q, K, V on the GPU and
    /// in staging memory; no more are used than there are chunks)
    #[arg(long, default_value_t = qkv_wgpu::DEFAULT_BUFFER_SETS,
          value_parser = clap::value_parser!(u32).range(
              qkv_wgpu::MIN_BUFFER_SETS as i64..=qkv_wgpu::MAX_BUFFER_SETS as i64))]
    pub buffer_sets: u32,
}

/// `--chunk-tokens`: a count the library takes, refused now where it would refuse it
/// ([`ChunkOptions::check`], its message: 0 is not "automatic"; leaving the flag out is).
fn parse_chunk_tokens(s: &str) -> Result<u32, String> {
    let n: u32 = s.trim().parse().map_err(|e| format!("{e}"))?;
    let opts = ChunkOptions {
        chunk_tokens: Some(n),
        ..Default::default()
    };
    opts.check().map_err(|e| flags(&e.to_string()))?;
    Ok(n)
}

impl ChunkArgs {
    pub fn options(&self) -> ChunkOptions {
        ChunkOptions {
            chunk_tokens: self.chunk_tokens,
            streaming: !self.no_stream,
            buffer_sets: self.buffer_sets,
            ..Default::default()
        }
    }
}

/// `--kernel`'s help: the syntax, then every variant from the registry.
pub fn kernel_help() -> String {
    format!(
        "`auto` (the configuration autotuned for this adapter and shape class), or kernel \
         variants by name or number, comma-separated, or `all`; each may carry tuning \
         parameters, e.g. `direct(wg=32)`:\n{}",
        Kernel::help_list()
    )
}

/// What `--kernel` asked for: the library's choice, `auto` or named.
pub use qkv_wgpu::tune::KernelChoice;

pub fn parse_kernels(s: &str) -> Result<KernelChoice, String> {
    KernelChoice::parse(s)
}

/// What the CLI says while kernels are resolved: that a kernel is being chosen, a note when
/// tuning starts (it takes a while), each step, then the tuner's notes and what `all`
/// skipped.
pub struct Narrator<'a> {
    ctx: &'a GpuContext,
    force_tune: bool,
    started: bool,
}

impl<'a> Narrator<'a> {
    pub fn new(ctx: &'a GpuContext, force_tune: bool) -> Self {
        Self {
            ctx,
            force_tune,
            started: false,
        }
    }

    /// Before `list` is resolved on `shape`.
    pub fn choosing(&mut self, list: &KernelChoice) {
        self.started = false;
        if *list == KernelChoice::Auto {
            progress("choosing a kernel configuration (autotuning on first use)");
        }
    }

    /// One step of the tuner on `shape` in `element`.
    pub fn step(&mut self, shape: &QkvShape, element: ElementType, step: &str) {
        // Tuning takes seconds on a GPU and minutes on a CPU driver: said when it starts,
        // not only seen in the time it takes.
        if !self.started {
            self.started = true;
            let count = step
                .split_once('/')
                .and_then(|(_, rest)| rest.split_once(' '))
                .map_or("every", |(n, _)| n);
            eprintln!(
                "note: autotuning {} tokens x d_model {} -> {} in {element} ({} class, first \
                 use on this adapter): {count} candidates validated and timed, {}; the choice \
                 is cached (--kernel NAME skips this)",
                shape.tokens,
                shape.d_model,
                shape.n_out(),
                if self.force_tune {
                    "--tune, this"
                } else {
                    "this shape's"
                },
                if self.ctx.is_cpu() {
                    "up to a few minutes on a CPU driver"
                } else {
                    "seconds on a GPU"
                }
            );
        }
        progress(&format!("tuning {step}"));
    }

    /// The tuner's notes and what `all` skipped.
    pub fn resolved(&self, r: &Resolved) {
        for note in &r.notes {
            eprintln!("note: {note}");
        }
        for (config, why) in &r.skipped {
            eprintln!("skipping {config}: {why}");
        }
    }
}

/// The kernels to run, each resolved into its spec ([`qkv_wgpu::tune::resolve`]), with why
/// it was chosen.
pub fn resolve_kernels(
    ctx: &GpuContext,
    shape: &QkvShape,
    list: &KernelChoice,
    force_tune: bool,
    (element, weights): (ElementType, Option<[qkv_wgpu::quant::WeightType; 3]>),
) -> Result<Vec<(KernelSpec, String)>, Error> {
    let mut say = Narrator::new(ctx, force_tune);
    say.choosing(list);
    let opts = TuneOptions {
        force: force_tune,
        element,
        weights,
        ..Default::default()
    };
    let r = qkv_wgpu::tune::resolve(ctx, shape, list, &opts, |step| {
        say.step(shape, element, step)
    })?;
    say.resolved(&r);
    let specs = r.specs.into_iter().map(|(s, why)| (s, flags(&why)));
    Ok(specs.collect())
}

/// `--weight-type`: how W is stored on the GPU.
pub fn weight_type_help() -> String {
    format!(
        "How Wq, Wk and Wv are stored on the GPU: one type for all three, or three separated by \
         commas (Q, K, V). A block format keeps W quantized on the GPU (llama.cpp's reference \
         quantizers) and dequantized in the kernel (decode, subgroup-texture or blocktile); the \
         check is against the quantized weights, and the quantization cost against the weights \
         before. One of: \
         {} [default: --dtype]",
        qkv_wgpu::quant::WeightType::names()
    )
}

/// Parses `--weight-type` ([`qkv_wgpu::quant::WeightType::parse_parts`]).
pub fn parse_weight_type(s: &str) -> Result<[qkv_wgpu::quant::WeightType; 3], String> {
    qkv_wgpu::quant::WeightType::parse_parts(s)
}

/// `--dtype`: the storage type of X, the weights and Q, K, V on the GPU.
pub fn dtype_help() -> String {
    let typed: Vec<&str> = Kernel::ALL
        .iter()
        .filter(|k| k.dtypes().len() == ElementType::ALL.len())
        .map(|k| k.name())
        .collect();
    format!(
        "Storage type of X, the weights and Q, K, V on the GPU: f32, f16 or bf16. Kernels \
         accumulate in f32 (coopmat(acc=16) in f16); half types are rounded to nearest even on \
         the host and widened on load (packed two to a 32-bit word, so every adapter runs \
         them). Kernels that read every type: {}",
        typed.join(", ")
    )
}

/// Parses --atol / --rtol: a finite number >= 0, refused before any work starts.
pub fn parse_tolerance(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("must be a finite number >= 0, got {s}")),
    }
}

/// `--atol` and `--rtol`, shared by the commands that check results.
#[derive(Args, Debug, Clone, Copy)]
pub struct ToleranceArgs {
    /// Absolute tolerance [default: 0; each element is held to its own bound, --ttol]
    #[arg(long, allow_negative_numbers = true, value_parser = parse_tolerance)]
    pub atol: Option<f64>,
    /// Tolerance relative to |ref| [default: 0 in f32; half an ulp of a half type]
    #[arg(long, allow_negative_numbers = true, value_parser = parse_tolerance)]
    pub rtol: Option<f64>,
    /// Tolerance relative to the element's Σ|x·w| + |b| [default: 10·√(d_model+2)·2^-24,
    /// the probabilistic bound of f32 accumulation (README, "How validation decides")]
    #[arg(long, allow_negative_numbers = true, value_parser = parse_tolerance)]
    pub ttol: Option<f64>,
}

impl ToleranceArgs {
    /// The user's --atol / --rtol / --ttol (checked when parsed, `parse_tolerance`).
    pub fn overrides(&self) -> qkv_wgpu::ToleranceOverrides {
        qkv_wgpu::ToleranceOverrides {
            atol: self.atol,
            rtol: self.rtol,
            ttol: self.ttol,
            sound_ttol: None,
        }
    }

    /// `default` with the user's --atol / --rtol / --ttol taking precedence.
    fn over(&self, default: Tolerance) -> Tolerance {
        self.overrides().over(default)
    }

    /// The tolerance of f32 accumulation over `d_model` for results stored as `element`.
    pub fn tolerance(&self, d_model: u32, element: ElementType) -> Tolerance {
        self.over(Tolerance::for_f32_accumulation(d_model).for_output(element))
    }
}

/// The flag of each setting the library's messages name ([`qkv_wgpu::error::SETTINGS`]).
const FLAGS: [(&str, &str); 12] = [
    ("chunk_tokens", "--chunk-tokens"),
    ("kernel", "--kernel"),
    ("tokens", "--tokens"),
    ("max_tokens", "--max-tokens"),
    ("cpu", "--no-cpu"),
    ("check_rows", "--check-rows"),
    ("force", "--force"),
    ("out", "--out"),
    ("weight_layout", "--weight-layout"),
    ("heads", "--heads"),
    ("kv_heads", "--kv-heads"),
    ("allow_nonfinite", "--allow-nonfinite"),
];

/// A library message as the CLI says it: each setting named by its flag.
pub fn flags(message: &str) -> String {
    qkv_wgpu::error::name_settings(message, &FLAGS)
}
