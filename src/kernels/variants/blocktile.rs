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
    parts: [
        "params.wgsl",
        "x_words.wgsl",
        "w_buffer.wgsl",
        "w_blocks.wgsl",
        "widen.wgsl",
        "tile128.wgsl",
        "store.wgsl",
    ]
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
    fn sources(&self) -> Vec<ShaderSource> {
        vec![SOURCE, SOURCE_BLOCKS]
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
