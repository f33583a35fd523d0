//! The named model shapes of `qkv bench` (GPT-2 small, BERT-base, ViT-B/16, Llama-3-8B), as
//! the page lists them.

use crate::js::to_js;
use qkv_wgpu::presets::{Preset, PRESETS};
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// One named shape, as `shapes()` lists it.
#[derive(Serialize)]
pub struct ShapeInfo {
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
