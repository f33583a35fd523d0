//! Autotuning: for an (adapter, driver, shape class), try every kernel configuration the
//! adapter can run on a small proxy of the shape, validate each against the reference, keep
//! the fastest, and cache the choice in the user's cache directory. A cached choice is used
//! only after it has been re-checked: it must still parse, name a variant the adapter can run,
//! come from the same shader source, and validate on fresh inputs; otherwise it is discarded
//! and the shape class is tuned again.
//!
//! Barriers and workgroup memory are cheap on a GPU and costly on a CPU driver such as
//! lavapipe, so no single kernel is the best everywhere: that is what this is for.

#[cfg(feature = "native")]
pub mod cache;
pub mod choice;

use crate::context::GpuContext;
use crate::element::ElementType;
use crate::error::{Error, Result};
use crate::host::Elements;
use crate::kernels::{KernelConfig, KernelSpec, SweepTarget};
use crate::layout::OutputLayout;
use crate::measure::{validate_then_time_async, CheckRows, MeasureOptions, XSource};
use crate::plan::{check_fits, ChunkOptions, ChunkPlan};
use crate::projector::Projector;
use crate::quant::WeightType;
use crate::reference::{reference, Reference};
use crate::shape::QkvShape;
use crate::validate::{Tolerance, ToleranceOverrides};
use crate::weights::{random_inputs, FusedWeights};
#[cfg(feature = "native")]
use cache::Cache;
pub use choice::{KernelChoice, Resolved};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The runner-up's time over the winner's `best`, among the candidates that validated.
fn margin(trials: &[Trial], best: Duration) -> Option<f64> {
    let best = best.as_secs_f64() * 1e3;
    let mut times: Vec<f64> = trials.iter().filter_map(|t| t.ms).collect();
    times.sort_by(f64::total_cmp);
    // The winner's own time once, then the fastest of the rest (a tie is a margin of 0).
    let at = times.iter().position(|&t| t == best)?;
    times.remove(at);
    times.first().map(|&second| second / best)
}

/// One shape class's choice, as the cache keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// The configuration, as `KernelConfig` displays it.
    pub config: String,
    /// FNV-1a of the kernel's WGSL when it was tuned.
    pub shader_hash: String,
    /// The proxy shape it was timed on.
    pub proxy: String,
    /// Every candidate's result.
    pub trials: Vec<Trial>,
    /// The runner-up's time over the winner's (1.05: it won by 5%); absent in entries of
    /// older versions.
    #[serde(default)]
    pub margin: Option<f64>,
}

impl Entry {
    /// The winner's time on the proxy when it was tuned, in ms.
    pub fn winner_ms(&self) -> Option<f64> {
        self.trials
            .iter()
            .find(|t| t.config == self.config)
            .and_then(|t| t.ms)
    }
}

/// A re-check that runs the cached winner at under 1/this of its tuned time finds the
/// tuning run was slowed by other work on the machine (a busy CPU driver, a GPU shared with
/// another job): its comparisons are not trusted and the class is tuned again.
pub const BUSY_TUNING_FACTOR: f64 = 2.0;

/// A build without files (the browser's) has no cache: this type has no values, so the
/// code that uses a cache is the same in every build and every session there tunes anew.
#[cfg(not(feature = "native"))]
enum Cache {}

#[cfg(not(feature = "native"))]
impl Cache {
    fn path(&self) -> &std::path::Path {
        match *self {}
    }
    fn load(&self) -> (std::collections::BTreeMap<String, Entry>, Vec<String>) {
        match *self {}
    }
    fn store(&self, _: &str, _: Entry) -> std::result::Result<Vec<String>, String> {
        match *self {}
    }
}

/// What to say when no cache will keep the choice.
const NO_CACHE: &str = if cfg!(feature = "native") {
    "no cache directory is known (set QKV_CACHE_DIR): the next run will tune again"
} else {
    "this build keeps no tuning cache (it has no files): the next session will tune again"
};

