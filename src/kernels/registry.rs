//! The registry's names: every projection kernel variant by number ([`Kernel`]) and the
//! typed form of its parameters ([`Variant`]). Each variant is a module under `variants/`
//! implementing [`VariantDef`](super::VariantDef), which `variants/mod.rs` maps each
//! [`Kernel`] to ([`Kernel::def`]); everything a [`Kernel`] answers here it asks of that
//! definition.

use super::block::CoopBlock;
use super::shaders::ShaderSource;
use crate::binding::BindingKind;
use crate::element::ElementType;
use std::fmt;
use std::str::FromStr;

/// A projection kernel variant. The discriminant is its number on the command line; its
/// definition is [`Kernel::def`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kernel {
    /// One output per invocation, no workgroup memory.
    Naive = 0,
    /// Workgroup-memory tiles over d_model.
    Tiled = 1,
    /// Register-blocked 4x4 per invocation over workgroup-memory tiles.
    Regtile = 2,
    /// Register-blocked, storage only, no barriers.
    Direct = 3,
    /// `Direct` with X shared through subgroup broadcasts.
    Subgroup = 4,
    /// Register-blocked, X and W read through textures.
    Texture = 5,
    /// `Texture` with X shared through subgroup broadcasts.
    SubgroupTexture = 6,
    /// Register-blocked 8x8 per invocation over 128x128 workgroup tiles, with prefetch.
    Blocktile = 7,
    /// `Blocktile` over ranges of d_model (split-K), partial sums added by a second pass.
    Splitk = 8,
    /// Cooperative matrices (tensor cores): f16 inputs, f32 (or f16) accumulator.
    Coopmat = 9,
}

/// A variant with its tuning parameters, typed: each field means one thing. Made by the
/// variant's [`VariantDef::resolve`](super::VariantDef::resolve).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// One output per invocation.
    Naive,
    /// 16x16 workgroup-memory tiles.
    Tiled,
    /// 4x4 outputs per invocation over tiles, `wgx` x `wgy` invocations.
    Regtile {
        /// Invocations along output columns.
        wgx: u32,
        /// Invocations along token rows.
        wgy: u32,
    },
    /// 8x4 outputs per invocation, `wg` invocations along columns.
    Direct {
        /// Invocations per workgroup.
        wg: u32,
    },
    /// 32x4 outputs per invocation, X by subgroup broadcasts.
    Subgroup {
        /// Invocations per workgroup.
        wg: u32,
    },
    /// 16x4 outputs per invocation through textures.
    Texture {
        /// Invocations per workgroup.
        wg: u32,
    },
    /// 32x4 outputs per invocation through textures and subgroup broadcasts.
    SubgroupTexture {
        /// Invocations per workgroup.
        wg: u32,
    },
    /// 8x8 outputs per invocation over 128x128 tiles.
    Blocktile,
    /// Blocktile over `splits` ranges of d_model, then a reduce pass.
    Splitk {
        /// Ranges of d_model, one partial sum each.
        splits: u32,
    },
    /// Cooperative matrices of `tile` x `tile`, `block` per workgroup.
    Coopmat {
        /// M = N = K of the matrices: 8 or 16.
        tile: u32,
        /// An f32 accumulator (else f16).
        f32_accumulator: bool,
        /// The block, its subgroups' parts, the step along d_model and the stages.
        block: CoopBlock,
    },
}

/// Shortcuts to the variant's definition ([`Kernel::def`]).
impl Kernel {
    /// Every variant, in number order.
    pub const ALL: [Kernel; 10] = [
        Kernel::Naive,
        Kernel::Tiled,
        Kernel::Regtile,
        Kernel::Direct,
        Kernel::Subgroup,
        Kernel::Texture,
        Kernel::SubgroupTexture,
        Kernel::Blocktile,
        Kernel::Splitk,
        Kernel::Coopmat,
    ];

    /// The variant library callers get when they name none and do not autotune
    /// ([`crate::tune::choose`]), and the one `qkv explain` runs: workgroup-memory tiling,
    /// the classic GPU layout. `qkv run`, `project` and `bench` autotune by default instead.
    pub const DEFAULT: Kernel = Kernel::Tiled;

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        self.def().name()
    }

    /// The variant's number (`--kernel 0`).
    pub const fn number(self) -> u32 {
        self as u32
    }

    /// One line on what the variant does.
    pub fn description(self) -> &'static str {
        self.def().description()
    }

    /// How the variant binds X and W (and whether it has partial sums).
    pub fn binding(self) -> BindingKind {
        self.def().binding()
    }

    /// Whether the kernel reads X and W through textures (see
    /// [`crate::binding::TextureLayout`]) rather than storage buffers.
    pub fn reads_textures(self) -> bool {
        matches!(self.binding(), BindingKind::Textured)
    }

    /// Whether the kernel uses subgroup operations.
    pub fn needs_subgroups(self) -> bool {
        self.def().requires().min_subgroup_size.is_some()
    }

    /// The storage types the variant reads and writes: every type for the baseline and for
    /// the fastest variants of each adapter class (GPUs: `blocktile`, `splitk`; CPU drivers:
    /// `texture`, `subgroup-texture`), f32 for the rest. `coopmat` stores Q, K, V in every
    /// type but reads X and W as f16 ([`Kernel::input_element`]).
    pub fn elements(self) -> &'static [ElementType] {
        self.def().elements()
    }

    /// The type the kernel reads X and W in, for a run stored as `element`: f16 for
    /// `coopmat` (the host converts on upload), `element` for the rest.
    pub fn input_element(self, element: ElementType) -> ElementType {
        self.def().input_element(element)
    }

    /// The variant's WGSL source (of its default configuration, for a variant with several).
    pub fn source(self) -> ShaderSource {
        self.def().source()
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kernel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kernel::ALL
            .into_iter()
            .find(|k| s == k.name() || s.parse::<u32>().ok() == Some(k.number()))
            .ok_or_else(|| {
                let known: Vec<String> = Kernel::ALL
                    .iter()
                    .map(|k| format!("{} ({})", k.name(), k.number()))
                    .collect();
                format!(
                    "unknown kernel '{s}'; known kernels: {}, or 'all'",
                    known.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for k in Kernel::ALL {
            assert_eq!(k.name().parse::<Kernel>(), Ok(k));
            assert_eq!(k.number().to_string().parse::<Kernel>(), Ok(k));
        }
        assert!("bogus".parse::<Kernel>().unwrap_err().contains("naive (0)"));
        let past = Kernel::ALL.len().to_string();
        assert!(past.parse::<Kernel>().is_err());
    }

    #[test]
    fn the_typed_kernels_are_the_ones_whose_shaders_read_words() {
        for k in Kernel::ALL {
            let wgsl = k.source().wgsl;
            let typed = wgsl.contains("fn widen(") || wgsl.contains("array<vec4<f16>>");
            assert_eq!(k.elements().len() == ElementType::ALL.len(), typed, "{k}");
        }
    }

    #[test]
    fn the_subgroup_requirement_matches_the_shader_text() {
        for k in Kernel::ALL {
            assert_eq!(k.needs_subgroups(), k.source().needs_subgroups(), "{k}");
        }
    }
}
