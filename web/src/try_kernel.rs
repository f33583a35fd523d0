//! The page's kernel editor: a visitor's WGSL through the same library path as `qkv try`
//! (the contract's checks, the conformance cases with NaN-filled outputs and the f64
//! reference, the same report lines and tile maps), then, if every check passed, the kernel
//! timed on GPT-2's shape.

use crate::gpu::Gpu;
use crate::js::{js_err, pause, to_js, whole};
use js_sys::Promise;
use qkv_wgpu::conformance::{cases, maps_svg, run_case, CaseResult};
use qkv_wgpu::kernels::CustomKernel;
use qkv_wgpu::measure::{validate_then_time_async, CheckRows, MeasureOptions, XSource};
use qkv_wgpu::records::{case_line, custom_kernel_line, failure_report, CASES_LINE};
use qkv_wgpu::{ChunkOptions, ElementType, GpuContext, OutputLayout, Projector, QkvShape};
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// The editor's starting kernel: examples/wgsl/minimal.wgsl.
#[wasm_bindgen]
pub fn kernel_example() -> String {
    include_str!("../../examples/wgsl/minimal.wgsl").to_string()
}

/// What the editor shows.
#[derive(Serialize)]
struct TryReport {
    /// Every check passed (and the kernel was timed).
    pass: bool,
    /// The report, as `qkv try` prints it.
    lines: Vec<String>,
    /// The failing checks' tile maps as one SVG picture.
    map_svg: Option<String>,
}

#[wasm_bindgen]
impl Gpu {
    /// Checks the visitor's kernel `source` and, if every check passed, times it on GPT-2's
    /// shape at `tokens`; resolves to `{pass, lines, map_svg}`. A kernel that does not meet
    /// the contract resolves with the reason in `lines` (not a rejection: it is the report).
    pub fn try_kernel(&self, source: String, tokens: f64) -> Promise {
        let ctx = self.ctx.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let tokens = whole("tokens", tokens)?;
            let report = check_and_time(&ctx, &source, tokens)
                .await
                .map_err(js_err)?;
            to_js(&report)
        })
    }
}

/// The kernel checked against the device's limits, then through every case, each case's
/// line added to `lines`; None (the reason in `lines`) where the kernel or its tile asks
/// more than the device has.
async fn run_checks(
    ctx: &GpuContext,
    kernel: &CustomKernel,
    lines: &mut Vec<String>,
) -> Result<Option<Vec<CaseResult>>, qkv_wgpu::Error> {
    let limits = ctx.limits();
    let checked = kernel
        .check_limits(&limits)
        .map_err(qkv_wgpu::Error::Input)
        .and_then(|()| cases(kernel.tile, &kernel.elements, &limits));
    let cases = match checked {
        Ok(cases) => cases,
        Err(why) => {
            lines.extend(why.to_string().lines().map(str::to_string));
            return Ok(None);
        }
    };
    lines.push(CASES_LINE.to_string());
    let mut results = Vec::new();
    for case in cases {
        let spec = kernel.spec(case.element).map_err(qkv_wgpu::Error::Input)?;
        if let Some(why) = spec.unsupported_on(&ctx.summary) {
            return Err(qkv_wgpu::Error::Input(why));
        }
        pause().await;
        let r = run_case(ctx, &spec, &case, 42).await?;
        lines.push(case_line(&r));
        results.push(r);
    }
    Ok(Some(results))
}

async fn check_and_time(
    ctx: &GpuContext,
    source: &str,
    tokens: u32,
) -> Result<TryReport, qkv_wgpu::Error> {
    let kernel = match CustomKernel::parse("editor.wgsl", source) {
        Ok(k) => k,
        Err(why) => {
            return Ok(TryReport {
                pass: false,
                lines: why.lines().map(str::to_string).collect(),
                map_svg: None,
            })
        }
    };
    let mut lines = vec![custom_kernel_line(&kernel)];
    let Some(results) = run_checks(ctx, &kernel, &mut lines).await? else {
        return Ok(TryReport {
            pass: false,
            lines,
            map_svg: None,
        });
    };
    let failed: Vec<_> = results.iter().filter(|r| !r.pass).collect();
    if !failed.is_empty() {
        lines.extend(failure_report(&results));
        lines.push(format!("{} check(s) failed: not timed", failed.len()));
        let maps: Vec<_> = failed
            .iter()
            .filter_map(|r| {
                let title = format!("{} in {}", r.case.name, r.case.element);
                r.map.as_ref().map(|m| (title, m))
            })
            .collect();
        return Ok(TryReport {
            pass: false,
            lines,
            map_svg: Some(maps_svg(&maps)),
        });
    }
    // Timed as the page's run is: the kernel alone, back to back, after the check.
    let p = qkv_wgpu::presets::preset("gpt2").map_err(qkv_wgpu::Error::Input)?;
    let shape = QkvShape::new(tokens, p.d_model, p.q_width, p.kv_width, p.bias)?;
    let spec = kernel
        .spec(ElementType::F32)
        .map_err(qkv_wgpu::Error::Input)?;
    let (x, weights) = qkv_wgpu::random_inputs(&shape, 42);
    let mut projector = Projector::with_spec(
        ctx,
        shape,
        spec,
        OutputLayout::Tokens,
        &ChunkOptions::default(),
    )?;
    projector.set_weights(&weights)?;
    let opts = MeasureOptions {
        runs: 0,
        kernel_repeats: 5,
        check: CheckRows::All,
        ..MeasureOptions::default()
    };
    pause().await;
    let x = XSource::Given(qkv_wgpu::Elements::F32(&x));
    let m = validate_then_time_async(&mut projector, &weights, x, &opts, |_| {}).await?;
    let pass = m.pass();
    match m.kernel.as_ref() {
        Some(t) => {
            let ms = t.median().as_secs_f64() * 1e3;
            let timer = match t.timer {
                qkv_wgpu::KernelTimer::GpuTimestamp => "GPU timestamps",
                qkv_wgpu::KernelTimer::Host => "host-timed",
            };
            lines.push(format!(
                "timed on gpt2 x {tokens} tokens in f32: kernel {ms:.3} ms (median of 5 \
                 back-to-back, {timer}), {:.2} GFLOP/s",
                shape.gflops(ms / 1e3)
            ));
        }
        None => lines.push(format!(
            "on gpt2 x {tokens} tokens the check failed, so it was not timed: {}",
            m.report.max_abs_err()
        )),
    }
    Ok(TryReport {
        pass,
        lines,
        map_svg: None,
    })
}
