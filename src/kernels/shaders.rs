//! The WGSL sources the crate compiles, each a file under `shaders/` included into the
//! binary: the utility shaders here, each variant's in its module (`variants/`). The CLI,
//! the tests and the benchmarks all load shaders through these, so there is exactly one
//! copy of each.

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

/// The source of `shaders/<file>`, entry point `main`.
macro_rules! shader {
    ($file:literal) => {
        $crate::kernels::ShaderSource {
            file: $file,
            wgsl: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $file)),
            entry_point: "main",
        }
    };
}
pub(crate) use shader;

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

/// The utility shaders: everything compiled that is not a projection kernel.
pub const UTILITY_SHADERS: [ShaderSource; 8] = [
    FILL_NAN,
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