/// Every configuration worth trying on this adapter in storage type `element`, in the order
/// the variants' sweeps give ([`crate::kernels::sweep`]: likely-fast variants first, so that
/// once one has set a best time a candidate over 4x slower is measured once instead of four
/// times), those the adapter cannot run left out. The naive baseline is not among them: it
/// exists to be beaten.
/// With W kept in `weights`' formats, only the variants that read them
/// ([`KernelSpec::with_w_formats`]).
pub fn candidates(
    ctx: &GpuContext,
    element: ElementType,
    weights: Option<[WeightType; 3]>,
) -> Vec<KernelConfig> {
    let target = SweepTarget {
        summary: &ctx.summary,
        on_cpu: ctx.is_cpu(),
        element,
    };
    let max_wg = ctx.limits().max_compute_invocations_per_workgroup;
    crate::kernels::sweep(&target)
        .into_iter()
        .filter(|&c| {
            spec_for(c, element, weights, &ctx.summary)
                .is_ok_and(|s| s.workgroup_invocations(&ctx.summary) <= max_wg)
        })
        .collect()
}

/// `config` resolved for a run in `element` on `summary`'s adapter
/// ([`KernelSpec::resolve`]), reading W in `weights`' formats where given
/// ([`KernelSpec::with_w_formats`]).
pub fn spec_for(
    config: KernelConfig,
    element: ElementType,
    weights: Option<[WeightType; 3]>,
    summary: &crate::adapter::AdapterSummary,
) -> std::result::Result<KernelSpec, String> {
    let spec = KernelSpec::resolve(config, element, summary)?;
    match weights {
        Some(f) => spec.with_w_formats(f),
        None => Ok(spec),
    }
}

pub use crate::kernels::coopmat_blocks;

/// How to tune.
#[derive(Debug, Clone, Default)]
pub struct TuneOptions {
    /// Ignore the cache and tune again (`--tune`).
    pub force: bool,
    /// Where the cache lives; default `QKV_CACHE_DIR`, else the user's cache directory.
    /// A build without the `native` feature (the browser's) has no files and keeps no cache:
    /// the choice's notes say so.
    pub cache_dir: Option<PathBuf>,
    /// The tolerance every candidate must pass; default: each candidate's own
    /// ([`Tolerance::for_kernel`]: its accumulation, then the rounding to the storage type).
    pub tolerance: Option<Tolerance>,
    /// The storage type to tune for (each type is its own cache entry).
    pub element: ElementType,
    /// Wq's, Wk's and Wv's formats where W is kept in them (`--weight-type`, a GGUF
    /// checkpoint): only kernels that read them are candidates, and each set of formats is
    /// its own cache entry.
    pub weights: Option<[WeightType; 3]>,
}

/// One candidate's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Trial {
    /// The configuration, as `KernelConfig` displays it.
    pub config: String,
    /// Its median kernel time on the proxy shape, when it ran and validated.
    pub ms: Option<f64>,
    /// "ok", or why it was rejected.
    pub status: String,
}

/// What the tuner chose and why.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The configuration to run (`spec.config`).
    pub config: KernelConfig,
    /// It resolved for the storage type and adapter it was validated on: run it as it is.
    pub spec: KernelSpec,
    /// Why: tuned now, or taken from the cache (and what was discarded on the way).
    pub reason: String,
    /// The trials of the tuning run that chose it.
    pub trials: Vec<Trial>,
    /// What the report must mention: a cache that could not be read or written, an entry
    /// dropped, a file set aside.
    pub notes: Vec<String>,
}

#[cfg(not(feature = "native"))]
fn cache(_: &TuneOptions) -> Option<Cache> {
    None
}

#[cfg(feature = "native")]
fn cache(opts: &TuneOptions) -> Option<Cache> {
    Some(Cache::at(
        cache_dir(opts.cache_dir.clone())?.join("tuning.json"),
    ))
}

