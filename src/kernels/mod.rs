//! The kernels: every projection variant, each a module under `variants/` holding all its
//! facts (a [`VariantDef`]), listed once (`registry.rs`'s `with_variants!`); how a user names one with its
//! parameters (a [`KernelConfig`]); and the [`KernelSpec`] a configuration resolves into once
//! ([`KernelSpec::resolve`]), which the plan, the projector, the tuner and the context read
//! instead of asking the variant again. docs/ARCHITECTURE.md says how to add a variant.
//!
//! The README's "Kernel variants and autotuning" table says what each variant does (and
//! `qkv run --help` lists them with their parameters: [`Kernel::help_list`]). Each variant's
//! shader file is its body, composed at compile time with the parts under `shaders/parts/`
//! its module names (`shader!`, in `shaders.rs`).
//!
//! Run one variant:
//! ```text
//! cargo run --release -- run --kernel naive              # or --kernel 0
//! cargo run --release -- run --kernel 'regtile(wgx=8,wgy=16)'
//! cargo run --release -- run --kernel 'splitk(splits=8)'
//! cargo run --release -- run --kernel all                # every variant on the same inputs
//! ```

mod block;
mod config;
mod custom;
mod registry;
mod requirements;
mod shaders;
mod spec;
mod variant;
pub mod variants;

pub use block::CoopBlock;
pub use config::{KernelConfig, MAX_PARAMS};
pub use custom::CustomKernel;
pub use registry::Kernel;
pub use requirements::Requirements;
pub use shaders::{
    ShaderSource, EPILOGUE, FILL_NAN, PEAK_COOPMAT_SOURCES, PEAK_COPY, PEAK_FMA, SUBGROUP_SIZE,
    UTILITY_SHADERS,
};
pub use spec::{
    Arithmetic, CustomInfo, ElementType, KernelSpec, OperandLayout, OperandTypes, W_BLOCK_PAD,
    W_PART_ALIGN,
};
pub use variant::{Resolved, SweepTarget, VariantDef};
pub use variants::coopmat::{
    coopmat_blocks, coopmat_for, coopmat_source, CoopParams, COOPMAT_MAX_PIECES, COOPMAT_SOURCES,
};
pub use variants::{sweep, ALL_SHADERS};

/// The expression the half-reading kernels widen four f16 with where `NATIVE_F16` is set,
/// and what a module is built with in its place on a device without f16 conversions
/// (`DownlevelFlags::SHADER_F16_IN_F32`): NaN, so that the module validates there, and a
/// use of it, were NATIVE_F16 ever set there, could not pass a check.
pub const F16_UNPACK: (&str, &str) = (
    "vec4<f32>(unpack2x16float(words.x), unpack2x16float(words.y))",
    "vec4<f32>(bitcast<f32>(0x7fc00000u))",
);
