//! `splitk` (8): `blocktile` over `splits` ranges of d_model, each range's partial sums
//! stored apart and added by a second pass (`reduce`, in the same file): it fills compute
//! units that a small batch would leave idle.

use super::super::variant::prelude::*;

/// The variant.
pub struct Splitk;

/// `shaders/qkv_splitk.wgsl`: entry points `main` (the partial sums) and `reduce`.
pub const SOURCE: ShaderSource = shader!("qkv_splitk.wgsl", parts: tile128);

impl VariantDef for Splitk {
    fn name(&self) -> &'static str {
        "splitk"
    }
    fn description(&self) -> &'static str {
        "blocktile over `splits` ranges of d_model, partial sums added by a second pass"
    }
    fn params(&self) -> &'static [&'static str] {
        &["splits"]
    }
    fn ranges(&self) -> &'static str {
        "splits = 1..=64"
    }
    fn default_config(&self) -> KernelConfig {
        KernelConfig::new(Kernel::Splitk, &[4])
    }
    fn valid(&self, c: &KernelConfig) -> bool {
        (1..=64).contains(&c.value(0))
    }
    fn resolve(&self, c: &KernelConfig) -> Result<Resolved, String> {
        let splits = c.value(0);
        Ok(Resolved {
            constants: vec![("SPLITS", splits as f64)],
            splits,
            ..Resolved::plain(self, SOURCE, (128, 128), 256)
        })
    }
    fn binding(&self) -> BindingKind {
        BindingKind::SplitK
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
    fn reduce(&self) -> Option<ShaderSource> {
        Some(ShaderSource {
            entry_point: "reduce",
            ..SOURCE
        })
    }
    /// On a GPU only: a CPU driver has no compute units idle.
    fn sweep(&self, target: &SweepTarget) -> Vec<KernelConfig> {
        if target.on_cpu {
            return Vec::new();
        }
        [2, 4, 8, 16]
            .map(|s| KernelConfig::new(Kernel::Splitk, &[s]))
            .to_vec()
    }
    fn sweep_rank(&self, _: bool) -> u32 {
        20
    }
}
