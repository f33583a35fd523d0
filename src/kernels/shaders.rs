//! The WGSL sources the crate compiles, each a file under `shaders/` included into the
//! binary: the utility shaders here, each variant's in its module (`variants/`). The CLI,
//! the tests and the benchmarks all load shaders through these, so there is exactly one
//! copy of each.

/// A WGSL module compiled into the binary: a file under `shaders/`, or a kernel's body
/// composed with its parts (`shaders/parts/`, [`shader!`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShaderSource {
    /// File name under `shaders/` (the kernel's body, or the label of a composed module), used
    /// as the shader module's label.
    pub file: &'static str,
    /// The WGSL text.
    pub wgsl: &'static str,
    /// Entry point.
    pub entry_point: &'static str,
}

/// The source of `shaders/<file>`, entry point `main`; with `parts`, the module composed at
/// compile time of each part (`shaders/parts/<part>`, in the order given, each followed by a
/// newline) and then the kernel's body (`shaders/<file>`), so that it stays a `&'static str`
/// (the browser build uses the same). Parts come first: they declare the override constants
/// every kernel has, which naga 30 wants before any array sized by an override expression
/// (the bodies' workgroup arrays), and a part that needs `enable` directives holds them and
/// comes first of all. With `label`, the module's label where one body serves several sources
/// (the cooperative-matrix kernels, one per type part): the pipeline cache keys modules by it.
/// Two lists of parts have names, for the variants that share them: `textured` (X and W as
/// textures, rows of vec4 registers: texture, subgroup-texture) and `tile128` (X and W as
/// words, the 128 x 128 tile: blocktile, splitk); `tile128: [w], end: [...]` is the tile's
/// list with W read through `w` (`w4_words.wgsl`, or `w_blocks.wgsl` for a checkpoint's
/// formats) and the tile's end (`tile_emit.wgsl`, or QK-norm and RoPE fused).
macro_rules! shader {
    ($file:literal) => {
        $crate::kernels::shaders::shader!($file, label: $file, parts: [])
    };
    ($file:literal, parts: textured) => {
        $crate::kernels::shaders::shader!(
            $file,
            parts: [
                "params.wgsl",
                "x_texture.wgsl",
                "w_texture.wgsl",
                "widen.wgsl",
                "rows.wgsl",
                "store.wgsl",
            ]
        )
    };
    ($file:literal, parts: tile128) => {
        $crate::kernels::shaders::shader!(
            $file,
            label: $file,
            tile128: ["w4_words.wgsl"],
            end: ["tile_emit.wgsl"]
        )
    };
    ($file:literal, label: $label:expr, tile128: [$w:expr], end: [$($end:expr),* $(,)?]) => {
        $crate::kernels::shaders::shader!(
            $file,
            label: $label,
            parts: [
                "params.wgsl",
                "x_words.wgsl",
                "w_buffer.wgsl",
                $w,
                "widen.wgsl",
                "tile128.wgsl",
                "store.wgsl",
                $($end),*
            ]
        )
    };
    ($file:literal, parts: [$($part:expr),* $(,)?]) => {
        $crate::kernels::shaders::shader!($file, label: $file, parts: [$($part),*])
    };
    ($file:literal, label: $label:expr, parts: [$($part:expr),* $(,)?]) => {
        $crate::kernels::ShaderSource {
            file: $label,
            wgsl: concat!(
                $(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/parts/", $part)), "\n",)*
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $file)),
            ),
            entry_point: "main",
        }
    };
}
pub(crate) use shader;

/// A cooperative-matrix source: `body` composed with the type part of `tile` x `tile` matrices
/// and an `acc` accumulator (`coop<tile>_<acc>.wgsl`, first: it holds the `enable` directives)
/// and then `parts`, labelled by its body, its type and `grid` (the matrices per subgroup, or
/// nothing).
macro_rules! coop_shader {
    ($body:literal, $tile:literal, $acc:literal, $grid:expr, parts: [$($part:expr),* $(,)?]) => {
        $crate::kernels::shaders::shader!(
            $body,
            label: concat!($body, " (", $tile, "x", $tile, ", ", $acc, " accumulator", $grid, ")"),
            parts: [concat!("coop", $tile, "_", $acc, ".wgsl"), $($part),*]
        )
    };
}
pub(crate) use coop_shader;

/// The utility shader that fills output buffers with NaN before each dispatch.
pub const FILL_NAN: ShaderSource = shader!("fill_nan.wgsl");

/// The epilogue pass (QK-norm and RoPE, [`crate::epilogue`]) after a kernel run with
/// `QK_SCRATCH`, composed with the parts it shares with every kernel (the params and the
/// store) and with `blocktile`'s fused epilogue (`rope_norm.wgsl`).
pub const EPILOGUE: ShaderSource = shader!(
    "qkv_epilogue.wgsl",
    parts: ["params.wgsl", "store.wgsl", "rope_norm.wgsl"]
);

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
    coop_shader!("peak_coopmat.wgsl", 8, "f32", "", parts: []),
    coop_shader!("peak_coopmat.wgsl", 8, "f16", "", parts: []),
    coop_shader!("peak_coopmat.wgsl", 16, "f32", "", parts: []),
    coop_shader!("peak_coopmat.wgsl", 16, "f16", "", parts: []),
];

/// The utility shaders: everything compiled that is not a projection kernel.
pub const UTILITY_SHADERS: [ShaderSource; 9] = [
    FILL_NAN,
    EPILOGUE,
    SUBGROUP_SIZE,
    PEAK_FMA,
    PEAK_COPY,
    PEAK_COOPMAT_SOURCES[0],
    PEAK_COOPMAT_SOURCES[1],
    PEAK_COOPMAT_SOURCES[2],
    PEAK_COOPMAT_SOURCES[3],
];

impl ShaderSource {
    /// Whether the shader uses subgroup operations (it reads a subgroup builtin).
    pub fn needs_subgroups(&self) -> bool {
        self.wgsl.contains("@builtin(subgroup_")
    }
}
