//! `qkv try FILE.wgsl`: a user's kernel checked against the contract (docs/KERNELS.md),
//! then through the checks the built-in kernels pass (the library's `conformance`), then
//! timed beside built-in kernels on a named shape; `--template` writes a starting kernel.

use crate::args::{dtype_help, parse_kernels, resolve_kernels, GpuArgs, KernelChoice};
use crate::exit::Failure;
use crate::stdout::outln;
use crate::text::progress;
use crate::watchdog::Watchdog;
use clap::Args;
use qkv_wgpu::bench::{bench_row, BenchJob, BenchOptions, BenchRow};
use qkv_wgpu::conformance::{cases, maps_svg, run_case_blocking, CaseResult, TileMap, MAP_MARKER};
use qkv_wgpu::kernels::CustomKernel;
use qkv_wgpu::measure::Progress;
use qkv_wgpu::presets::preset;
use qkv_wgpu::records::{case_line, failure_report};
use qkv_wgpu::{random_weights, ChunkOptions, ElementType, Error, Kernel, QkvShape};
use std::path::{Path, PathBuf};

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
    /// W stored otherwise for the built-in kernels it is timed beside (one type, or three for
    /// Q, K, V): they read it in its blocks; your kernel reads the same values, dequantized,
    /// in the run's type (the contract of docs/KERNELS.md), so both compute one product
    #[arg(long, value_parser = crate::args::parse_weight_type, long_help = format!(
        "W stored otherwise for the built-in kernels it is timed beside: they read it in its \
         blocks; your kernel reads the same values, dequantized, in the run's type (the \
         contract of docs/KERNELS.md), so both compute one product. {}",
        crate::args::weight_type_help()))]
    weight_type: Option<[qkv_wgpu::quant::WeightType; 3]>,
    /// Timed end-to-end runs after a validated warm-up, and as many back-to-back dispatches
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeats: u32,
    /// Seed of the inputs
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Also draw the failing checks' maps of wrong elements by output tile into this SVG
    /// file (written only when a check fails; its directory must exist; never the kernel
    /// itself; qkv's own earlier map there is replaced)
    #[arg(long, value_name = "FILE.svg")]
    map: Option<PathBuf>,
    /// Overwrite an existing --map file that is not a map qkv drew
    #[arg(long, requires = "map")]
    force: bool,
    /// Check (and time) again each time the file changes, until Ctrl-C
    #[arg(long)]
    watch: bool,
    /// Seconds a step of the kernel (a check; in its timing, each run and each of the
    /// back-to-back dispatches) may take before it is taken for one that never ends: qkv
    /// then stops with exit code 3 (a GPU cannot be made to drop a running dispatch)
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

/// The most bytes of WGSL `qkv try` reads.
const KERNEL_CAP: u64 = 1 << 20;

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
        map_destination(map, path, args.force)?;
    }
    let ctx = gpu.context()?;
    let dog = Watchdog::start();
    if !args.watch {
        return try_once(&ctx, path, args, &dog);
    }
    loop {
        let before = stamp(path);
        match try_once(&ctx, path, args, &dog) {
            Ok(()) | Err(Failure::Validation) => {}
            Err(Failure::Error(e)) => eprintln!("error: {}", crate::args::flags(&e.to_string())),
            Err(Failure::Reported(_, line)) => eprintln!("error: {line}"),
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
fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Whether the regular file at `path` is a map `qkv try` drew (its marker near the start).
fn is_our_map(path: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(4096).read_to_end(&mut head));
    read.is_ok() && String::from_utf8_lossy(&head).contains(MAP_MARKER)
}

/// Refuses a `--map` destination before any check runs: one in a directory that does not
/// exist, one that is not a regular file, the kernel itself (by file identity: a hard link
/// is caught too), and without `force` an existing file that is not a map `qkv try` drew
/// (its own earlier map is replaced, as an edit-and-rerun loop expects).
fn map_destination(map: &Path, kernel: &Path, force: bool) -> Result<(), Error> {
    let dir = match map.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Err(Error::Input(format!(
            "--map {}: the directory {} does not exist",
            map.display(),
            dir.display()
        )));
    }
    qkv_wgpu::io::commit::not_special(map)?;
    if std::fs::symlink_metadata(map).is_err() {
        return Ok(());
    }
    if same_file::is_same_file(kernel, map).unwrap_or(false) {
        return Err(Error::Input(format!(
            "--map {} is the kernel {} itself; the map is never written over an input, \
             --force or not: choose another name",
            map.display(),
            kernel.display()
        )));
    }
    if force || is_our_map(map) {
        return Ok(());
    }
    Err(Error::Input(format!(
        "--map {} already exists and is not a map qkv drew; pass --force to overwrite it",
        map.display()
    )))
}

