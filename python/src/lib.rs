//! `qkv_wgpu._native`: the projector from Python (the package `qkv_wgpu` wraps it; see its
//! docstrings). NumPy arrays in and out; the GIL released while the GPU works and while the
//! host converts, checks or tunes, so other Python threads run.
//!
//! `lib.rs` only registers the module's contents, from the layers below it: `errors.rs` the
//! library's errors as Python exceptions; `gpu.rs` adapters and contexts; `arrays.rs` the
//! arrays in and out; `dicts.rs` measurements as dicts; `settings.rs` a projector's keyword
//! settings; `weights.rs` its weights, from arrays or a checkpoint; `epilogue.rs` the RoPE
//! and QK-norm a checkpoint's model applies, and each call's positions; `projector.rs` the
//! `Projector` class; `bench.rs` the `bench` function (the library's sweep); `quant.rs` `quantize` and
//! `dequantize` in ggml's block formats, and `gguf_layer` (a GGUF file's attention layer);
//! `shards.rs` a corpus's shards, each projected into its own directory with its manifest
//! (`Projector.project_shard`, `shard_paths`). A `MemoryError`
//! comes before any allocation too large for the memory left (the library's
//! `host::check_room`).

mod arrays;
mod bench;
mod dicts;
mod epilogue;
mod errors;
mod gpu;
mod projector;
mod quant;
mod settings;
mod shards;
mod weights;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    gpu::quiet_mesa_device_select();
    m.add("GpuError", m.py().get_type::<errors::GpuError>())?;
    m.add_function(wrap_pyfunction!(gpu::adapters, m)?)?;
    m.add_function(wrap_pyfunction!(bench::bench, m)?)?;
    m.add_function(wrap_pyfunction!(quant::quantize, m)?)?;
    m.add_function(wrap_pyfunction!(quant::dequantize, m)?)?;
    m.add_function(wrap_pyfunction!(quant::gguf_layer, m)?)?;
    m.add_function(wrap_pyfunction!(shards::shard_paths, m)?)?;
    m.add_function(wrap_pyfunction!(shards::project_shard, m)?)?;
    m.add_class::<projector::Projector>()?;
    Ok(())
}
