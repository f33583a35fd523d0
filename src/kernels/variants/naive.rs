//! `naive` (0): one output per invocation, X and W straight from storage. The baseline every
//! other variant must beat, and the one that reads every storage type most simply.

use super::super::variant::prelude::*;

/// The variant.
pub struct Naive;

/// `shaders/qkv_naive.wgsl`: a 16x16 workgroup, one output each.
pub const SOURCE: ShaderSource = shader!(
    "qkv_naive.wgsl",
    parts: ["params.wgsl", "x_words.wgsl", "w_words.wgsl", "widen.wgsl", "store.wgsl"]
);

impl VariantDef for Naive {
    fn name(&self) -> &'static str {
        "naive"
    }
    fn description(&self) -> &'static str {
        "one output per invocation, operands straight from storage"
    }
    fn default_config(&self) -> KernelConfig {
        KernelConfig::new(Kernel::Naive, &[])
    }
    fn resolve(&self, _: &KernelConfig) -> Result<Resolved, String> {
        Ok(Resolved::plain(self, SOURCE, (16, 16), 256))
    }
    fn reads(&self, given: ElementType) -> Option<OperandTypes> {
        reads_every_type(given)
    }
    fn sources(&self) -> Vec<ShaderSource> {
        vec![SOURCE]
    }
}
