//! qkv-wgpu in the browser: the library's own kernels, projector, tuner, f64 reference and
//! validation, driven from JavaScript on the page in this folder (`index.html`, `app.js`)
//! through the browser's WebGPU. Built by `bash scripts/web.sh build` (cargo for
//! wasm32-unknown-unknown, then wasm-bindgen `--target web` into `web/pkg/`).
//!
//! The JavaScript API (every GPU call a promise; errors reject with a message):
//! - `shapes()`: the named model shapes of `qkv bench`.
//! - `Gpu.open(host_timer)`: the browser's adapter and a device on it (one per page); kernels
//!   timed by GPU timestamps where the browser grants them, unless `host_timer`.
//! - `gpu.adapter()`: vendor, architecture, limits and features.
//! - `gpu.project(x, d_model, wq, wk, wv, q_width, kv_width)`: Q, K, V of the rows of X from
//!   one fused dispatch, checked against the f64 reference (the worked example).
//! - `gpu.run_shape(name, tokens, chunk_tokens, progress)`: what `qkv run` does for a named
//!   shape: tune among the kernels this browser runs, project fresh random inputs (in chunks
//!   of `chunk_tokens`, streamed, where it is not 0), check every element against the f64
//!   reference, time the kernel.
#![cfg(target_arch = "wasm32")]

mod try_kernel;

use js_sys::{Function, Promise, Reflect};
use qkv_wgpu::error::name_settings;
use qkv_wgpu::measure::{validate_then_time_async, CheckRows, MeasureOptions, XSource};
use qkv_wgpu::presets::{preset, Preset, PRESETS};
use qkv_wgpu::records::{check_lines, PlanRecord};
use qkv_wgpu::tune::{self, Trial, TuneOptions};
use qkv_wgpu::Elements;
use qkv_wgpu::{
    ChunkOptions, ContextOptions, FusedWeights, GpuContext, KernelConfig, KernelTimer,
    OutputLayout, Projection, Projector, QkvReport, QkvShape, Report, Tolerance,
};
use serde::Serialize;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// A library error as a JavaScript `Error` with the library's message.
pub(crate) fn js_err(e: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

pub(crate) fn to_js(v: &impl Serialize) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(js_err)
}

/// One named shape, as `shapes()` lists it.
#[derive(Serialize)]
struct ShapeInfo {
    name: &'static str,
    model: &'static str,
    d_model: u32,
    q_width: u32,
    kv_width: u32,
    bias: bool,
    tokens_unit: u32,
}

impl From<&Preset> for ShapeInfo {
    fn from(p: &Preset) -> Self {
        Self {
            name: p.name,
            model: p.model,
            d_model: p.d_model,
            q_width: p.q_width,
            kv_width: p.kv_width,
            bias: p.bias,
            tokens_unit: p.tokens_unit,
        }
    }
}

/// The named model shapes (GPT-2 small, BERT-base, ViT-B/16, Llama-3-8B).
#[wasm_bindgen]
pub fn shapes() -> Result<JsValue, JsValue> {
    to_js(&PRESETS.iter().map(ShapeInfo::from).collect::<Vec<_>>())
}

/// What the page shows about the adapter: the browser's own description (vendor,
/// architecture) beside what wgpu reports and the device was granted.
#[derive(Serialize, Clone)]
struct AdapterInfo {
    name: String,
    vendor: String,
    architecture: String,
    description: String,
    backend: String,
    driver: String,
    device_type: String,
    is_cpu: bool,
    timestamps: bool,
    /// What the browser's adapter offers (WebGPU's names).
    features: Vec<String>,
    /// What the library asked for and the device has (wgpu's names).
    features_used: Vec<String>,
    limits: Vec<(String, f64)>,
}

