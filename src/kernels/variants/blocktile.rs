//! `blocktile` (7): 8x8 outputs per invocation from 128x128 workgroup-memory tiles of X and
//! W, the next d_model step prefetched into registers while this one multiplies. Reads every
//! storage type; the fastest f32-FMA variant on GPUs.

use super::super::variant::prelude::*;

/// The variant.
pub struct Blocktile;

/// `shaders/qkv_blocktile.wgsl`.
pub const SOURCE: ShaderSource = shader!("qkv_blocktile.wgsl", parts: tile128);

/// The same with W in a checkpoint's formats (`shaders/parts/w_blocks.wgsl`): the prefill
/// kernel of quantized weights, each W element dequantized as it is staged.
pub const SOURCE_BLOCKS: ShaderSource = shader!(
    "qkv_blocktile.wgsl",
    label: "qkv_blocktile.wgsl (W in blocks)",
    tile128: ["w_blocks.wgsl"],
    end: ["tile_emit.wgsl"]
);

/// [`SOURCE`] with QK-norm and RoPE fused into its store (`shaders/parts/tile_rope_norm.wgsl`).
pub const SOURCE_ROPE_NORM: ShaderSource = shader!(
    "qkv_blocktile.wgsl",
    label: "qkv_blocktile.wgsl (QK-norm and RoPE)",
    tile128: ["w4_words.wgsl"],
    end: ["rope_norm.wgsl", "tile_rope_norm.wgsl"]
);

/// [`SOURCE_BLOCKS`] with QK-norm and RoPE fused into its store.
pub const SOURCE_BLOCKS_ROPE_NORM: ShaderSource = shader!(
    "qkv_blocktile.wgsl",
    label: "qkv_blocktile.wgsl (W in blocks, QK-norm and RoPE)",
    tile128: ["w_blocks.wgsl"],
    end: ["rope_norm.wgsl", "tile_rope_norm.wgsl"]
);

impl VariantDef for Blocktile {
    fn name(&self) -> &'static str {
        "blocktile"
    }
    fn description(&self) -> &'static str {
        "8x8 outputs per invocation from 128x128 workgroup-memory tiles, prefetched"
    }
    fn default_config(&self) -> KernelConfig {
        KernelConfig::new(Kernel::Blocktile, &[])
    }
    fn resolve(&self, _: &KernelConfig) -> Result<Resolved, String> {
        Ok(Resolved::plain(
            self,
            SOURCE,
            (128, 128),
            256,
        ))
    }
    fn reads(&self, given: ElementType) -> Option<OperandTypes> {
        reads_every_type(given)
    }
    fn w_align(&self) -> u32 {
        4
    }
    fn blocks_source(&self, _: &KernelConfig) -> Option<(ShaderSource, BindingKind)> {
        Some((SOURCE_BLOCKS, BindingKind::Storage))
    }
    fn rope_norm_source(&self, _: &KernelConfig, blocks: bool) -> Option<ShaderSource> {
        Some(if blocks {
            SOURCE_BLOCKS_ROPE_NORM
        } else {
            SOURCE_ROPE_NORM
        })
    }
    fn sources(&self) -> Vec<ShaderSource> {
        vec![
            SOURCE,
            SOURCE_BLOCKS,
            SOURCE_ROPE_NORM,
            SOURCE_BLOCKS_ROPE_NORM,
        ]
    }
    fn sweep(&self, _: &SweepTarget) -> Vec<KernelConfig> {
        vec![self.default_config()]
    }
    /// First on a GPU; last on a CPU driver, where the texture kernels win.
    fn sweep_rank(&self, on_cpu: bool) -> u32 {
        if on_cpu {
            90
        } else {
            10
        }
    }
}
