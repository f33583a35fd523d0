//! `qkv try FILE.wgsl`: a user's kernel checked against the contract (docs/KERNELS.md),
//! then through the checks the built-in kernels pass (the library's `conformance`), then
//! timed beside built-in kernels on a named shape; `--template` writes a starting kernel.

use crate::args::{dtype_help, parse_kernels, resolve_kernels, GpuArgs, KernelList};
use crate::exit::Failure;
use crate::stdout::outln;
use crate::text::progress;
use clap::Args;
use qkv_wgpu::bench::{bench_row, BenchJob, BenchOptions, BenchRow};
use qkv_wgpu::conformance::{cases, maps_svg, run_case_blocking, TileMap};
use qkv_wgpu::kernels::CustomKernel;
use qkv_wgpu::presets::preset;
use qkv_wgpu::{random_weights, ChunkOptions, ElementType, Error, Kernel, QkvShape};
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(
    after_help = "The contract a kernel meets (bindings, overrides, tile, header lines) \
                        is docs/KERNELS.md; `qkv try --template` writes one that meets it."
)]
pub struct TryArgs {
    /// The kernel: a WGSL file meeting the contract of docs/KERNELS.md
    #[arg(required_unless_present = "template")]
    file: Option<PathBuf>,
    /// Write a starting kernel to standard output instead: the source of a built-in variant
    /// (any but splitk and coopmat; naive by default) with the contract's header
    #[arg(long, value_name = "VARIANT", num_args = 0..=1, default_missing_value = "naive",
          conflicts_with = "file")]
    template: Option<String>,
    /// Built-in kernels to time beside it: `auto`, variants by name (comma-separated), or
    /// `none`
    #[arg(long, default_value = "auto")]
    against: String,
    /// The named shape to time on: gpt2, bert-base, vit-b16, llama3-8b
    #[arg(long, default_value = "gpt2")]
    shape: String,
    /// Tokens of the timed batch
    #[arg(long, default_value_t = 1024)]
    tokens: u32,
    /// Storage types to time it in, comma-separated (each must be one it reads)
    #[arg(long, default_value = "f32", value_delimiter = ',', long_help = format!(
        "Storage types to time it in, comma-separated. {}", dtype_help()))]
    dtype: Vec<ElementType>,
    /// Timed end-to-end runs after a validated warm-up, and as many back-to-back dispatches
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeats: u32,
    /// Seed of the inputs
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Also draw the failing checks' maps of wrong elements by output tile into this SVG
    /// file (written only when a check fails)
    #[arg(long, value_name = "FILE.svg")]
    map: Option<PathBuf>,
    /// Overwrite the --map file if it exists
    #[arg(long, requires = "map")]
    force: bool,
    /// Check (and time) again each time the file changes, until Ctrl-C
    #[arg(long)]
    watch: bool,
    /// Seconds a check may take before the kernel is taken for one that never ends: qkv
    /// then stops with exit code 3 (a GPU cannot be made to drop a running dispatch)
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

pub fn try_kernel(gpu: &GpuArgs, args: &TryArgs) -> Result<(), Failure> {
    if let Some(name) = &args.template {
        let kernel: Kernel = name.parse().map_err(Error::Input)?;
        outln!("{}", CustomKernel::template(kernel).map_err(Error::Input)?);
        return Ok(());
    }
    let path = args
        .file
        .as_ref()
        .expect("clap requires FILE without --template");
    if let Some(map) = &args.map {
        qkv_wgpu::io::commit::not_special(map)?;
        if map.exists() && !args.force {
            return Err(Error::Input(format!(
                "--map {} already exists; pass --force to overwrite it",
                map.display()
            ))
            .into());
        }
    }
    let ctx = gpu.context()?;
    if !args.watch {
        return try_once(&ctx, path, args);
    }
    loop {
        let before = stamp(path);
        match try_once(&ctx, path, args) {
            Ok(()) | Err(Failure::Validation) => {}
            Err(Failure::Error(e)) => eprintln!("error: {}", crate::args::flags(&e.to_string())),
        }
        eprintln!("watching {} for changes (Ctrl-C to stop)", path.display());
        while stamp(path) == before {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        outln!("\n{} changed:", path.display());
    }
}

/// What tells a change of the file: its modification time and length (None while it cannot
/// be read, as during an editor's save).
fn stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Stops the process with exit code 3 if a check runs past `timeout` (a kernel that never
/// ends: the GPU, or a CPU driver, cannot be made to drop it, and waiting would hang); the
/// returned sender, sent to or dropped, ends the watch.
fn watchdog(timeout: std::time::Duration, what: String) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
            use std::io::Write;
            let _ = std::io::stdout().flush();
            eprintln!(
                "error: {what} did not finish within {} s (--timeout): the kernel may never \
                 end (a loop without an exit?); stopping",
                timeout.as_secs()
            );
            // At once, without the driver's exit handlers, which may wait for the dispatch
            // that never ends.
            #[cfg(unix)]
            // SAFETY: _exit ends the process; nothing of it runs afterwards.
            unsafe {
                libc::_exit(3)
            };
            #[cfg(not(unix))]
            std::process::exit(3);
        }
    });
    tx
}