impl AdapterInfo {
    /// How the report names the adapter: wgpu's name, else the browser's vendor and
    /// architecture (Chrome gives no name).
    fn vendor_architecture(&self) -> String {
        if !self.name.is_empty() {
            self.name.clone()
        } else {
            format!("{} {}", self.vendor, self.architecture)
                .trim()
                .to_string()
        }
    }
}

/// The browser's WebGPU adapter and a device on it, with the library's context.
#[wasm_bindgen]
pub struct Gpu {
    ctx: Rc<GpuContext>,
    info: AdapterInfo,
}

/// `name` of a JavaScript object as a string ("" when absent).
fn js_str(obj: &JsValue, name: &str) -> String {
    Reflect::get(obj, &name.into())
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default()
}

/// The browser's own `GPUAdapterInfo` (vendor, architecture, description) and feature names,
/// which wgpu does not pass on, or why there is no adapter at all.
async fn browser_info() -> Result<(JsValue, Vec<String>), JsValue> {
    let no = |why: &str| js_err(qkv_wgpu::Error::NoWebGpu { reason: why.into() });
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into())?;
    let gpu = Reflect::get(&navigator, &"gpu".into())?;
    if gpu.is_undefined() || gpu.is_null() {
        return Err(no(
            "navigator.gpu is undefined: this browser has no WebGPU, or it is off",
        ));
    }
    let request: Function = Reflect::get(&gpu, &"requestAdapter".into())?.dyn_into()?;
    // The same preference as the library's own request, so both describe one adapter.
    let options = js_sys::Object::new();
    Reflect::set(
        &options,
        &"powerPreference".into(),
        &"high-performance".into(),
    )?;
    let promise: Promise = request.call1(&gpu, &options)?.dyn_into()?;
    let adapter = JsFuture::from(promise).await?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err(no("navigator.gpu.requestAdapter() gave null"));
    }
    let info = Reflect::get(&adapter, &"info".into()).unwrap_or(JsValue::UNDEFINED);
    let features = Reflect::get(&adapter, &"features".into()).unwrap_or(JsValue::UNDEFINED);
    let mut names: Vec<String> = if features.is_undefined() {
        Vec::new()
    } else {
        js_sys::Array::from(&features)
            .iter()
            .filter_map(|f| f.as_string())
            .collect()
    };
    names.sort();
    Ok((info, names))
}

