//! One module per kernel variant, each a [`VariantDef`] holding everything about the
//! variant, declared from the one list of variants (`registry.rs`'s `with_variants!`), which
//! also maps each [`Kernel`] to its module's definition here. Adding a variant: its shader
//! body under `shaders/` (or its generator entry in `scripts/gen_kernels.py`), its module
//! here, and its line in the list (docs/ARCHITECTURE.md, "How to add a kernel variant").

use super::config::KernelConfig;
use super::registry::{with_variants, Kernel};
use super::shaders::{ShaderSource, UTILITY_SHADERS};
use super::variant::{SweepTarget, VariantDef};
use std::sync::LazyLock;

/// Declares each listed variant's module and maps each [`Kernel`] to its definition.
macro_rules! modules_and_defs {
    ($($(#[$doc:meta])* $arm:ident => $module:ident::$def:ident,)*) => {
        $(pub mod $module;)*

        impl Kernel {
            /// The variant's definition: every fact about it, from its module.
            pub fn def(self) -> &'static dyn VariantDef {
                match self {
                    $(Kernel::$arm => &$module::$def,)*
                    Kernel::User => &super::custom::UserKernel,
                }
            }
        }
    };
}

with_variants!(modules_and_defs);

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