/// Reads, checks and (if every check passed) times the kernel at `path`, once.
fn try_once(
    ctx: &qkv_wgpu::GpuContext,
    path: &std::path::Path,
    args: &TryArgs,
) -> Result<(), Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Input(format!("cannot read the kernel {}: {e}", path.display())))?;
    let label = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    let kernel = CustomKernel::parse(&label, &text).map_err(Error::Input)?;
    outln!("{}", qkv_wgpu::records::custom_kernel_line(&kernel));
    outln!("{}", qkv_wgpu::records::CASES_LINE);
    let timeout = std::time::Duration::from_secs(args.timeout);
    let mut failed = Vec::new();
    for case in cases(kernel.tile, &kernel.elements) {
        let spec = kernel.spec(case.element).map_err(Error::Input)?;
        if let Some(why) = spec.unsupported_on(&ctx.summary) {
            return Err(Error::Input(why).into());
        }
        let watch = watchdog(
            timeout,
            format!("the check '{}' in {}", case.name, case.element),
        );
        let result = run_case_blocking(ctx, &spec, &case, args.seed);
        let _ = watch.send(());
        let result = result?;
        for line in qkv_wgpu::records::case_lines(&result) {
            outln!("{line}");
        }
        if !result.pass {
            failed.push(result);
        }
    }
    if failed.is_empty() {
        return time_beside(ctx, &kernel, args);
    }
    outln!("{} check(s) failed: not timed", failed.len());
    if let Some(map) = &args.map {
        let maps: Vec<(String, &TileMap)> = failed
            .iter()
            .filter_map(|r| {
                let title = format!("{label}: {} in {}", r.case.name, r.case.element);
                r.map.as_ref().map(|m| (title, m))
            })
            .collect();
        let svg = maps_svg(&maps);
        qkv_wgpu::io::commit::write_file(map, svg.as_bytes(), true)?;
        outln!("map of the wrong elements: {}", map.display());
    }
    Err(Failure::Validation)
}

/// `--against`: `none`, or a comma-separated list of `auto` and configurations (commas
/// inside a configuration's parentheses belong to it).
fn against(list: &str) -> Result<Vec<KernelList>, Error> {
    if list.trim() == "none" {
        return Ok(Vec::new());
    }
    let (mut items, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&list[start..]);
    items
        .iter()
        .map(|item| parse_kernels(item.trim()).map_err(|e| Error::Input(format!("--against: {e}"))))
        .collect()
}

/// Times the kernel (each `--dtype`) and the `--against` kernels on the named shape.
fn time_beside(
    ctx: &qkv_wgpu::GpuContext,
    kernel: &CustomKernel,
    args: &TryArgs,
) -> Result<(), Failure> {
    let p = preset(args.shape.trim()).map_err(Error::Input)?;
    let shape = QkvShape::new(args.tokens, p.d_model, p.q_width, p.kv_width, p.bias)?;
    let w = random_weights(&shape, args.seed);
    let (peak, _) = qkv_wgpu::peak::cached(&ctx.summary, None);
    let job = BenchJob {
        name: p.name,
        shape: &shape,
        weights: &w,
        seed: args.seed,
        cpu: None,
        peak: peak.as_ref(),
    };
    let opts = BenchOptions {
        repeats: args.repeats,
        check: None,
        chunking: ChunkOptions::default(),
    };
    let lists = against(&args.against)?;
    let mut specs = Vec::new();
    for &e in &args.dtype {
        specs.push(kernel.spec(e).map_err(Error::Input)?);
        for list in &lists {
            let resolved = resolve_kernels(ctx, &shape, list, false, e)?;
            specs.extend(resolved.into_iter().map(|s| s.0));
        }
    }
    progress(&format!(
        "timing on {} x {} tokens: each checked again, then back-to-back dispatches",
        p.name, shape.tokens
    ));
    let mut rows: Vec<BenchRow> = Vec::new();
    for spec in specs {
        rows.push(bench_row(ctx, spec, &job, &opts, |_| {})?.0);
    }
    crate::bench::print_table(&rows, peak.is_some());
    if rows.iter().all(|r| r.pass) {
        Ok(())
    } else {
        Err(Failure::Validation)
    }
}
