//! `blocktile` (7): 8x8 outputs per invocation from 128x128 workgroup-memory tiles of X and
//! W, the next d_model step prefetched into registers while this one multiplies. Reads every
//! storage type; the fastest f32-FMA variant on GPUs.

use super::super::variant::prelude::*;

/// The variant.
pub struct Blocktile;

/// `shaders/qkv_blocktile.wgsl`.
pub const SOURCE: ShaderSource = shader!("qkv_blocktile.wgsl", parts: tile128);

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
    fn sources(&self) -> Vec<ShaderSource> {
        vec![SOURCE]
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
