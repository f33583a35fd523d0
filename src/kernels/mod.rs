//! The kernels: every projection variant, each a module under `variants/` holding all its
//! facts (a [`VariantDef`]), listed once ([`Kernel::def`]); how a user names one with its
//! parameters (a [`KernelConfig`]); and the [`KernelSpec`] a configuration resolves into once
//! ([`KernelSpec::resolve`]), which the plan, the projector, the tuner and the context read
//! instead of asking the variant again. docs/ARCHITECTURE.md says how to add a variant.
//!
//! | # | name               | file                                | idea                             |
//! |---|--------------------|-------------------------------------|----------------------------------|
//! | 0 | `naive`            | `shaders/qkv_naive.wgsl`            | one output per invocation        |
//! | 1 | `tiled`            | `shaders/qkv_tiled.wgsl`            | 16x16 workgroup-memory tiles     |
//! | 2 | `regtile`          | `shaders/qkv_regtile.wgsl`          | 4x4 per invocation over tiles, vec4 W; `wgx`, `wgy` |
//! | 3 | `direct`           | `shaders/qkv_direct.wgsl`           | 8x4 per invocation in registers, no barriers; `wg` |
//! | 4 | `subgroup`         | `shaders/qkv_subgroup.wgsl`         | 32x4, X by subgroup broadcasts; `wg` |
//! | 5 | `texture`          | `shaders/qkv_texture.wgsl`          | 16x4, X and W through textures; `wg` |
//! | 6 | `subgroup-texture` | `shaders/qkv_subgroup_texture.wgsl` | 32x4, textures and broadcasts; `wg` |
//! | 7 | `blocktile`        | `shaders/qkv_blocktile.wgsl`        | 8x8 per invocation, 128x128 tiles, prefetch |
//! | 8 | `splitk`           | `shaders/qkv_splitk.wgsl`           | blocktile over `splits` ranges of d_model + reduce |
//! | 9 | `coopmat`          | `shaders/qkv_coopmat.wgsl` (8 sources: type parts) | cooperative matrices (tensor cores), 128x128 blocks, two stages; `tile`, `acc`, `bm`, `bn`, `wm`, `wn`, `bk`, `stages` |
//!
//! Each file is the kernel's body, composed at compile time with the parts under
//! `shaders/parts/` its module names (`shader!`, in `shaders.rs`).
//!
//! Run one variant (`qkv run --help` lists them with their parameters):
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

pub use config::{CoopBlock, KernelConfig, Param, Slot};
pub use custom::CustomKernel;
pub use registry::{Kernel, Variant};
pub use requirements::Requirements;
pub use shaders::{
    ShaderSource, FILL_NAN, PEAK_COOPMAT_SOURCES, PEAK_COPY, PEAK_FMA, SUBGROUP_SIZE,
    UTILITY_SHADERS,
};
pub use spec::{Arithmetic, CustomInfo, ElementType, KernelSpec, OperandLayout};
pub use variant::{Resolved, SweepTarget, VariantDef};
pub use variants::coopmat::{
    coopmat_blocks, coopmat_for, coopmat_source, COOPMAT_MAX_PIECES, COOPMAT_SOURCES,
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
