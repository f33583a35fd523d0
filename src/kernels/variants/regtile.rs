//! `regtile` (2): 4x4 outputs per invocation from workgroup-memory tiles, W read as vec4;
//! `wgx` x `wgy` invocations per workgroup.

use super::super::variant::prelude::*;

/// The variant.
pub struct Regtile;

/// `shaders/qkv_regtile.wgsl`.
pub const SOURCE: ShaderSource = shader!(
    "qkv_regtile.wgsl",
    parts: ["params.wgsl", "x_f32.wgsl", "w4_f32.wgsl", "store.wgsl"]
);

impl VariantDef for Regtile {
    fn name(&self) -> &'static str {
        "regtile"
    }
    fn description(&self) -> &'static str {
        "4x4 outputs per invocation from workgroup-memory tiles, vec4 W"
    }
    fn params(&self) -> &'static [&'static str] {
        &["wgx", "wgy"]
    }
    fn ranges(&self) -> &'static str {
        "wgx = 1..=64, wgy = 1..=64, wgx·wgy <= 1024"
    }
    fn default_config(&self) -> KernelConfig {
        KernelConfig::new(Kernel::Regtile, &[16, 16])
    }
    fn valid(&self, c: &KernelConfig) -> bool {
        (1..=64).contains(&c.value(0)) && (1..=64).contains(&c.value(1)) && c.value(0) * c.value(1) <= 1024
    }
    fn resolve(&self, c: &KernelConfig) -> Result<Resolved, String> {
        let (wgx, wgy) = (c.value(0), c.value(1));
        Ok(Resolved {
            constants: vec![("WG_X", wgx as f64), ("WG_Y", wgy as f64)],
            ..Resolved::plain(
                self,
                SOURCE,
                (wgx * 4, wgy * 4),
                wgx * wgy,
            )
        })
    }
    fn w_align(&self) -> u32 {
        4
    }
    fn sources(&self) -> Vec<ShaderSource> {
        vec![SOURCE]
    }
    fn sweep(&self, _: &SweepTarget) -> Vec<KernelConfig> {
        [(16, 16), (8, 8), (16, 8), (32, 8)]
            .map(|(x, y)| KernelConfig::new(Kernel::Regtile, &[x, y]))
            .to_vec()
    }
    fn sweep_rank(&self, _: bool) -> u32 {
        70
    }
    fn smaller_workgroup_hint(&self) -> &'static str {
        "give smaller wgx and wgy"
    }
}
