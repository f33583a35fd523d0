//! `subgroup` (4): 32x4 outputs per invocation, each invocation loading a slice of X that
//! the subgroup shares through broadcasts; `wg` invocations per workgroup.

use super::super::variant::prelude::*;

/// The variant.
pub struct Subgroup;

/// `shaders/qkv_subgroup.wgsl`.
pub const SOURCE: ShaderSource = shader!(
    "qkv_subgroup.wgsl",
    parts: ["params.wgsl", "x_f32.wgsl", "w4_f32.wgsl", "rows.wgsl", "store.wgsl"]
);

impl VariantDef for Subgroup {
    fn name(&self) -> &'static str {
        "subgroup"
    }
    fn description(&self) -> &'static str {
        "32x4 outputs per invocation, X shared through subgroup broadcasts"
    }
    fn params(&self) -> &'static [&'static str] {
        WG_PARAM
    }
    fn ranges(&self) -> &'static str {
        "wg = 8..=256, a multiple of 8"
    }
    fn default_config(&self) -> KernelConfig {
        KernelConfig::new(Kernel::Subgroup, &[64])
    }
    fn valid(&self, c: &KernelConfig) -> bool {
        (8..=256).contains(&c.value(0)) && c.value(0).is_multiple_of(8)
    }
    fn resolve(&self, c: &KernelConfig) -> Result<Resolved, String> {
        let wg = c.value(0);
        Ok(Resolved::per_wg(
            self,
            SOURCE,
            wg,
            32,
        ))
    }
    fn requires(&self) -> Requirements {
        Requirements::subgroup_broadcasts(self.binding().storage_buffers())
    }
    fn w_align(&self) -> u32 {
        4
    }
    fn sources(&self) -> Vec<ShaderSource> {
        vec![SOURCE]
    }
    fn sweep(&self, _: &SweepTarget) -> Vec<KernelConfig> {
        [16, 32, 64]
            .map(|wg| KernelConfig::new(Kernel::Subgroup, &[wg]))
            .to_vec()
    }
    fn sweep_rank(&self, _: bool) -> u32 {
        50
    }
    fn smaller_workgroup_hint(&self) -> &'static str {
        "give a smaller wg"
    }
}
