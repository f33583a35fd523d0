//! `decode` (10): a matrix-vector kernel for few tokens, where the cost is reading W once: W
//! transposed (a row per fused column, [`OperandLayout::KMajor`]), `split` invocations
//! sharing each of a workgroup's `cols` columns, every W element used for `rows` tokens
//! (1, 4 or 8) and every X element for `each` columns (1, 2, 4 or 8) from registers; partial
//! sums added through workgroup memory. With `texels=1`, W is bound as a texture of its
//! bytes ([`BindingKind::Texels`]): the same reads, fetched as texels.

use super::super::variant::prelude::*;
use crate::kernels::spec::OperandLayout;

/// The variant.
pub struct Decode;

/// `shaders/qkv_decode.wgsl`.
pub const SOURCE: ShaderSource = shader!(
    "qkv_decode.wgsl",
    parts: [
        "params.wgsl",
        "x4_words.wgsl",
        "w_buffer.wgsl",
        "w4_words.wgsl",
        "widen.wgsl",
        "store.wgsl",
    ]
);

/// The same with W as a checkpoint stores it (`shaders/parts/w_blocks.wgsl`), each unit of
/// 32 elements dequantized once for all the workgroup's tokens.
pub const SOURCE_BLOCKS: ShaderSource = shader!(
    "qkv_decode.wgsl",
    label: "qkv_decode.wgsl (W in blocks)",
    parts: [
        "params.wgsl",
        "x4_words.wgsl",
        "w_buffer.wgsl",
        "w_blocks.wgsl",
        "widen.wgsl",
        "store.wgsl",
    ]
);

/// [`SOURCE`] with W's vec4s fetched from a texture (`shaders/parts/w_texels.wgsl`).
pub const SOURCE_TEXELS: ShaderSource = shader!(
    "qkv_decode.wgsl",
    label: "qkv_decode.wgsl (W as texels)",
    parts: [
        "params.wgsl",
        "x4_words.wgsl",
        "w_texels.wgsl",
        "w4_words.wgsl",
        "widen.wgsl",
        "store.wgsl",
    ]
);

/// [`SOURCE_BLOCKS`] with W's vec4s fetched from a texture.
pub const SOURCE_BLOCKS_TEXELS: ShaderSource = shader!(
    "qkv_decode.wgsl",
    label: "qkv_decode.wgsl (W in blocks, as texels)",
    parts: [
        "params.wgsl",
        "x4_words.wgsl",
        "w_texels.wgsl",
        "w_blocks.wgsl",
        "widen.wgsl",
        "store.wgsl",
    ]
);

/// The tokens one workgroup may serve.
const ROWS: [u32; 3] = [1, 4, 8];

/// The columns one invocation may compute.
const EACH: [u32; 4] = [1, 2, 4, 8];

impl VariantDef for Decode {
    fn name(&self) -> &'static str {
        "decode"
    }
    fn description(&self) -> &'static str {
        "matrix-vector for few tokens: W transposed (or in its blocks), split invocations per column, each X element read once for `each` columns, W's bytes from a texture (texels=1) or a buffer"
    }
    fn params(&self) -> &'static [&'static str] {
        &["cols", "split", "rows", "each", "texels"]
    }
    fn ranges(&self) -> &'static str {
        "cols x split = 1..=256, split a power of two, rows = 1, 4 or 8, each = 1, 2, 4 or 8 \
         dividing cols, texels = 0 (W a storage buffer) or 1 (W's bytes in a texture)"
    }
    fn default_config(&self) -> KernelConfig {
        KernelConfig::new(Kernel::Decode, &[16, 8, 8, 4, 1])
    }
    fn valid(&self, c: &KernelConfig) -> bool {
        let (cols, split, rows, each) = (c.value(0), c.value(1), c.value(2), c.value(3));
        cols >= 1
            && split.is_power_of_two()
            && cols.checked_mul(split).is_some_and(|n| n <= 256)
            && ROWS.contains(&rows)
            && EACH.contains(&each)
            && cols % each == 0
            && c.value(4) <= 1
    }
    fn resolve(&self, c: &KernelConfig) -> Result<Resolved, String> {
        let (cols, split, rows, each) = (c.value(0), c.value(1), c.value(2), c.value(3));
        let wg = cols / each * split;
        let constants = vec![
            ("COLS", cols as f64),
            ("SPLIT", split as f64),
            ("ROWS", rows as f64),
            ("EACH", each as f64),
            ("WG", wg as f64),
        ];
        let texels = c.value(4) == 1;
        let (source, binding) = if texels {
            (SOURCE_TEXELS, BindingKind::Texels)
        } else {
            (SOURCE, BindingKind::Storage)
        };
        let plain = Resolved::plain(self, source, (cols, rows), wg);
        Ok(Resolved {
            constants,
            requires: Requirements {
                storage_buffers: binding.storage_buffers(),
                ..plain.requires
            },
            binding,
            ..plain
        })
    }
    fn reads(&self, given: ElementType) -> Option<OperandTypes> {
        reads_every_type(given)
    }
    fn binding(&self) -> BindingKind {
        // The default configuration's: W as texels (`texels=0` binds it as storage).
        BindingKind::Texels
    }
    fn operands(&self) -> OperandLayout {
        OperandLayout::KMajor
    }
    fn blocks_source(&self, c: &KernelConfig) -> Option<(ShaderSource, BindingKind)> {
        Some(if c.value(4) == 1 {
            (SOURCE_BLOCKS_TEXELS, BindingKind::Texels)
        } else {
            (SOURCE_BLOCKS, BindingKind::Storage)
        })
    }
    fn sources(&self) -> Vec<ShaderSource> {
        vec![SOURCE_TEXELS, SOURCE, SOURCE_BLOCKS, SOURCE_BLOCKS_TEXELS]
    }
    fn sweep(&self, _: &SweepTarget) -> Vec<KernelConfig> {
        // A few shapes of workgroup for one token and for eight, eight or four columns per
        // invocation (eight the fastest for eight tokens in every format on lavapipe, and
        // for one in the block formats; four for one token in f32: BENCHMARKS.md) and one;
        // split = 1 has no barrier, which pays where rows are short. The first five also with
        // W as texels, first (as fast or faster in every format on lavapipe). The tuner's
        // proxy has the run's token count, and the others lose there quickly.
        let shapes = [
            [64, 1, 8, 8],
            [32, 4, 8, 8],
            [64, 1, 1, 8],
            [128, 1, 1, 8],
            [32, 1, 1, 4],
            [16, 8, 8, 4],
            [16, 8, 1, 4],
            [8, 8, 8, 1],
        ];
        let texels = shapes[..5].iter().map(|&[c, s, r, e]| [c, s, r, e, 1]);
        texels
            .chain(shapes.iter().map(|&[c, s, r, e]| [c, s, r, e, 0]))
            .map(|v| KernelConfig::new(Kernel::Decode, &v))
            .collect()
    }
    fn sweep_rank(&self, _: bool) -> u32 {
        40
    }
    fn smaller_workgroup_hint(&self) -> &'static str {
        "give fewer cols or a smaller split"
    }
}
