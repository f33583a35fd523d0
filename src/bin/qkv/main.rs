//! `qkv`: run, check and time the fused Q/K/V projection on any GPU wgpu can drive.
//!
//! Exit codes (`exit.rs`): 0 success (every check passed), 1 a validation failed, 2 bad
//! arguments or input, 3 no usable GPU or a GPU error, 4 the machine could not read or write
//! a file or standard output; killed by a signal, the shell's 128 + N.

mod adapters;
mod args;
mod bench;
mod exit;
mod gguf;
mod peak;
mod plot;
mod project;
mod run;
mod signals;
mod stdout;
mod text;
mod try_kernel;
mod watchdog;

use args::GpuArgs;
use clap::{Parser, Subcommand};
use exit::{exit_code, Failure};
use qkv_wgpu::Kernel;
use std::process::ExitCode;
use stdout::outln;

#[derive(Parser, Debug)]
#[command(
    name = "qkv",
    version,
    about = "Fused Q/K/V self-attention projections on any GPU (WGSL through wgpu), \
             checked against an f64 CPU reference",
    long_about = "Computes Q = X·Wq + bq, K = X·Wk + bk, V = X·Wv + bv as one GEMM over the \
                  concatenated [Wq | Wk | Wv] in one compute dispatch, checks every element \
                  against a CPU reference with f64 accumulation, and times it.\n\n\
                  Start with `qkv run` (a GPT-2-small-shaped projection) or `qkv explain` (the \
                  worked example).",
    after_help = "Exit codes: 0 success, 1 validation failed, 2 bad arguments or input, \
                  3 no usable GPU or a GPU error, 4 a file or standard output could not be \
                  read or written (disk full, permission, read-only file system). Interrupted \
                  by a signal, qkv removes its partial files and dies by the signal (the shell \
                  shows 128 + N: 130 for Ctrl-C)."
)]
struct Cli {
    #[command(flatten)]
    gpu: GpuArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Project seeded random X through seeded random weights on the GPU, check every element
    /// against the CPU reference, and time it
    Run(run::RunArgs),
    /// Project X from a .npy file through Q/K/V weights from a safetensors checkpoint, check
    /// the result, and write q.npy, k.npy, v.npy
    Project(Box<project::ProjectArgs>),
    /// Time named model shapes over a sweep of token counts, GPU against the CPU baseline,
    /// every configuration validated first; table, JSON, CSV or an SVG plot
    Bench(bench::BenchArgs),
    /// List every adapter wgpu sees, with the limits and features that matter here
    Adapters(adapters::AdaptersArgs),
    /// Measure what this adapter does through WGSL: the f32 FMA rate, each cooperative-matrix
    /// configuration's rate, memory bandwidth; cached, so `run` and `bench` show each
    /// kernel's share of it
    Peak(peak::PeakArgs),
    /// Check a kernel of your own (WGSL) the way the built-in ones are checked, then time it
    /// beside them
    #[command(name = "try")]
    Try(try_kernel::TryArgs),
    /// What a GGUF file holds for a projection: architecture, d_model, heads, and each
    /// attention layer's Q, K, V formats and shapes
    Gguf(gguf::GgufArgs),
    /// The worked example x = (2, 3), W = [[1, 10], [0, -1]] -> (2, 17), computed on the GPU
    Explain {
        /// Kernel variant: a name or number (see `qkv run --help`) [default: tiled, or direct
        /// on a device that allows fewer than its 256 invocations per workgroup]
        #[arg(long, value_parser = parse_kernel)]
        kernel: Option<Kernel>,
    },
}

fn parse_kernel(s: &str) -> Result<Kernel, String> {
    s.parse()
}

impl Command {
    /// Whether the command was asked for JSON: then a failure is a JSON object too.
    fn json(&self) -> bool {
        match self {
            Command::Run(a) => a.json,
            Command::Project(a) => a.json,
            Command::Bench(a) => a.json,
            Command::Adapters(a) => a.json,
            Command::Peak(a) => a.json,
            Command::Gguf(a) => a.json,
            Command::Try(_) => false,
            Command::Explain { .. } => false,
        }
    }
}