/// Reads, checks and (if every check passed) times the kernel at `path`, once, each step
/// under `dog`.
fn try_once(
    ctx: &qkv_wgpu::GpuContext,
    path: &Path,
    args: &TryArgs,
    dog: &Watchdog,
) -> Result<(), Failure> {
    let text = qkv_wgpu::io::read_small_text(path, KERNEL_CAP, "the kernel")?;
    let label = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    );
    let kernel = CustomKernel::parse(&label, &text).map_err(Error::Input)?;
    outln!("{}", qkv_wgpu::records::custom_kernel_line(&kernel));
    let limits = ctx.limits();
    kernel.check_limits(&limits).map_err(Error::Input)?;
    let cases = cases(kernel.tile, &kernel.elements, &limits)?;
    outln!("{}", qkv_wgpu::records::CASES_LINE);
    let timeout = std::time::Duration::from_secs(args.timeout);
    let mut results = Vec::new();
    for case in cases {
        let spec = kernel.spec(case.element).map_err(Error::Input)?;
        if let Some(why) = spec.unsupported_on(&ctx.summary) {
            return Err(Error::Input(why).into());
        }
        let what = format!("the check '{}' in {}", case.name, case.element);
        dog.arm(what, timeout);
        let result = run_case_blocking(ctx, &spec, &case, args.seed);
        dog.disarm();
        let result = result?;
        outln!("{}", case_line(&result));
        results.push(result);
    }
    if results.iter().all(|r| r.pass) {
        return time_beside(ctx, &kernel, args, dog);
    }
    for line in failure_report(&results) {
        outln!("{line}");
    }
    let failed: Vec<&CaseResult> = results.iter().filter(|r| !r.pass).collect();
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
        map_destination(map, path, args.force)?;
        qkv_wgpu::io::commit::write_file(map, svg.as_bytes(), true)?;
        outln!("map of the wrong elements: {}", map.display());
    }
    Err(Failure::Validation)
}

/// `--against`: `none`, or a comma-separated list of `auto` and configurations (commas
/// inside a configuration's parentheses belong to it).
fn against(list: &str) -> Result<Vec<KernelChoice>, Error> {
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

/// Times the kernel (each `--dtype`) and the `--against` kernels on the named shape, each
/// step of the kernel's own (making its projector, each run, the back-to-back dispatches)
/// under `dog`; the built-in kernels are the project's own and end.
fn time_beside(
    ctx: &qkv_wgpu::GpuContext,
    kernel: &CustomKernel,
    args: &TryArgs,
    dog: &Watchdog,
) -> Result<(), Failure> {
    let p = preset(args.shape.trim()).map_err(Error::Input)?;
    let shape = QkvShape::new(args.tokens, p.d_model, p.q_width, p.kv_width, p.bias)?;
    let w = random_weights(&shape, args.seed);
    // With --weight-type: the blocks for the built-in kernels, their values for the user's.
    let stored = args.weight_type.map(|t| w.stored_as(t)).transpose()?;
    let values = stored.as_ref().map(|s| s.dequantized());
    let (peak, _) = qkv_wgpu::peak::cached(&ctx.summary, None);
    let job = BenchJob {
        name: p.name,
        shape: &shape,
        weights: values.as_ref().unwrap_or(&w),
        seed: args.seed,
        cpu: None,
        peak: peak.as_ref(),
    };
    let built_in_job = BenchJob {
        weights: stored.as_ref().unwrap_or(&w),
        ..job
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
            let formats = args
                .weight_type
                .and_then(|t| qkv_wgpu::quant::WeightType::stored_formats(t, e));
            let resolved = resolve_kernels(ctx, &shape, list, false, (e, formats))?;
            specs.extend(resolved.into_iter().map(|s| s.0));
        }
    }
    progress(&format!(
        "timing on {} x {} tokens: each checked again, then back-to-back dispatches",
        p.name, shape.tokens
    ));
    let mut rows: Vec<BenchRow> = Vec::new();
    let timeout = std::time::Duration::from_secs(args.timeout);
    for spec in specs {
        if spec.custom.is_none() {
            let job = match spec.w_formats {
                Some(_) => &built_in_job,
                None => &job,
            };
            rows.push(bench_row(ctx, spec, job, &opts, |_| {})?.0);
            continue;
        }
        let on = format!("{} on {} x {} tokens", kernel.label, p.name, shape.tokens);
        dog.arm(format!("preparing {on} for timing"), timeout);
        let mut step = String::new();
        let row = bench_row(ctx, spec, &job, &opts, |progress| match progress {
            Progress::Run { index, of } => {
                step = format!("run {} of {of} of {on}", index + 1);
                dog.arm(step.clone(), timeout);
            }
            // A chunk done: the next one gets its time.
            Progress::Tokens(_) => dog.arm(step.clone(), timeout),
            // The host's check of the results: not the kernel's time.
            Progress::Checking => dog.disarm(),
            // --repeats dispatches after at most 3 warm-ups (none on a CPU driver).
            Progress::TimingKernel => dog.arm(
                format!("the back-to-back timing of {on}"),
                timeout * (args.repeats + 3),
            ),
        });
        dog.disarm();
        rows.push(row?.0);
    }
    crate::bench::print_table(&rows, peak.is_some());
    if rows.iter().all(|r| r.pass) {
        Ok(())
    } else {
        Err(Failure::Validation)
    }
}
