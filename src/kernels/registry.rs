//! The registry of projection kernels: every variant, its WGSL source (one `.wgsl` file per
//! variant, compiled into the binary), and the facts that do not depend on its tuning
//! parameters: how it binds its operands, what the adapter must offer, how W's rows are
//! padded. The CLI, the tests and the benchmarks all load shaders from here, so there is
//! exactly one copy of each.

use crate::binding::BindingKind;
use crate::element::ElementType;
use std::fmt;
use std::str::FromStr;

/// A projection kernel variant. The discriminant is its number on the command line.
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

/// A WGSL source file under `shaders/`, compiled into the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShaderSource {
    /// File name under `shaders/`, used as the shader module's label.
    pub file: &'static str,
    /// The WGSL text.
    pub wgsl: &'static str,
    /// Entry point.
    pub entry_point: &'static str,
}

macro_rules! shader {
    ($file:literal) => {
        ShaderSource {
            file: $file,
            wgsl: include_str!(concat!("../../shaders/", $file)),
            entry_point: "main",
        }
    };
}

/// The utility shader that fills output buffers with NaN before each dispatch.
pub const FILL_NAN: ShaderSource = shader!("fill_nan.wgsl");

/// The utility shader that measures the subgroup sizes a device runs (on Metal, where wgpu's
/// reported range is a placeholder).
pub const SUBGROUP_SIZE: ShaderSource = shader!("subgroup_size.wgsl");

/// `qkv peak`'s f32 FMA rate ([`crate::peak`]).
pub const PEAK_FMA: ShaderSource = shader!("peak_fma.wgsl");

/// `qkv peak`'s memory bandwidth (a copy).
pub const PEAK_COPY: ShaderSource = shader!("peak_copy.wgsl");

/// `qkv peak`'s cooperative-matrix rate, one source per (tile, accumulator): 8x8 with f32,
/// 8x8 with f16, 16x16 with f32, 16x16 with f16.
pub const PEAK_COOPMAT_SOURCES: [ShaderSource; 4] = [
    shader!("peak_coopmat8_f32.wgsl"),
    shader!("peak_coopmat8_f16.wgsl"),
    shader!("peak_coopmat16_f32.wgsl"),
    shader!("peak_coopmat16_f16.wgsl"),
];

/// Every shader the crate compiles, for checks that must cover all of them.
pub const ALL_SHADERS: [ShaderSource; 25] = [
    Kernel::Naive.source(),
    Kernel::Tiled.source(),
    Kernel::Regtile.source(),
    Kernel::Direct.source(),
    Kernel::Subgroup.source(),
    Kernel::Texture.source(),
    Kernel::SubgroupTexture.source(),
    Kernel::Blocktile.source(),
    Kernel::Splitk.source(),
    COOPMAT_SOURCES[0],
    COOPMAT_SOURCES[1],
    COOPMAT_SOURCES[2],
    COOPMAT_SOURCES[3],
    COOPMAT_SOURCES[4],
    COOPMAT_SOURCES[5],
    COOPMAT_SOURCES[6],
    COOPMAT_SOURCES[7],
    FILL_NAN,
    SUBGROUP_SIZE,
    PEAK_FMA,
    PEAK_COPY,
    PEAK_COOPMAT_SOURCES[0],
    PEAK_COOPMAT_SOURCES[1],
    PEAK_COOPMAT_SOURCES[2],
    PEAK_COOPMAT_SOURCES[3],
];

/// The cooperative-matrix kernel's sources, one per (tile, accumulator, accumulator matrices
/// per subgroup): 8x8 then 16x16; f32 then f16 accumulators; 4x2 then 4x4 matrices
/// ([`coopmat_source`]). The block shape, d_model step and stages are override constants.
pub const COOPMAT_SOURCES: [ShaderSource; 8] = [
    shader!("qkv_coopmat8_f32_4x2.wgsl"),
    shader!("qkv_coopmat8_f32_4x4.wgsl"),
    shader!("qkv_coopmat8_f16_4x2.wgsl"),
    shader!("qkv_coopmat8_f16_4x4.wgsl"),
    shader!("qkv_coopmat16_f32_4x2.wgsl"),
    shader!("qkv_coopmat16_f32_4x4.wgsl"),
    shader!("qkv_coopmat16_f16_4x2.wgsl"),
    shader!("qkv_coopmat16_f16_4x4.wgsl"),
];

/// The `coopmat` source for `tile` x `tile` matrices (8 or 16) with an f32 accumulator (or an
/// f16 one), each subgroup owning 4 x `fn_` of them (`fn_` 2 or 4).
pub const fn coopmat_source(tile: u32, f32_accumulator: bool, fn_: u32) -> ShaderSource {
    let i = if tile == 16 { 4 } else { 0 }
        + if f32_accumulator { 0 } else { 2 }
        + if fn_ == 4 { 1 } else { 0 };
    COOPMAT_SOURCES[i]
}

