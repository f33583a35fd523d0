//! `texture` (5): 16x4 outputs per invocation, X and W read through textures (see
//! [`crate::binding::TextureLayout`]); `wg` invocations per workgroup. Reads every storage
//! type; the fastest variant on CPU drivers.

use super::super::variant::prelude::*;

/// The variant.
pub struct Texture;

/// `shaders/qkv_texture.wgsl`.
pub const SOURCE: ShaderSource = shader!("qkv_texture.wgsl", parts: textured);

impl VariantDef for Texture {
    fn name(&self) -> &'static str {
        "texture"
    }
    fn description(&self) -> &'static str {
        "16x4 outputs per invocation, X and W read through textures"
    }
    fn params(&self) -> &'static [&'static str] {
        WG_PARAM
    }
    fn ranges(&self) -> &'static str {
        "wg = 1..=256"
    }
    fn default_config(&self) -> KernelConfig {
        KernelConfig::new(Kernel::Texture, &[32])
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
            16,
        ))
    }
    fn binding(&self) -> BindingKind {
        BindingKind::Textured
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
        [16, 32]
            .map(|wg| KernelConfig::new(Kernel::Texture, &[wg]))
            .to_vec()
    }
    fn sweep_rank(&self, _: bool) -> u32 {
        40
    }
    fn smaller_workgroup_hint(&self) -> &'static str {
        "give a smaller wg"
    }
}
