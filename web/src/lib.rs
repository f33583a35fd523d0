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
//!   of `chunk_tokens`, streamed; `null` for "auto", as many as the device holds; 0 is
//!   refused, as everywhere), check every element against the f64 reference, time the
//!   kernel.
//! - `gpu.try_kernel(source, tokens)`: the kernel editor's checks of a visitor's WGSL.
//!
//! The modules, from the ground up (none imports one above it; this file declares them and
//! the panic hook only): `js` (errors, values and sizes to and from JavaScript), `shapes`, `adapter` (what
//! the page shows of the adapter), `run_shape`, `gpu` (`Gpu` and its calls), `try_kernel`.
#![cfg(target_arch = "wasm32")]

mod adapter;
mod gpu;
mod js;
mod run_shape;
mod shapes;
mod try_kernel;

use wasm_bindgen::prelude::*;

/// Panics (a bug) reach the console with their message instead of wasm's bare
/// "unreachable".
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&format!("qkv-web panicked: {info}").into());
    }));
}
