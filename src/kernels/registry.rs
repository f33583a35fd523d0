//! The one list of kernel variants ([`with_variants!`]), the [`Kernel`] enum it makes, and
//! what a [`Kernel`] answers by name and number: each answer is its definition's
//! ([`Kernel::def`], made from the same list in `variants/mod.rs`), a
//! [`VariantDef`](super::VariantDef) in the variant's module under `variants/`.

use super::shaders::ShaderSource;
use crate::binding::BindingKind;
use crate::element::{ElementType, OperandTypes};
use std::fmt;
use std::str::FromStr;

/// Calls `$then!` with the list of built-in variants, one line each: the doc and arm of
/// [`Kernel`] (its number is its place here), then its module under `variants/` and the
/// definition there. The one place a variant is listed.
macro_rules! with_variants {
    ($then:ident) => {
        $then! {
            /// One output per invocation, no workgroup memory.
            Naive => naive::Naive,
            /// Workgroup-memory tiles over d_model.
            Tiled => tiled::Tiled,
            /// Register-blocked 4x4 per invocation over workgroup-memory tiles.
            Regtile => regtile::Regtile,
            /// Register-blocked, storage only, no barriers.
            Direct => direct::Direct,
            /// `Direct` with X shared through subgroup broadcasts.
            Subgroup => subgroup::Subgroup,
            /// Register-blocked, X and W read through textures.
            Texture => texture::Texture,
            /// `Texture` with X shared through subgroup broadcasts.
            SubgroupTexture => subgroup_texture::SubgroupTexture,
            /// Register-blocked 8x8 per invocation over 128x128 workgroup tiles, with prefetch.
            Blocktile => blocktile::Blocktile,
            /// `Blocktile` over ranges of d_model (split-K), partial sums added by a second pass.
            Splitk => splitk::Splitk,
            /// Cooperative matrices (tensor cores): f16 inputs, f32 (or f16) accumulator.
            Coopmat => coopmat::Coopmat,
            /// Matrix-vector for few tokens: W transposed, each element used for every token.
            Decode => decode::Decode,
        }
    };
}
pub(crate) use with_variants;

/// Makes [`Kernel`] and [`Kernel::ALL`] from the list.
macro_rules! kernel_enum {
    ($($(#[$doc:meta])* $arm:ident => $module:ident::$def:ident,)*) => {
        /// A projection kernel variant: one of the built-ins, whose discriminant is its
        /// number on the command line, or a user's kernel. Its definition is
        /// [`Kernel::def`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kernel {
            $($(#[$doc])* $arm,)*
            /// A user's kernel (`qkv try FILE.wgsl`): its facts come from its file
            /// ([`CustomKernel`](super::CustomKernel)), never from a built-in's.
            User,
        }

        impl Kernel {
            /// Every built-in variant, in number order (a user's kernel is not one).
            pub const ALL: [Kernel; [$(stringify!($arm)),*].len()] = [$(Kernel::$arm),*];
        }
    };
}

with_variants!(kernel_enum);

/// Shortcuts to the variant's definition ([`Kernel::def`]).
impl Kernel {
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

    /// The operand types the variant reads and stores for a run given in `given`, or None
    /// where it cannot run in that type ([`VariantDef::reads`](super::VariantDef::reads)):
    /// `coopmat` reads X and W as f16 (the host converts on upload).
    pub fn reads(self, given: ElementType) -> Option<OperandTypes> {
        self.def().reads(given)
    }

    /// The types a run of the variant may be given in, in [`ElementType::ALL`]'s order:
    /// every type for the baseline, `coopmat` and the fastest variants of each adapter class
    /// (GPUs: `blocktile`, `splitk`; CPU drivers: `texture`, `subgroup-texture`), f32 for
    /// the rest.
    pub fn dtypes(self) -> Vec<ElementType> {
        ElementType::ALL
            .into_iter()
            .filter(|&e| self.reads(e).is_some())
            .collect()
    }

    /// The variant's WGSL source (of its default configuration, for a variant with
    /// several); None for a user's kernel, whose source is its file.
    pub fn source(self) -> Option<ShaderSource> {
        self.def().sources().first().copied()
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
        assert_eq!(Kernel::User.number() as usize, Kernel::ALL.len());
        assert!(Kernel::User.source().is_none());
        assert!(
            "user".parse::<Kernel>().is_err(),
            "a user's kernel is not named"
        );
    }

    #[test]
    fn the_typed_kernels_are_the_ones_whose_shaders_read_words() {
        for k in Kernel::ALL {
            let wgsl = k.source().unwrap().wgsl;
            let typed = wgsl.contains("fn widen(") || wgsl.contains("array<vec4<f16>>");
            assert_eq!(k.dtypes().len() == ElementType::ALL.len(), typed, "{k}");
        }
    }

    #[test]
    fn the_subgroup_requirement_matches_the_shader_text() {
        for k in Kernel::ALL {
            assert_eq!(
                k.needs_subgroups(),
                k.source().unwrap().needs_subgroups(),
                "{k}"
            );
        }
    }
}