impl ShaderSource {
    /// Whether the shader uses subgroup operations (it reads a subgroup builtin).
    pub fn needs_subgroups(&self) -> bool {
        self.wgsl.contains("@builtin(subgroup_")
    }
}

/// What an adapter must offer to run a kernel. Fields, not branches: the next element types
/// and cooperative matrices add requirements here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Requirements {
    /// Subgroup operations with subgroups of at least this many invocations.
    pub min_subgroup_size: Option<u32>,
    /// Storage buffers bound in the compute stage (the binding kind's).
    pub storage_buffers: u32,
    /// f16 in shaders (`SHADER_F16`).
    pub shader_f16: bool,
    /// A cooperative-matrix configuration: `tile` x `tile` x `tile`, f16 inputs, an f32
    /// accumulator (`true`) or an f16 one.
    pub cooperative_matrix: Option<(u32, bool)>,
    /// WGSL that only wgpu's naga reads: subgroup builtins without `enable subgroups;`
    /// (naga 30 rejects the directive; the standard and browsers require it) and
    /// `enable wgpu_cooperative_matrix` (naga's own extension). The browser's WebGPU
    /// compiles WGSL itself, so these kernels do not run there.
    pub naga_wgsl: bool,
}

impl Requirements {
    /// Why the adapter `summary` describes cannot meet these requirements, if it cannot;
    /// `kernel` names the kernel in the message.
    pub fn unmet_on(
        &self,
        kernel: impl fmt::Display,
        summary: &crate::adapter::AdapterSummary,
    ) -> Option<String> {
        if summary.max_storage_buffers_per_shader_stage < self.storage_buffers {
            return Some(format!(
                "kernel {kernel} binds {} storage buffers; '{}' allows {} \
                 (max_storage_buffers_per_shader_stage)",
                self.storage_buffers, summary.name, summary.max_storage_buffers_per_shader_stage
            ));
        }
        if self.shader_f16 && !summary.shader_f16 {
            return Some(format!(
                "kernel {kernel} needs f16 in shaders (SHADER_F16), which '{}' does not offer",
                summary.name
            ));
        }
        if let Some((tile, f32_acc)) = self.cooperative_matrix {
            let want = crate::adapter::CoopMatrix::f16_inputs(tile, f32_acc);
            if !summary.cooperative_matrix.contains(&want) {
                let offers: Vec<String> = summary
                    .cooperative_matrix
                    .iter()
                    .map(|c| c.to_string())
                    .collect();
                return Some(format!(
                    "kernel {kernel} needs cooperative matrices {want}; '{}' offers {}",
                    summary.name,
                    if offers.is_empty() {
                        "none (Vulkan's VK_KHR_cooperative_matrix or Metal's simdgroup \
                         matrices, through wgpu's EXPERIMENTAL_COOPERATIVE_MATRIX)"
                            .to_string()
                    } else {
                        offers.join(", ")
                    }
                ));
            }
        }
        if self.naga_wgsl && !summary.naga_wgsl {
            return Some(format!(
                "kernel {kernel} is written in the WGSL wgpu's naga reads (subgroup builtins \
                 with no `enable subgroups;`, or naga's cooperative-matrix extension); '{}' \
                 is the browser's WebGPU, whose own compiler reads standard WGSL",
                summary.name
            ));
        }
        let min = self.min_subgroup_size?;
        if !summary.subgroup {
            Some(format!(
                "kernel {kernel} needs subgroup operations, which '{}' does not offer",
                summary.name
            ))
        } else if summary.subgroup_size.0 < min {
            Some(format!(
                "kernel {kernel} needs subgroups of at least {min} invocations; '{}' may use {}",
                summary.name, summary.subgroup_size.0
            ))
        } else {
            None
        }
    }
}

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
    pub const fn name(self) -> &'static str {
        match self {
            Kernel::Naive => "naive",
            Kernel::Tiled => "tiled",
            Kernel::Regtile => "regtile",
            Kernel::Direct => "direct",
            Kernel::Subgroup => "subgroup",
            Kernel::Texture => "texture",
            Kernel::SubgroupTexture => "subgroup-texture",
            Kernel::Blocktile => "blocktile",
            Kernel::Splitk => "splitk",
            Kernel::Coopmat => "coopmat",
        }
    }

    /// The variant's number (`--kernel 0`).
    pub const fn number(self) -> u32 {
        self as u32
    }

    /// One line on what the variant does.
    pub const fn description(self) -> &'static str {
        match self {
            Kernel::Naive => "one output per invocation, operands straight from storage",
            Kernel::Tiled => "16x16 workgroup-memory tiles of X and W over d_model",
            Kernel::Regtile => "4x4 outputs per invocation from workgroup-memory tiles, vec4 W",
            Kernel::Direct => {
                "8x4 outputs per invocation in registers, no workgroup memory or barriers"
            }
            Kernel::Subgroup => "32x4 outputs per invocation, X shared through subgroup broadcasts",
            Kernel::Texture => "16x4 outputs per invocation, X and W read through textures",
            Kernel::SubgroupTexture => {
                "32x4 outputs per invocation, X and W through textures, X shared by subgroups"
            }
            Kernel::Blocktile => {
                "8x8 outputs per invocation from 128x128 workgroup-memory tiles, prefetched"
            }
            Kernel::Splitk => {
                "blocktile over `splits` ranges of d_model, partial sums added by a second pass"
            }
            Kernel::Coopmat => {
                "cooperative matrices (tensor cores): f16 inputs, 128x128 blocks of 8 subgroups, 4x2 matrices each, two stages"
            }
        }
    }

    /// How the variant binds X and W (and whether it has partial sums).
    pub const fn binding(self) -> BindingKind {
        match self {
            Kernel::Texture | Kernel::SubgroupTexture => BindingKind::Textured,
            Kernel::Splitk => BindingKind::SplitK,
            _ => BindingKind::Storage,
        }
    }

    /// Whether the kernel reads X and W through textures (see
    /// [`crate::binding::TextureLayout`]) rather than storage buffers.
    pub const fn reads_textures(self) -> bool {
        matches!(self.binding(), BindingKind::Textured)
    }

    /// What the adapter must offer.
    pub const fn requires(self) -> Requirements {
        Requirements {
            min_subgroup_size: match self {
                Kernel::Subgroup | Kernel::SubgroupTexture => Some(8),
                Kernel::Coopmat => Some(1),
                _ => None,
            },
            storage_buffers: self.binding().storage_buffers(),
            shader_f16: matches!(self, Kernel::Coopmat),
            // The configuration depends on the tile and accumulator: set by the spec.
            cooperative_matrix: None,
            naga_wgsl: matches!(
                self,
                Kernel::Subgroup | Kernel::SubgroupTexture | Kernel::Coopmat
            ),
        }
    }

    /// Whether the kernel uses subgroup operations.
    pub const fn needs_subgroups(self) -> bool {
        self.requires().min_subgroup_size.is_some()
    }

    /// The storage types the variant reads and writes: every type for the baseline and for
    /// the fastest variants of each adapter class (GPUs: `blocktile`, `splitk`; CPU drivers:
    /// `texture`, `subgroup-texture`), f32 for the rest. `coopmat` stores Q, K, V in every
    /// type but reads X and W as f16 ([`Kernel::input_element`]).
    pub const fn elements(self) -> &'static [ElementType] {
        match self {
            Kernel::Naive
            | Kernel::Texture
            | Kernel::SubgroupTexture
            | Kernel::Blocktile
            | Kernel::Splitk
            | Kernel::Coopmat => &ElementType::ALL,
            Kernel::Tiled | Kernel::Regtile | Kernel::Direct | Kernel::Subgroup => {
                &[ElementType::F32]
            }
        }
    }

    /// The type the kernel reads X and W in, for a run stored as `element`: f16 for
    /// `coopmat` (the host converts on upload), `element` for the rest.
    pub const fn input_element(self, element: ElementType) -> ElementType {
        match self {
            Kernel::Coopmat => ElementType::F16,
            _ => element,
        }
    }

    /// W's rows are padded with zeros to a multiple of this many columns (4 for the kernels
    /// that load W as vec4; the padding is never stored). `coopmat` stores W transposed
    /// ([`crate::kernels::OperandLayout::KMajor`]): its rows are padded along d_model instead.
    pub const fn w_align(self) -> u32 {
        match self {
            Kernel::Subgroup
            | Kernel::Regtile
            | Kernel::Texture
            | Kernel::SubgroupTexture
            | Kernel::Blocktile
            | Kernel::Splitk => 4,
            Kernel::Naive | Kernel::Tiled | Kernel::Direct | Kernel::Coopmat => 1,
        }
    }

    /// The variant's WGSL source.
    pub const fn source(self) -> ShaderSource {
        match self {
            Kernel::Naive => shader!("qkv_naive.wgsl"),
            Kernel::Tiled => shader!("qkv_tiled.wgsl"),
            Kernel::Regtile => shader!("qkv_regtile.wgsl"),
            Kernel::Direct => shader!("qkv_direct.wgsl"),
            Kernel::Subgroup => shader!("qkv_subgroup.wgsl"),
            Kernel::Texture => shader!("qkv_texture.wgsl"),
            Kernel::SubgroupTexture => shader!("qkv_subgroup_texture.wgsl"),
            Kernel::Blocktile => shader!("qkv_blocktile.wgsl"),
            Kernel::Splitk => shader!("qkv_splitk.wgsl"),
            Kernel::Coopmat => coopmat_source(8, true, 2),
        }
    }

    /// The second pass that adds up partial sums (split-K kernels), if the kernel has one:
    /// the same file's `reduce` entry point.
    pub const fn reduce_pass(self) -> Option<ShaderSource> {
        match self {
            Kernel::Splitk => {
                let main = self.source();
                Some(ShaderSource {
                    entry_point: "reduce",
                    ..main
                })
            }
            _ => None,
        }
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
        assert!("10".parse::<Kernel>().is_err());
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