#[wasm_bindgen]
impl Gpu {
    /// Opens the browser's adapter and creates the device (once per page); with
    /// `host_timer`, kernels are timed by the page's clock even where the browser has GPU
    /// timestamps (the page's `?timer=host`), and say so.
    pub async fn open(host_timer: Option<bool>) -> Result<Gpu, JsValue> {
        let (info, features) = browser_info().await?;
        let options = ContextOptions {
            host_timer: host_timer.unwrap_or(false),
            ..ContextOptions::default()
        };
        let ctx = GpuContext::browser(&options).await.map_err(js_err)?;
        let s = &ctx.summary;
        let architecture = js_str(&info, "architecture");
        let fallback = Reflect::get(&info, &"isFallbackAdapter".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let l = ctx.limits();
        let limits = [
            (
                "maxStorageBufferBindingSize",
                l.max_storage_buffer_binding_size as f64,
            ),
            ("maxBufferSize", l.max_buffer_size as f64),
            (
                "maxStorageBuffersPerShaderStage",
                l.max_storage_buffers_per_shader_stage as f64,
            ),
            (
                "maxComputeWorkgroupStorageSize",
                l.max_compute_workgroup_storage_size as f64,
            ),
            (
                "maxComputeInvocationsPerWorkgroup",
                l.max_compute_invocations_per_workgroup as f64,
            ),
            (
                "maxComputeWorkgroupSizeX",
                l.max_compute_workgroup_size_x as f64,
            ),
            (
                "maxComputeWorkgroupSizeY",
                l.max_compute_workgroup_size_y as f64,
            ),
            (
                "maxComputeWorkgroupsPerDimension",
                l.max_compute_workgroups_per_dimension as f64,
            ),
            ("maxTextureDimension2D", l.max_texture_dimension_2d as f64),
            ("maxBindGroups", l.max_bind_groups as f64),
            (
                "maxUniformBufferBindingSize",
                l.max_uniform_buffer_binding_size as f64,
            ),
        ]
        .map(|(n, v)| (n.to_string(), v))
        .to_vec();
        let info = AdapterInfo {
            name: s.name.clone(),
            vendor: js_str(&info, "vendor"),
            description: js_str(&info, "description"),
            is_cpu: s.is_cpu() || fallback || architecture.eq_ignore_ascii_case("swiftshader"),
            architecture,
            backend: s.backend.clone(),
            driver: s.driver.clone(),
            device_type: s.device_type.clone(),
            timestamps: ctx.has_timestamps(),
            features,
            features_used: ctx
                .device
                .features()
                .iter_names()
                .map(|(n, _)| n.to_string())
                .collect(),
            limits,
        };
        Ok(Gpu {
            ctx: Rc::new(ctx),
            info,
        })
    }

    /// Vendor, architecture, description, backend, device type, whether kernels are timed by
    /// GPU timestamps, the device's features and limits.
    pub fn adapter(&self) -> Result<JsValue, JsValue> {
        let v = to_js(&self.info)?;
        // Limits as an object (name -> value), as the page reads them.
        let limits = js_sys::Object::new();
        for (n, l) in &self.info.limits {
            Reflect::set(&limits, &n.into(), &(*l).into())?;
        }
        Reflect::set(&v, &"limits".into(), &limits)?;
        Ok(v)
    }

    /// Q [tokens, q_width], K and V [tokens, kv_width] of the rows of `x` [tokens, d_model]
    /// under `wq` [d_model, q_width], `wk` and `wv` [d_model, kv_width] (row-major), from one
    /// fused dispatch of the default kernel; the result is checked against the f64
    /// reference and a mismatch rejects. Resolves to `{q, k, v, kernel}`. The sizes are
    /// JavaScript numbers, refused unless whole and in range (never wrapped or truncated).
    #[allow(clippy::too_many_arguments)]
    pub fn project(
        &self,
        x: Vec<f32>,
        d_model: f64,
        wq: Vec<f32>,
        wk: Vec<f32>,
        wv: Vec<f32>,
        q_width: f64,
        kv_width: f64,
    ) -> Promise {
        let ctx = self.ctx.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let d_model = whole("d_model", d_model)?;
            let q_width = whole("q_width", q_width)?;
            let kv_width = whole("kv_width", kv_width)?;
            let out = example(&ctx, &x, d_model, [&wq, &wk, &wv], q_width, kv_width)
                .await
                .map_err(js_err)?;
            let obj = js_sys::Object::new();
            for (name, v) in [("q", &out.0.q), ("k", &out.0.k), ("v", &out.0.v)] {
                Reflect::set(&obj, &name.into(), &js_sys::Float32Array::from(&v[..]))?;
            }
            Reflect::set(&obj, &"kernel".into(), &out.1.into())?;
            Ok(obj.into())
        })
    }

    /// Tunes, projects, checks and times the named shape at `tokens` (see the module
    /// documentation), in chunks of `chunk_tokens` (0: as many as the device holds);
    /// `progress` is called with a line per step.
    pub fn run_shape(
        &self,
        name: String,
        tokens: f64,
        chunk_tokens: f64,
        progress: Function,
    ) -> Promise {
        let (ctx, adapter) = (self.ctx.clone(), self.info.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let tokens = whole("tokens", tokens)?;
            let chunk_tokens = if chunk_tokens == 0.0 {
                0
            } else {
                whole("chunk_tokens", chunk_tokens)?
            };
            let say = |m: &str| {
                let _ = progress.call1(&JsValue::NULL, &m.into());
            };
            let chunk = (chunk_tokens > 0).then_some(chunk_tokens);
            let result = run_shape(&ctx, &adapter, &name, tokens, chunk, &say)
                .await
                .map_err(js_err)?;
            to_js(&result)
        })
    }
}