/// Mesa's Vulkan device-selection layer connects to a Wayland display to learn the default
/// GPU; with no XDG_RUNTIME_DIR (a server, CI, a container) libwayland prints "error:
/// XDG_RUNTIME_DIR is invalid or not set" on every run, which users read as ours. With no
/// session to ask there is nothing for the layer to select by, so it is switched off
/// (`NODEVICE_SELECT=1`, the layer's own off switch) unless the user set up either variable,
/// or chose a device through the layer with MESA_VK_DEVICE_SELECT. Adapters are ranked here
/// anyway. Called first thing, before any thread exists.
fn quiet_mesa_device_select() {
    let unset = |v: &str| std::env::var_os(v).is_none();
    if unset("XDG_RUNTIME_DIR") && unset("NODEVICE_SELECT") && unset("MESA_VK_DEVICE_SELECT") {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

/// A write past the file-size limit (`ulimit -f`) raises SIGXFSZ, whose default action
/// kills the process with no message and the partial files left behind. Ignored, the write
/// fails with EFBIG instead: an I/O error like a full disk (exit 4, partial files removed).
fn file_size_limit_is_an_error() {
    #[cfg(unix)]
    // SAFETY: called first thing, before any thread exists; SIG_IGN is a valid disposition.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

fn main() -> ExitCode {
    file_size_limit_is_an_error();
    quiet_mesa_device_select();
    let cli = Cli::parse();
    let json = cli.command.json();
    let result = match &cli.command {
        Command::Run(args) => run::run(&cli.gpu, args),
        Command::Project(args) => project::project(&cli.gpu, args),
        Command::Bench(args) => bench::bench(&cli.gpu, args),
        Command::Adapters(args) => adapters::adapters(&cli.gpu, args),
        Command::Peak(args) => peak::peak(&cli.gpu, args),
        Command::Try(args) => try_kernel::try_kernel(&cli.gpu, args),
        Command::Gguf(args) => gguf::gguf(args),
        Command::Explain { kernel } => explain(&cli.gpu, *kernel),
    };
    let mut code = match result {
        Ok(()) => 0,
        Err(Failure::Validation) => 1,
        Err(Failure::Reported(code, line)) => {
            eprintln!("error: {line}");
            code
        }
        Err(Failure::Error(e)) => {
            let message = args::flags(&e.to_string());
            eprintln!("error: {message}");
            let code = exit_code(&e);
            if json {
                let obj = serde_json::json!({
                    "error": message,
                    "exit_code": code,
                    "exit_reason": exit::reason(code),
                });
                outln!("{obj}");
            }
            code
        }
    };
    if let Some(e) = stdout::finish() {
        eprintln!("error: cannot write to standard output: {e}");
        if code == 0 {
            code = exit::IO;
        }
    }
    ExitCode::from(code)
}

fn explain(gpu: &GpuArgs, kernel: Option<Kernel>) -> Result<(), Failure> {
    let ctx = gpu.context()?;
    let kernel = kernel.unwrap_or_else(|| {
        [Kernel::DEFAULT, Kernel::Direct]
            .into_iter()
            .find(|&k| {
                qkv_wgpu::KernelConfig::from(k)
                    .unsupported_on(&ctx.summary)
                    .is_none()
            })
            .unwrap_or(Kernel::DEFAULT)
    });
    let e = qkv_wgpu::explain::explain(&ctx, kernel)?;
    outln!("{}", e.render());
    let expected = [2.0, 17.0];
    if e.same.iter().any(|v| *v != expected) {
        eprintln!(
            "FAIL: the GPU gave {:?} for the worked example; expected (2, 17) for each of q, k, v",
            e.same
        );
        return Err(Failure::Validation);
    }
    Ok(())
}
