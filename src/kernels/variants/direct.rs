//! `direct` (3): 8x4 outputs per invocation held in registers, X and W straight from
//! storage, no workgroup memory and no barriers; `wg` invocations along output columns.

use super::super::variant::prelude::*;

/// The variant.
pub struct Direct;

/// `shaders/qkv_direct.wgsl`.
pub const SOURCE: ShaderSource = shader!(
    "qkv_direct.wgsl",
    parts: ["params.wgsl", "x_f32.wgsl", "w_f32.wgsl", "store.wgsl"]
);

impl VariantDef for Direct {
    fn name(&self) -> &'static str {
        "direct"
    }
    fn description(&self) -> &'static str {
        "8x4 outputs per invocation in registers, no workgroup memory or barriers"
    }
    fn params(&self) -> &'static [&'static str] {
        WG_PARAM
    }
    fn ranges(&self) -> &'static str {
        "wg = 1..=256"
    }
    fn default_config(&self) -> KernelConfig {
        KernelConfig::new(Kernel::Direct, &[64])
    }
    fn valid(&self, c: &KernelConfig) -> bool {
        (1..=256).contains(&c.value(0))
    }
    fn resolve(&self, c: &KernelConfig) -> Result<Resolved, String> {
        let wg = c.value(0);
        Ok(Resolved::per_wg(
            self,
            SOURCE,
            wg,
            8,
        ))
    }
    fn sources(&self) -> Vec<ShaderSource> {
        vec![SOURCE]
    }
    fn sweep(&self, _: &SweepTarget) -> Vec<KernelConfig> {
        [16, 32, 64, 128]
            .map(|wg| KernelConfig::new(Kernel::Direct, &[wg]))
            .to_vec()
    }
    fn sweep_rank(&self, _: bool) -> u32 {
        60
    }
    fn smaller_workgroup_hint(&self) -> &'static str {
        "give a smaller wg"
    }
}