/// A size from JavaScript: a whole number from 1 to u32::MAX, or a clear error.
pub(crate) fn whole(name: &str, v: f64) -> Result<u32, JsValue> {
    if v.fract() == 0.0 && (1.0..=u32::MAX as f64).contains(&v) {
        Ok(v as u32)
    } else {
        Err(js_err(format!(
            "{name} must be a whole number from 1 to {}, not {v}",
            u32::MAX
        )))
    }
}

/// Panics (a bug) reach the console with their message instead of wasm's bare
/// "unreachable".
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&format!("qkv-web panicked: {info}").into());
    }));
}

/// The worked example's projection: returns Q, K, V and the kernel that ran.
async fn example(
    ctx: &GpuContext,
    x: &[f32],
    d_model: u32,
    [wq, wk, wv]: [&[f32]; 3],
    q_width: u32,
    kv_width: u32,
) -> qkv_wgpu::Result<(qkv_wgpu::QkvOutput, String)> {
    let bad = |m: String| qkv_wgpu::Error::Input(m);
    if d_model == 0 || !x.len().is_multiple_of(d_model as usize) {
        return Err(bad(format!(
            "x has {} values: not whole rows of d_model {d_model}",
            x.len()
        )));
    }
    for (name, values) in [("x", x), ("Wq", wq), ("Wk", wk), ("Wv", wv)] {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!(
                "{name}[{i}] is {}: only finite numbers project",
                values[i]
            )));
        }
    }
    let p = |w, width| Projection {
        w,
        width,
        bias: None,
    };
    let weights = FusedWeights::fuse(d_model, p(wq, q_width), p(wk, kv_width), p(wv, kv_width))?;
    let tokens = (x.len() / d_model as usize) as u32;
    let shape = weights.shape(tokens)?;
    let config = KernelConfig::from(qkv_wgpu::Kernel::DEFAULT).for_adapter(&ctx.summary);
    let mut projector = Projector::new(ctx, shape, config)?;
    projector.set_weights(&weights)?;
    let out = projector.run_async(x).await?;
    let expected = qkv_wgpu::reference(&shape, x, &weights);
    let tol = Tolerance::for_f32_accumulation(d_model);
    let report = QkvReport::of(&out, &expected, &shape, tol);
    if !report.pass() {
        let parts: Vec<String> = report.parts().iter().map(|p| p.to_string()).collect();
        return Err(qkv_wgpu::Error::Input(format!(
            "the GPU result does not match the f64 reference: {}",
            parts.join("; ")
        )));
    }
    Ok((out, projector.config().to_string()))
}

/// What `run_shape` resolves to.
#[derive(Serialize)]
struct RunResult {
    shape: ShapeInfo,
    tokens: u32,
    kernel: String,
    reason: String,
    trials: Vec<Trial>,
    timer: &'static str,
    kernel_ms: f64,
    kernel_ms_min: f64,
    kernel_ms_max: f64,
    repeats: u32,
    per_sample: u32,
    gflops: f64,
    chunks: u32,
    chunk_tokens: u32,
    col_blocks: u32,
    streamed: bool,
    outputs: Vec<Report>,
    tolerance: String,
    pass: bool,
    lines: Vec<String>,
}