/// The directory of the tuning and peak caches: `explicit`, else `QKV_CACHE_DIR` (an empty
/// value counts as unset, never as the current directory), else the user's cache directory's
/// `qkv-wgpu`; None where none is known.
#[cfg(feature = "native")]
pub fn cache_dir(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit
        .filter(|d| !d.as_os_str().is_empty())
        .or_else(|| {
            std::env::var_os("QKV_CACHE_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| dirs::cache_dir().map(|d| d.join("qkv-wgpu")))
}

/// Shapes whose tokens, d_model and n_out fall in the same power-of-two buckets tune alike.
fn bucket(v: u32) -> u32 {
    v.max(1).next_power_of_two()
}

/// The cache key: adapter, backend, driver, shape class and storage type (f32 keys carry no
/// type, as they did before there were others). Token counts at or above the proxy's share
/// one class: tuning runs on the proxy, so they would tune identically.
pub fn shape_class_key(
    ctx: &GpuContext,
    shape: &QkvShape,
    element: ElementType,
    weights: Option<[WeightType; 3]>,
) -> String {
    let s = &ctx.summary;
    format!(
        "{} | {} | {} | tokens<={} d_model<={} n_out<={}{}{}",
        s.name,
        s.backend,
        s.driver,
        bucket(proxy(ctx, shape).tokens),
        bucket(shape.d_model),
        bucket(shape.n_out()),
        if element.is_half() {
            format!(" | {element}")
        } else {
            String::new()
        },
        weights.map_or(String::new(), |w| format!(
            " | w {}",
            w.map(|t| t.name()).join(",")
        ))
    )
}

/// The shape candidates are timed on: the class's widths with fewer tokens. On a CPU driver,
/// 32 to 128 tokens and about 0.5 GFLOP, so the slowest candidate stays near seconds
/// (Llama-3-8B's 4096 x 6144 gets 32 tokens; GPT-2's 768 x 2304 gets 128). Never fewer than
/// 32, the most rows one workgroup computes there: on 8 tokens a 32-row kernel would be timed
/// doing 4x the useful work and lose to one that is slower on the real shape. On a GPU, about
/// 32 GFLOP and up to 8192 tokens (Llama-3-8B gets 632, GPT-2 8192): a proxy must have
/// enough workgroups to fill every compute unit, or a kernel with small tiles wins tuning and
/// loses on the real batch (on an H100, 128 GPT-2 tokens picked a kernel 5x slower at 4096).
fn proxy(ctx: &GpuContext, shape: &QkvShape) -> QkvShape {
    let per_token = 2.0 * shape.d_model as f64 * shape.n_out() as f64;
    let (flop, max) = if ctx.is_cpu() {
        (0.5e9, 128)
    } else {
        (32e9, 8192)
    };
    let budget = ((flop / per_token) as u32 / 8 * 8).clamp(32, max);
    QkvShape {
        tokens: shape.tokens.min(budget),
        ..*shape
    }
}

/// FNV-1a of the WGSL, so an entry tuned for an older shader is not trusted.
fn shader_hash(spec: &KernelSpec) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in spec.source.wgsl.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Seeded inputs of a proxy shape and their reference (from the inputs rounded to the
/// storage type, as the GPU reads them), made once and shared by every candidate (the f64
/// reference of a GPU-sized proxy takes seconds).
struct Inputs {
    shape: QkvShape,
    x: Vec<f32>,
    w: FusedWeights,
    expected: Reference,
    /// The user's tolerance, else each kernel's own.
    tol: ToleranceOverrides,
}

impl Inputs {
    fn new(
        shape: &QkvShape,
        seed: u64,
        tol: Option<Tolerance>,
        opts: &TuneOptions,
    ) -> Result<Self> {
        let (mut x, w) = random_inputs(shape, seed);
        let w = match opts.weights {
            Some(types) => w.stored_as(types)?,
            None => w,
        };
        opts.element.round_slice(&mut x);
        let w = w.rounded(opts.element);
        let expected = reference(shape, &x, &w);
        let tol = tol.map(ToleranceOverrides::all).unwrap_or_default();
        Ok(Inputs {
            shape: *shape,
            x,
            w,
            expected,
            tol,
        })
    }
}

/// Runs `config` on `inputs` once and validates the result; if it passes, times `repeats`
/// back-to-back dispatches at steady state ([`Projector::time_kernel`]) and returns their
/// median.
async fn trial(
    ctx: &GpuContext,
    inputs: &Inputs,
    spec: &KernelSpec,
    repeats: u32,
) -> Result<std::result::Result<Duration, String>> {
    let shape = &inputs.shape;
    let plan = ChunkPlan::new(
        &ctx.limits(),
        shape,
        spec,
        OutputLayout::Tokens,
        &ChunkOptions::default(),
    )?;
    let mut projector = Projector::from_plan(ctx, spec.clone(), plan)?;
    projector.set_weights(&inputs.w)?;
    let opts = MeasureOptions {
        runs: 0,
        kernel_repeats: repeats,
        check: CheckRows::All,
        tolerance: inputs.tol,
        expected: Some(&inputs.expected),
        precision_cost: false,
        quantized_from: None,
        stop_at_failure: true,
        cancel: None,
    };
    let m = validate_then_time_async(
        &mut projector,
        &inputs.w,
        XSource::Given(Elements::F32(&inputs.x)),
        &opts,
        |_| {},
    )
    .await?;
    match m.kernel {
        Some(times) => Ok(Ok(times.median())),
        None => Ok(Err(format!(
            "failed validation: {} mismatches, max abs err {:.3e}",
            m.report.q.mismatches + m.report.k.mismatches + m.report.v.mismatches,
            m.report.max_abs_err()
        ))),
    }
}

/// Why a cached entry cannot be used, or None when it checks out.
async fn recheck(
    ctx: &GpuContext,
    shape: &QkvShape,
    entry: &Entry,
    opts: &TuneOptions,
) -> Result<std::result::Result<KernelSpec, String>> {
    let (tol, element) = (opts.tolerance, opts.element);
    let config: KernelConfig = match entry.config.parse() {
        Ok(c) => c,
        Err(e) => return Ok(Err(format!("it names no usable configuration ({e})"))),
    };
    let spec = match spec_for(config, element, opts.weights, &ctx.summary) {
        Ok(s) => s,
        Err(why) if KernelSpec::new(config).is_err() => {
            return Ok(Err(format!("it names no usable configuration ({why})")))
        }
        Err(why) => return Ok(Err(why)),
    };
    if let Err(e) = check_fits(&ctx.limits(), shape, &spec) {
        return Ok(Err(format!("it does not fit this shape: {e}")));
    }
    if entry.shader_hash != shader_hash(&spec) {
        return Ok(Err(format!(
            "{} changed since it was tuned",
            spec.source.file
        )));
    }
    let inputs = Inputs::new(&proxy(ctx, shape), 0x5eed_cafe, tol, opts)?;
    let now = match trial(ctx, &inputs, &spec, 1).await? {
        Ok(t) => t.as_secs_f64() * 1e3,
        Err(why) => return Ok(Err(why)),
    };
    // Timed far faster now than when it was tuned: that tuning ran on a busier machine, and
    // its comparisons between candidates are not to be trusted.
    if let Some(then) = entry.winner_ms() {
        if now * BUSY_TUNING_FACTOR < then {
            return Ok(Err(format!(
                "it runs {:.1}x faster now ({now:.3} ms) than when it was tuned ({then:.3} ms): \
                 that tuning ran while the machine was busy",
                then / now
            )));
        }
    }
    Ok(Ok(spec))
}

/// Tries every candidate on the proxy `p` of `shape`: compiled, validated and timed once;
/// then, unless it was already over 4x the best so far (its figure then stands alone),
/// validated on other inputs and timed three times. Returns every trial and the fastest.
async fn try_candidates(
    ctx: &GpuContext,
    shape: &QkvShape,
    p: &QkvShape,
    opts: &TuneOptions,
    progress: &mut impl FnMut(&str),
) -> Result<(Vec<Trial>, Option<(Duration, KernelSpec)>)> {
    let element = opts.element;
    let first_inputs = Inputs::new(p, 1, opts.tolerance, opts)?;
    let mut timed_inputs = None;
    let mut trials = Vec::new();
    let mut best: Option<(Duration, KernelSpec)> = None;
    let limits = ctx.limits();
    let configs = candidates(ctx, element, opts.weights);
    let count = configs.len();
    for (i, config) in configs.into_iter().enumerate() {
        progress(&format!("{}/{count} {config}", i + 1));
        // The sweep holds only configurations this adapter runs in `element`.
        let spec = spec_for(config, element, opts.weights, &ctx.summary).map_err(Error::Input)?;
        // Tuning runs on the proxy; a configuration that cannot hold the real shape (a
        // texture past the device's texture size, say) is not a candidate for it.
        if let Err(e) = check_fits(&limits, shape, &spec) {
            trials.push(Trial {
                config: config.to_string(),
                ms: None,
                status: format!("does not fit this shape: {e}"),
            });
            continue;
        }
        // Compile, validate and time once; then validate on other inputs and time three
        // dispatches, unless the first was already over 4x the best so far (its figure then
        // stands alone).
        let first = trial(ctx, &first_inputs, &spec, 1).await;
        let result = match first {
            Ok(Ok(t)) if best.as_ref().is_some_and(|(b, _)| t > 4 * *b) => {
                Ok(Ok((t, "ok (one run: over 4x the best so far)")))
            }
            Ok(Ok(_)) => {
                if timed_inputs.is_none() {
                    timed_inputs = Some(Inputs::new(p, 2, opts.tolerance, opts)?);
                }
                let inputs = timed_inputs.as_ref().expect("made above");
                trial(ctx, inputs, &spec, 3)
                    .await
                    .map(|r| r.map(|t| (t, "ok")))
            }
            Ok(Err(e)) => Ok(Err(e)),
            Err(e) => Err(e),
        };
        let (ms, status) = match result {
            Ok(Ok((t, status))) => {
                if best.as_ref().is_none_or(|(b, _)| t < *b) {
                    best = Some((t, spec));
                }
                (Some(t.as_secs_f64() * 1e3), status.to_string())
            }
            Ok(Err(why)) => (None, why),
            // A configuration the device rejects (too large a workgroup, say) is skipped.
            Err(e) => (None, format!("could not run: {e}")),
        };
        trials.push(Trial {
            config: config.to_string(),
            ms,
            status,
        });
    }
    Ok((trials, best))
}

/// Why the tuner chose what it chose now: the candidates, the proxy, the winning margin.
fn tuned_reason(
    trials: &[Trial],
    p: &QkvShape,
    margin: Option<f64>,
    force: bool,
    discarded: Option<String>,
) -> String {
    let mut reason = format!(
        "autotuned now: fastest of {} validated candidates on {} tokens x d_model {} x n_out {}",
        trials.iter().filter(|t| t.ms.is_some()).count(),
        p.tokens,
        p.d_model,
        p.n_out()
    );
    if let Some(m) = margin {
        reason.push_str(&format!(
            "; it won by {:.0}%{}",
            100.0 * (m - 1.0),
            if m < 1.05 {
                " (a close call: another configuration is about as fast)"
            } else {
                ""
            }
        ));
    }
    if force {
        reason.push_str(" (--tune)");
    }
    if let Some(d) = discarded {
        reason.push_str(&format!("; the cached choice was discarded: {d}"));
    }
    reason
}

/// The configuration to run `shape` with on this context: from the cache when a re-checked
/// entry exists, else tuned now (and cached).
#[cfg(not(target_arch = "wasm32"))]
pub fn choose(ctx: &GpuContext, shape: &QkvShape, opts: &TuneOptions) -> Result<Choice> {
    pollster::block_on(choose_async(ctx, shape, opts, |_| {}))
}

/// As [`choose`], as a future; `progress` hears of each candidate as it is tried
/// ("3/18 texture(wg=16)").
pub async fn choose_async(
    ctx: &GpuContext,
    shape: &QkvShape,
    opts: &TuneOptions,
    mut progress: impl FnMut(&str),
) -> Result<Choice> {
    let cache = cache(opts);
    let element = opts.element;
    let key = shape_class_key(ctx, shape, element, opts.weights);
    let (entries, mut notes) = cache.as_ref().map(Cache::load).unwrap_or_default();
    let mut discarded = None;
    if !opts.force {
        if let Some(entry) = entries.get(&key) {
            match recheck(ctx, shape, entry, opts).await? {
                Ok(spec) => {
                    return Ok(Choice {
                        config: spec.config,
                        spec,
                        reason: format!(
                            "autotuned earlier for this adapter and shape class, re-validated \
                             now (cache: {})",
                            cache
                                .as_ref()
                                .map_or("none".into(), |c| c.path().display().to_string())
                        ),
                        trials: entry.trials.clone(),
                        notes,
                    })
                }
                Err(why) => discarded = Some(format!("{}: {why}", entry.config)),
            }
        }
    }

    let p = proxy(ctx, shape);
    let (trials, best) = try_candidates(ctx, shape, &p, opts, &mut progress).await?;
    let Some((best_time, spec)) = best else {
        return Err(Error::Input(format!(
            "no kernel configuration ran and validated on this adapter: {}{}",
            trials
                .iter()
                .map(|t| format!("{}: {}", t.config, t.status))
                .collect::<Vec<_>>()
                .join("; "),
            discarded
                .map(|d| format!("; the cached choice was discarded: {d}"))
                .unwrap_or_default()
        )));
    };
    let entry = Entry {
        config: spec.to_string(),
        shader_hash: shader_hash(&spec),
        proxy: format!(
            "tokens {}, d_model {}, n_out {}",
            p.tokens,
            p.d_model,
            p.n_out()
        ),
        trials: trials.clone(),
        margin: margin(&trials, best_time),
    };
    let margin = entry.margin;
    match &cache {
        Some(c) => match c.store(&key, entry) {
            Ok(more) => notes.extend(more),
            Err(why) => notes.push(why),
        },
        None => notes.push(NO_CACHE.into()),
    }
    let reason = tuned_reason(&trials, &p, margin, opts.force, discarded);
    Ok(Choice {
        config: spec.config,
        spec: spec.clone(),
        reason,
        trials,
        notes,
    })
}

/// The specs `choice` runs on `shape` in `opts.element`: each named configuration resolved
/// for this adapter ([`KernelSpec::resolve`]; one it cannot run is an error, or skipped with
/// `all`), or the autotuned one ([`choose_async`], `progress` hearing of each candidate it
/// tries). The one way every front end turns "auto or named" into specs.
pub async fn resolve_async(
    ctx: &GpuContext,
    shape: &QkvShape,
    choice: &KernelChoice,
    opts: &TuneOptions,
    progress: impl FnMut(&str),
) -> Result<Resolved> {
    match choice {
        KernelChoice::Auto => {
            let c = choose_async(ctx, shape, opts, progress).await?;
            Ok(Resolved {
                specs: vec![(c.spec, c.reason)],
                notes: c.notes,
                skipped: Vec::new(),
            })
        }
        KernelChoice::Named { configs, all } => {
            let mut out = Resolved {
                specs: Vec::new(),
                notes: Vec::new(),
                skipped: Vec::new(),
            };
            for &c in configs {
                // A bare `coopmat` runs the adapter's own tile and accumulator.
                match spec_for(c, opts.element, opts.weights, &ctx.summary) {
                    Ok(spec) => out.specs.push((spec, "named with `kernel`".to_string())),
                    Err(why) if *all => out.skipped.push((c.for_adapter(&ctx.summary), why)),
                    Err(why) => return Err(Error::Input(why)),
                }
            }
            Ok(out)
        }
    }
}

/// As [`resolve_async`], blocking.
#[cfg(not(target_arch = "wasm32"))]
pub fn resolve(
    ctx: &GpuContext,
    shape: &QkvShape,
    choice: &KernelChoice,
    opts: &TuneOptions,
    progress: impl FnMut(&str),
) -> Result<Resolved> {
    pollster::block_on(resolve_async(ctx, shape, choice, opts, progress))
}
