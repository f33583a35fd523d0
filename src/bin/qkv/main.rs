//! `qkv`: run, check and time the fused Q/K/V projection on any GPU wgpu can drive.
//!
//! Exit codes: 0 success (every check passed), 1 a validation failed, 2 bad arguments or
//! input, 3 no usable GPU or a GPU error.

mod adapters;
mod args;
mod baseline;
mod bench;
mod check;
mod exit;
mod plot;
mod project;
mod report;
mod run;

use args::GpuArgs;
use clap::{Parser, Subcommand};
use exit::{exit_code, Failure};
use qkv_wgpu::Kernel;
use std::process::ExitCode;

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
                  3 no usable GPU or a GPU error."
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
    /// The worked example x = (2, 3), W = [[1, 10], [0, -1]] -> (2, 17), computed on the GPU
    Explain {
        /// Kernel variant: a name or number (see `qkv run --help`)
        #[arg(long, default_value_t = Kernel::DEFAULT, value_parser = parse_kernel)]
        kernel: Kernel,
    },
}

fn parse_kernel(s: &str) -> Result<Kernel, String> {
    s.parse()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => run::run(&cli.gpu, args),
        Command::Project(args) => project::project(&cli.gpu, args),
        Command::Bench(args) => bench::bench(&cli.gpu, args),
        Command::Adapters(args) => adapters::adapters(&cli.gpu, args),
        Command::Explain { kernel } => explain(&cli.gpu, *kernel),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Validation) => ExitCode::from(1),
        Err(Failure::Error(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn explain(gpu: &GpuArgs, kernel: Kernel) -> Result<(), Failure> {
    let ctx = gpu.context()?;
    let e = qkv_wgpu::explain::explain(&ctx, kernel)?;
    println!("{}", e.render());
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
