//! `qkv project` over shards of X: the weights loaded and uploaded once, each shard projected
//! into `OUT/<name>/` and committed with its manifest, all or nothing; a rerun skips the
//! shards whose manifest still vouches for their outputs (`qkv_wgpu::io::shards`), and
//! refuses, before any GPU work, to replace outputs it cannot vouch for unless `--force`.

use super::load::{load, Loaded};
use super::{project_file, Bar, FileRun, ProjectArgs, Session};
use crate::args::GpuArgs;
use crate::exit::{Failure, INPUT, VALIDATION};
use crate::stdout::outln;
use qkv_wgpu::io::commit::OutputDir;
use qkv_wgpu::io::npy::NpyRows;
use qkv_wgpu::io::project::Seal;
use qkv_wgpu::io::shards::{self, shard_name, FileDigest, Manifest, ShardState, MANIFEST};
use qkv_wgpu::{Error, GpuContext};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What became of a shard in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum State {
    Projected,
    /// Its outputs were complete.
    Skipped,
    Failed,
}

/// One shard in the report.
#[derive(Debug, Serialize)]
struct ShardReport {
    /// Its place in the list given (the report's order).
    #[serde(skip)]
    index: usize,
    name: String,
    input: String,
    tokens: u32,
    state: State,
    /// Why it failed.
    error: Option<String>,
    /// Its projection's result, as `qkv project` of one file reports it.
    result: Option<super::report::ProjectResult>,
    /// The adapter that projected it ("name (backend)"); null where skipped.
    adapter: Option<String>,
    /// Seconds its adapter spent on it, reading and writing included.
    busy_s: f64,
    /// A failure's exit code (1: its check failed, or it overflowed; else the error's).
    #[serde(skip)]
    code: u8,
}

/// What one adapter did in the run.
#[derive(Debug, Serialize)]
struct AdapterShare {
    /// "name (backend)".
    adapter: String,
    shards: usize,
    failed: usize,
    tokens: u64,
    busy_s: f64,
}

/// The whole run's report.
#[derive(Debug, Serialize)]
struct ShardsReport {
    out: String,
    shards: Vec<ShardReport>,
    /// Each adapter's share of the shards projected this run.
    adapters: Vec<AdapterShare>,
    projected: usize,
    skipped: usize,
    failed: usize,
    /// Tokens of the shards projected this run.
    tokens: u64,
    wall_s: f64,
    /// Tokens projected per second of wall time (reading, projecting, checking, writing).
    tokens_per_s: f64,
}

/// The job's key in every manifest ([`shards::job_key`]): the weights as uploaded and the
/// settings that change the outputs.
fn job_key(
    args: &ProjectArgs,
    l: &Loaded,
    epilogue: &super::epilogue::Settings,
) -> Result<String, Error> {
    let heads = match args.head_layout {
        super::HeadLayoutArg::Tokens => None,
        // None is refused with the first shard's split, as for one file.
        super::HeadLayoutArg::Heads => super::requested_heads(args, (l, epilogue)),
    };
    let epilogue = epilogue.as_ref().map(|(ep, h)| (ep, h));
    shards::job_key(
        &l.loaded.weights,
        l.element,
        heads,
        epilogue,
        args.out_format,
    )
}

/// A shard to project: its input, its outputs' directory, its tokens.
struct Todo {
    /// Its place in the list given.
    index: usize,
    input: PathBuf,
    name: String,
    dir: PathBuf,
    tokens: u32,
}

/// Every shard's header, refused unless all have one d_model (before the weights are read
/// or any GPU work): that d_model, and each shard's tokens.
fn headers(list: &[PathBuf]) -> Result<(u32, Vec<u32>), Failure> {
    let mut dims = Vec::new();
    for p in list {
        dims.push(NpyRows::open(p)?.x_dims()?);
    }
    let d_model = dims[0].d_model;
    if let Some((p, d)) = list.iter().zip(&dims).find(|(_, d)| d.d_model != d_model) {
        return Err(Error::Input(format!(
            "shard {} has {} columns, {} has {d_model}: every shard is X of one d_model",
            p.display(),
            d.d_model,
            list[0].display()
        ))
        .into());
    }
    Ok((d_model, dims.iter().map(|d| d.tokens).collect()))
}