/// Lets the page paint (a progress line) before the next stretch of host work.
pub(crate) async fn pause() {
    let promise = Promise::new(&mut |resolve, _| {
        let set_timeout = Reflect::get(&js_sys::global(), &"setTimeout".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok());
        match set_timeout {
            Some(f) => {
                let _ = f.call2(&JsValue::NULL, &resolve, &0.into());
            }
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = JsFuture::from(promise).await;
}

/// Timed repeats of the kernel after the validated run.
const REPEATS: u32 = 5;

/// The most host memory one run may hold: a wasm32 page has 4 GiB at most, and the browser
/// may grant less. A run past it is refused by name instead of aborting the page.
const HOST_BUDGET: f64 = 1024.0 * 1024.0 * 1024.0;

/// Refuses a run whose host arrays would pass [`HOST_BUDGET`]: X, W, Q, K, V in f32 and the
/// f64 reference (the fused rows, then split into Q, K, V).
fn check_host_memory(shape: &QkvShape) -> qkv_wgpu::Result<()> {
    let (d, n) = (shape.d_model as f64, shape.n_out() as f64);
    let per_token = 4.0 * d + 4.0 * n + 16.0 * n;
    let fixed = 8.0 * d * n;
    let need = fixed + per_token * shape.tokens as f64;
    if need <= HOST_BUDGET {
        return Ok(());
    }
    let most = ((HOST_BUDGET - fixed) / per_token).floor().max(0.0);
    Err(qkv_wgpu::Error::Input(format!(
        "{} tokens of this shape need about {:.0} MiB of the page's memory (X, W, Q, K, V and \
         the f64 reference); the page keeps a run under {:.0} MiB (a wasm32 page has 4 GiB at \
         most): at most {most} tokens here. `qkv run` and `qkv bench` stream larger batches",
        shape.tokens,
        need / (1024.0 * 1024.0),
        HOST_BUDGET / (1024.0 * 1024.0)
    )))
}

async fn run_shape(
    ctx: &GpuContext,
    adapter: &AdapterInfo,
    name: &str,
    tokens: u32,
    chunk_tokens: Option<u32>,
    say: &impl Fn(&str),
) -> qkv_wgpu::Result<RunResult> {
    let p = preset(name).map_err(qkv_wgpu::Error::Input)?;
    let shape = QkvShape::new(tokens, p.d_model, p.q_width, p.kv_width, p.bias)?;
    check_host_memory(&shape)?;
    say(&format!(
        "shape {shape}: {:.3} GFLOP per projection",
        shape.flops() / 1e9
    ));
    say("autotuning among the kernels this browser runs (each validated first)...");
    pause().await;
    let choice = tune::choose_async(ctx, &shape, &TuneOptions::default(), |m| {
        say(&format!("  trying {m}"));
    })
    .await?;
    say(&format!("chose {}", choice.config));
    let seed = (js_sys::Math::random() * 2f64.powi(53)) as u64;
    let (x, weights) = qkv_wgpu::random_inputs(&shape, seed);
    let opts = ChunkOptions {
        chunk_tokens,
        ..ChunkOptions::default()
    };
    let mut projector = Projector::with_spec(ctx, shape, choice.spec, OutputLayout::Tokens, &opts)?;
    projector.set_weights(&weights)?;
    let plan = projector.plan().clone();
    if plan.chunks() > 1 {
        say(&format!(
            "{} chunks of up to {} tokens{}",
            plan.chunks(),
            plan.chunk_tokens,
            if plan.streaming { ", streamed" } else { "" }
        ));
    }
    say(
        "projecting fresh random inputs (outputs filled with NaN first), checking every element \
         against the f64 reference, then timing the kernel...",
    );
    pause().await;
    // The library's check-then-time, as `qkv run` measures: a kernel that fails its check is
    // not timed.
    let opts = MeasureOptions {
        runs: 0,
        kernel_repeats: REPEATS,
        check: CheckRows::All,
        ..MeasureOptions::default()
    };
    let m = validate_then_time_async(
        &mut projector,
        &weights,
        XSource::Given(Elements::F32(&x)),
        &opts,
        |_| {},
    )
    .await?;
    let (report, tol) = (&m.report, m.tolerance);
    let Some(times) = m.kernel.as_ref() else {
        let parts: Vec<String> = report.parts().iter().map(|p| p.to_string()).collect();
        return Err(qkv_wgpu::Error::Input(format!(
            "kernel {}: the GPU result does not match the f64 reference, so it was not timed: \
             {}",
            projector.spec(),
            parts.join("; ")
        )));
    };
    let warmups = times.warmups;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let (median, min, max) = times.spread();
    let (median, min, max) = (ms(median), ms(min), ms(max));
    let (timer, label) = match times.timer {
        KernelTimer::GpuTimestamp => ("GPU timestamps", "GPU kernel"),
        KernelTimer::Host => ("host-timed", "kernel (host)"),
    };
    if median <= 0.0 {
        return Err(qkv_wgpu::Error::Input(format!(
            "the kernel timed as 0 ms ({timer}): below the clock's resolution even with {} \
             batches per sample",
            times.per_sample
        )));
    }
    let gflops = shape.flops() / (median * 1e-3) / 1e9;
    let tolerance = qkv_wgpu::records::condition_line(&tol);
    let spec = projector.spec();
    let mut lines = vec![
        format!(
            "adapter   {} ({}, {})",
            adapter.vendor_architecture(),
            ctx.summary.backend,
            ctx.summary.device_type
        ),
        format!("shape     {} ({}): {shape}", p.name, p.model),
        format!("check     {tolerance}"),
        String::new(),
        format!(
            "kernel    {} ({}): {}",
            spec.config,
            spec.kernel().number(),
            spec.kernel().description()
        ),
        format!("  chosen       {}", choice.reason),
    ];
    let width = choice
        .trials
        .iter()
        .map(|t| t.config.len())
        .max()
        .unwrap_or(0)
        .max(6);
    if !choice.trials.is_empty() {
        lines.push(format!(
            "  tuning       {:<width$}  {:>10}  status",
            "config", "ms"
        ));
    }
    for t in &choice.trials {
        let ms = t.ms.map_or("-".into(), |v| format!("{v:.3}"));
        let chosen = if t.config == spec.config.to_string() {
            "  <- chosen"
        } else {
            ""
        };
        lines.push(format!(
            "               {:<width$}  {ms:>10}  {}{chosen}",
            t.config, t.status
        ));
    }
    if plan.chunks() > 1 || plan.col_blocks.len() > 1 {
        // The library names the page's chunk size by its setting's name.
        let plan = PlanRecord::of(&plan, plan.streaming);
        let line = name_settings(
            &plan.line(),
            &[("chunk_tokens", "the chunk size asked for")],
        );
        lines.push(format!("  chunks       {line}"));
    }
    let batches = if times.per_sample > 1 {
        format!(
            ", each sample {} batches back to back: the browser's clocks are rounded to 100 µs",
            times.per_sample
        )
    } else {
        String::new()
    };
    lines.push(format!(
        "  {label:<12} {median:>10.3} ms  median of {REPEATS} back-to-back after {warmups} \
         warm-ups (min {min:.3}, max {max:.3}; {timer}{batches})  {gflops:.2} GFLOP/s"
    ));
    lines.extend(check_lines(report).iter().map(|l| format!("  {l}")));
    lines.extend(choice.notes.iter().map(|n| format!("note      {n}")));
    Ok(RunResult {
        shape: ShapeInfo::from(&p),
        tokens,
        kernel: spec.config.to_string(),
        reason: choice.reason,
        trials: choice.trials,
        timer,
        kernel_ms: median,
        kernel_ms_min: min,
        kernel_ms_max: max,
        repeats: REPEATS,
        per_sample: times.per_sample,
        gflops,
        chunks: plan.chunks(),
        chunk_tokens: plan.chunk_tokens,
        col_blocks: plan.col_blocks.len() as u32,
        streamed: plan.streaming,
        outputs: report.parts().iter().map(|r| (*r).clone()).collect(),
        tolerance,
        pass: report.pass(),
        lines,
    })
}
