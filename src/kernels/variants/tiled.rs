//! `tiled` (1): 16x16 tiles of X and W staged in workgroup memory over d_model, one output per
//! invocation: the classic GPU layout, and the default of a library caller who names none.

use super::super::variant::prelude::*;

/// The variant.
pub struct Tiled;

/// `shaders/qkv_tiled.wgsl`.
pub const SOURCE: ShaderSource = shader!(
    "qkv_tiled.wgsl",
    parts: ["params.wgsl", "x_f32.wgsl", "w_f32.wgsl", "store.wgsl"]
);

impl VariantDef for Tiled {
    fn name(&self) -> &'static str {
        "tiled"
    }
    fn description(&self) -> &'static str {
        "16x16 workgroup-memory tiles of X and W over d_model"
    }
    fn default_config(&self) -> KernelConfig {
        KernelConfig::new(Kernel::Tiled, &[])
    }
    fn resolve(&self, _: &KernelConfig) -> Result<Resolved, String> {
        Ok(Resolved::plain(self, SOURCE, (16, 16), 256))
    }
    fn sources(&self) -> Vec<ShaderSource> {
        vec![SOURCE]
    }
    fn sweep(&self, _: &SweepTarget) -> Vec<KernelConfig> {
        vec![self.default_config()]
    }
    fn sweep_rank(&self, _: bool) -> u32 {
        80
    }
}