/// Where each shard stands in `root` for `job`: those to project, and the reports of those
/// skipped; refused where outputs are there that this run cannot vouch for, without
/// --force.
fn sort_shards(
    args: &ProjectArgs,
    root: &OutputDir,
    job: &str,
    (list, tokens): (&[PathBuf], &[u32]),
) -> Result<(Vec<Todo>, Vec<ShardReport>), Failure> {
    let names = args.out_format.files();
    let (mut todo, mut skipped, mut stale) = (Vec::new(), Vec::new(), Vec::new());
    for (index, (p, &tokens)) in list.iter().zip(tokens).enumerate() {
        let name = shard_name(p)?;
        let dir = root.path().join(&name);
        match Manifest::state(&dir, p, job, names)? {
            ShardState::Done => skipped.push(ShardReport {
                index,
                name,
                input: p.display().to_string(),
                tokens,
                state: State::Skipped,
                error: None,
                result: None,
                adapter: None,
                busy_s: 0.0,
                code: 0,
            }),
            ShardState::Stale(why) if !args.force => stale.push(format!("{name}: {why}")),
            _ => todo.push(Todo {
                index,
                input: p.to_path_buf(),
                name,
                dir,
                tokens,
            }),
        }
    }
    if !stale.is_empty() {
        return Err(Error::Input(format!(
            "{} shard(s) hold outputs this run cannot vouch for, so they were left as they \
             are and nothing was projected ({}); pass --force to project them again",
            stale.len(),
            stale.join("; ")
        ))
        .into());
    }
    Ok((todo, skipped))
}

pub(super) fn project_shards(
    gpu: &GpuArgs,
    args: &ProjectArgs,
    list: &[PathBuf],
) -> Result<(), Failure> {
    let started = Instant::now();
    let (d_model, tokens) = headers(list)?;
    let loaded = load(args, d_model)?;
    let contexts = match &args.adapters {
        Some(spec) => gpu.contexts(spec)?,
        None => vec![gpu.context()?],
    };
    let epilogue = super::epilogue::settings(args, &loaded)?;
    let job = job_key(args, &loaded, &epilogue)?;
    // One sharded run per output directory at a time: the root's lock is held to the end.
    let root = OutputDir::open(&args.out)?;
    let (todo, mut reports) = sort_shards(args, &root, &job, (list, &tokens))?;
    let total: u64 = todo.iter().map(|t| t.tokens as u64).sum();
    let bar = shards_bar(total, todo.len(), reports.len(), !args.json);
    let session = (&loaded, &contexts[..], &epilogue);
    reports.extend(run_workers(args, session, (&todo, &job), &bar));
    bar.finish_and_clear();
    let adapters = shares(&contexts, &reports);
    reports.sort_by_key(|r| r.index);
    let tokens = reports
        .iter()
        .filter(|r| r.state == State::Projected)
        .map(|r| r.tokens as u64)
        .sum();
    let wall_s = started.elapsed().as_secs_f64();
    let count = |s: State| reports.iter().filter(|r| r.state == s).count();
    let report = ShardsReport {
        out: args.out.display().to_string(),
        projected: count(State::Projected),
        skipped: count(State::Skipped),
        failed: count(State::Failed),
        tokens,
        wall_s,
        tokens_per_s: tokens as f64 / wall_s,
        adapters,
        shards: reports,
    };
    if args.json {
        outln!(
            "{}",
            serde_json::to_string(&report).expect("results serialize")
        );
    } else {
        print_shards(&report);
    }
    // A failed check (or an overflow) decides the exit, as for one file; else the first
    // shard's error.
    let codes = report.shards.iter().map(|r| r.code).filter(|&c| c != 0);
    match codes.min_by_key(|&c| c != crate::exit::VALIDATION) {
        None => Ok(()),
        Some(crate::exit::VALIDATION) => Err(Failure::Validation),
        Some(code) => Err(Failure::Reported(
            code,
            format!(
                "{} of {} shard(s) failed, and were not written (above)",
                report.failed,
                report.shards.len()
            ),
        )),
    }
}

/// The shards to project, taken from one queue by one worker per context (an adapter
/// each, its own projector, the weights shared): their reports, in the order they finished.
fn run_workers(
    args: &ProjectArgs,
    (loaded, contexts, epilogue): (&Loaded, &[GpuContext], &super::epilogue::Settings),
    (todo, job): (&[Todo], &str),
    bar: &indicatif::ProgressBar,
) -> Vec<ShardReport> {
    let next = AtomicUsize::new(0);
    let reports = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for ctx in contexts {
            let (next, reports) = (&next, &reports);
            scope.spawn(move || {
                let session = Session {
                    loaded,
                    ctx,
                    epilogue: epilogue.clone(),
                };
                let adapter = format!("{} ({})", ctx.summary.name, ctx.summary.backend);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(t) = todo.get(i) else {
                        break;
                    };
                    bar.set_message(format!("shard {}/{} {}", i + 1, todo.len(), t.name));
                    let started = Instant::now();
                    let mut r = project_shard(&session, args, t, job, Bar::Shared(bar));
                    r.adapter = Some(adapter.clone());
                    r.busy_s = started.elapsed().as_secs_f64();
                    reports.lock().unwrap_or_else(|p| p.into_inner()).push(r);
                }
            });
        }
    });
    reports.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// What each adapter did: its shards, their tokens, and its busy time.
