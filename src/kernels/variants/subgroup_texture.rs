//! `subgroup-texture` (6): `texture`'s operands through textures with `subgroup`'s sharing
//! of X by broadcasts: 32x4 outputs per invocation, `wg` invocations per workgroup. Reads W
//! in a checkpoint's formats too (its bytes as texels, [`BindingKind::TexturedTexels`]).

use super::super::variant::prelude::*;

/// The variant.
pub struct SubgroupTexture;

/// `shaders/qkv_subgroup_texture.wgsl`.
pub const SOURCE: ShaderSource = shader!("qkv_subgroup_texture.wgsl", parts: textured);

/// The same with W in a checkpoint's formats (`shaders/parts/w_blocks.wgsl`), its bytes as
/// texels: the prefill kernel of quantized weights on CPU drivers, each unit of 32 elements
/// dequantized once for the invocation's 32 rows.
pub const SOURCE_BLOCKS: ShaderSource = shader!(
    "qkv_subgroup_texture_blocks.wgsl",
    parts: [
        "params.wgsl",
        "x_texture.wgsl",
        "w_texels.wgsl",
        "w_blocks.wgsl",
        "widen.wgsl",
        "rows.wgsl",
        "store.wgsl",
    ]
);

impl VariantDef for SubgroupTexture {
    fn name(&self) -> &'static str {
        "subgroup-texture"
    }
    fn description(&self) -> &'static str {
        "32x4 outputs per invocation, X and W through textures, X shared by subgroups"
    }
    fn params(&self) -> &'static [&'static str] {
        WG_PARAM
    }
    fn ranges(&self) -> &'static str {
        "wg = 8..=256, a multiple of 8"
    }
    fn default_config(&self) -> KernelConfig {
        KernelConfig::new(Kernel::SubgroupTexture, &[32])
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
    fn binding(&self) -> BindingKind {
        BindingKind::Textured
    }
    fn requires(&self) -> Requirements {
        Requirements::subgroup_broadcasts(self.binding().storage_buffers())
    }
    fn reads(&self, given: ElementType) -> Option<OperandTypes> {
        reads_every_type(given)
    }
    fn w_align(&self) -> u32 {
        4
    }
    fn blocks_source(&self, _: &KernelConfig) -> Option<(ShaderSource, BindingKind)> {
        Some((SOURCE_BLOCKS, BindingKind::TexturedTexels))
    }
    fn sources(&self) -> Vec<ShaderSource> {
        vec![SOURCE, SOURCE_BLOCKS]
    }
    fn sweep(&self, _: &SweepTarget) -> Vec<KernelConfig> {
        [16, 32]
            .map(|wg| KernelConfig::new(Kernel::SubgroupTexture, &[wg]))
            .to_vec()
    }
    fn sweep_rank(&self, _: bool) -> u32 {
        30
    }
    fn smaller_workgroup_hint(&self) -> &'static str {
        "give a smaller wg"
    }
}
