//! `Gpu`: the browser's WebGPU adapter and a device on it (one per page), and what the page
//! calls on it: `open`, `adapter`, `project` (the worked example) and `run_shape`
//! (`crate::run_shape`); `try_kernel` is the editor's (`crate::try_kernel`).

use crate::adapter::{browser_info, AdapterInfo};
use crate::js::{js_err, to_js, whole};
use crate::run_shape::run_shape;
use js_sys::{Function, Promise, Reflect};
use qkv_wgpu::{
    ContextOptions, FusedWeights, GpuContext, KernelConfig, Projection, Projector, QkvReport,
    Tolerance,
};
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// The browser's WebGPU adapter and a device on it, with the library's context.
#[wasm_bindgen]
pub struct Gpu {
    pub(crate) ctx: Rc<GpuContext>,
    pub(crate) info: AdapterInfo,
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
        let info = AdapterInfo::new(&ctx, &info, features);
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

    /// Tunes, projects, checks and times the named shape at `tokens` (see the crate's
    /// documentation), in chunks of `chunk_tokens` (`null` or `undefined`: "auto", as many as
    /// the device holds; 0 is refused); `progress` is called with a line per step.
    pub fn run_shape(
        &self,
        name: String,
        tokens: f64,
        chunk_tokens: Option<f64>,
        progress: Function,
    ) -> Promise {
        let (ctx, adapter) = (self.ctx.clone(), self.info.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let tokens = whole("tokens", tokens)?;
            let chunk = crate::js::chunk_tokens(chunk_tokens)?;
            let say = |m: &str| {
                let _ = progress.call1(&JsValue::NULL, &m.into());
            };
            let result = run_shape(&ctx, &adapter, &name, tokens, chunk, &say)
                .await
                .map_err(js_err)?;
            to_js(&result)
        })
    }
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
