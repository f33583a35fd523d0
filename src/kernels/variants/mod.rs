//! The registry: one module per kernel variant, each a [`VariantDef`] holding everything
//! about the variant, and the list that maps each [`Kernel`] to its module ([`Kernel::def`]).
//! Adding a variant: its shader (or its generator entry in `scripts/gen_kernels.py`), its
//! module here, its line in [`Kernel::def`], and its names in `registry.rs` ([`Kernel`],
//! [`Variant`](super::Variant)).

use super::config::KernelConfig;
use super::registry::Kernel;
use super::shaders::{ShaderSource, UTILITY_SHADERS};
use super::variant::{SweepTarget, VariantDef};
use std::sync::LazyLock;

pub mod blocktile;
pub mod coopmat;
pub mod direct;
pub mod naive;
pub mod regtile;
pub mod splitk;
pub mod subgroup;
pub mod subgroup_texture;
pub mod texture;
pub mod tiled;

impl Kernel {
    /// The variant's definition: every fact about it, from its module.
    pub fn def(self) -> &'static dyn VariantDef {
        match self {
            Kernel::Naive => &naive::Naive,
            Kernel::Tiled => &tiled::Tiled,
            Kernel::Regtile => &regtile::Regtile,
            Kernel::Direct => &direct::Direct,
            Kernel::Subgroup => &subgroup::Subgroup,
            Kernel::Texture => &texture::Texture,
            Kernel::SubgroupTexture => &subgroup_texture::SubgroupTexture,
            Kernel::Blocktile => &blocktile::Blocktile,
            Kernel::Splitk => &splitk::Splitk,
            Kernel::Coopmat => &coopmat::Coopmat,
        }
    }
}

/// Every shader the crate compiles (each variant's sources, then the utility shaders), for
/// checks that must cover all of them.
pub static ALL_SHADERS: LazyLock<Vec<ShaderSource>> = LazyLock::new(|| {
    Kernel::ALL
        .iter()
        .flat_map(|k| k.def().sources())
        .chain(UTILITY_SHADERS)
        .collect()
});

/// Every configuration worth tuning on `target`, in the order to try them: each variant's
/// sweep ([`VariantDef::sweep`]), likely-fast variants first ([`VariantDef::sweep_rank`]).
/// Whether the adapter can run each is the caller's to check.
pub fn sweep(target: &SweepTarget) -> Vec<KernelConfig> {
    let mut defs: Vec<&dyn VariantDef> = Kernel::ALL.iter().map(|k| k.def()).collect();
    defs.sort_by_key(|d| d.sweep_rank(target.on_cpu));
    defs.iter().flat_map(|d| d.sweep(target)).collect()
}