fn shares(contexts: &[GpuContext], reports: &[ShardReport]) -> Vec<AdapterShare> {
    contexts
        .iter()
        .map(|c| {
            let adapter = format!("{} ({})", c.summary.name, c.summary.backend);
            let mine: Vec<&ShardReport> = reports
                .iter()
                .filter(|r| r.adapter.as_deref() == Some(adapter.as_str()))
                .collect();
            AdapterShare {
                shards: mine.len(),
                failed: mine.iter().filter(|r| r.state == State::Failed).count(),
                tokens: mine.iter().map(|r| r.tokens as u64).sum(),
                busy_s: mine.iter().map(|r| r.busy_s).sum(),
                adapter,
            }
        })
        .collect()
}

/// The run's bar over the tokens of every shard to project (hidden when stderr is not a
/// terminal, or with --json).
fn shards_bar(tokens: u64, shards: usize, skipped: usize, show: bool) -> indicatif::ProgressBar {
    if !show || shards == 0 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(tokens);
    let skipped = if skipped > 0 {
        format!(" ({skipped} done before)")
    } else {
        String::new()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{msg}}{skipped}: {{bar:30}} {{pos}}/{{len}} tokens, {{per_sec}}, ~{{eta}} left"
        ))
        .expect("valid template"),
    );
    bar
}

/// One shard projected into its directory, with its manifest; a failure is the shard's,
/// reported, not the run's.
fn project_shard(
    session: &Session,
    args: &ProjectArgs,
    t: &Todo,
    job: &str,
    bar: Bar<'_>,
) -> ShardReport {
    let run = || -> Result<FileRun, Failure> {
        let digest = FileDigest::of(&t.input)?;
        let seal = Seal {
            job: job.to_string(),
            input: t.input.clone(),
            digest,
        };
        let x = NpyRows::open(&t.input)?;
        project_file(session, args, (&t.input, x), &t.dir, Some(&seal), bar)
    };
    let (state, error, result, code) = match run() {
        Ok(r) => match r.outcome.why_not_written() {
            None => (State::Projected, None, Some(r.result), 0),
            Some((check, why)) => {
                let code = if check { VALIDATION } else { INPUT };
                let why = crate::args::flags(&why);
                (State::Failed, Some(why), Some(r.result), code)
            }
        },
        Err(f) => {
            let (why, code) = match f {
                Failure::Validation => ("validation failed".to_string(), VALIDATION),
                Failure::Error(e) => (
                    crate::args::flags(&e.to_string()),
                    crate::exit::exit_code(&e),
                ),
                Failure::Reported(code, line) => (line, code),
            };
            (State::Failed, Some(why), None, code)
        }
    };
    ShardReport {
        index: t.index,
        name: t.name.clone(),
        input: t.input.display().to_string(),
        tokens: t.tokens,
        state,
        error,
        result,
        adapter: None,
        busy_s: 0.0,
        code,
    }
}

fn print_shards(r: &ShardsReport) {
    for s in &r.shards {
        let line = match (&s.result, s.state) {
            (Some(p), State::Projected) => format!(
                "{:>8} tokens  {:>9.1} ms ({:.0} tokens/s)  {}  -> {}",
                s.tokens,
                p.gpu_total_ms,
                p.tokens_per_s,
                match p.pass {
                    Some(true) => "PASS",
                    Some(false) => "FAIL",
                    None => "unchecked",
                },
                Path::new(&r.out).join(&s.name).display()
            ),
            (_, State::Skipped) => format!(
                "{:>8} tokens  skipped: its outputs are complete (its {MANIFEST})",
                s.tokens
            ),
            _ => format!(
                "{:>8} tokens  FAILED, nothing written: {}",
                s.tokens,
                s.error.as_deref().unwrap_or("")
            ),
        };
        let on = match (&s.adapter, r.adapters.len() > 1) {
            (Some(a), true) => format!("  on {a}"),
            _ => String::new(),
        };
        outln!("shard {:<12} {line}{on}", s.name);
    }
    if r.adapters.len() > 1 {
        for a in &r.adapters {
            outln!(
                "adapter   {}: {} shard(s) ({} failed), {} tokens, {:.2} s busy",
                a.adapter,
                a.shards,
                a.failed,
                a.tokens,
                a.busy_s
            );
        }
    }
    outln!(
        "total     {} shard(s): {} projected, {} skipped (done before), {} failed; {} tokens \
         in {:.2} s, {:.0} tokens/s end to end",
        r.shards.len(),
        r.projected,
        r.skipped,
        r.failed,
        r.tokens,
        r.wall_s,
        r.tokens_per_s
    );
}
