//! What every call from JavaScript shares: errors as JavaScript `Error`s (settings named as
//! the page names them), values to JavaScript, sizes from JavaScript numbers, reading a
//! JavaScript object's field, and letting the page paint between stretches of host work.

use js_sys::{Function, Promise, Reflect};
use qkv_wgpu::error::name_settings;
use qkv_wgpu::ChunkOptions;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// How the page names the settings the library's messages name (`chunk_tokens` is the
/// "Tokens per chunk" field).
pub const PAGE_SETTINGS: [(&str, &str); 1] = [("chunk_tokens", "the chunk size asked for")];

/// A library error as a JavaScript `Error` with the library's message, its settings named
/// as the page names them.
pub fn js_err(e: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&name_settings(&e.to_string(), &PAGE_SETTINGS)).into()
}

pub fn to_js(v: &impl Serialize) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(js_err)
}

/// A size from JavaScript: a whole number from 1 to u32::MAX, or a clear error.
pub fn whole(name: &str, v: f64) -> Result<u32, JsValue> {
    if v.fract() == 0.0 && (1.0..=u32::MAX as f64).contains(&v) {
        Ok(v as u32)
    } else {
        Err(js_err(format!(
            "{name} must be a whole number from 1 to {}, not {v}",
            u32::MAX
        )))
    }
}

/// The chunk size from JavaScript: `null` or `undefined` (None) asks for the size that fits,
/// the one way to; 0 is refused as the library refuses it ([`ChunkOptions::check`], its
/// message), and anything else must be a whole number from 1 to u32::MAX.
pub fn chunk_tokens(v: Option<f64>) -> Result<Option<u32>, JsValue> {
    let Some(v) = v else { return Ok(None) };
    let c = if v == 0.0 {
        0
    } else {
        whole("`chunk_tokens`", v)?
    };
    let opts = ChunkOptions {
        chunk_tokens: Some(c),
        ..ChunkOptions::default()
    };
    opts.check().map_err(js_err)?;
    Ok(Some(c))
}

/// `name` of a JavaScript object as a string ("" when absent).
pub fn js_str(obj: &JsValue, name: &str) -> String {
    Reflect::get(obj, &name.into())
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default()
}

/// Lets the page paint (a progress line) before the next stretch of host work.
pub async fn pause() {
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
