//! What an adapter must offer to run a kernel, and the sentence that says what it lacks.

use std::fmt;

/// What an adapter must offer to run a kernel. Fields, not branches: the next element types
/// and cooperative matrices add requirements here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Requirements {
    /// Subgroup operations with subgroups of at least this many invocations.
    pub min_subgroup_size: Option<u32>,
    /// Storage buffers bound in the compute stage (the binding kind's).
    pub storage_buffers: u32,
    /// f16 in shaders (`SHADER_F16`).
    pub shader_f16: bool,
    /// A cooperative-matrix configuration: `tile` x `tile` x `tile`, f16 inputs, an f32
    /// accumulator (`true`) or an f16 one.
    pub cooperative_matrix: Option<(u32, bool)>,
    /// WGSL that only wgpu's naga reads: subgroup builtins without `enable subgroups;`
    /// (naga 30 rejects the directive; the standard and browsers require it) and
    /// `enable wgpu_cooperative_matrix` (naga's own extension). The browser's WebGPU
    /// compiles WGSL itself, so these kernels do not run there.
    pub naga_wgsl: bool,
}

impl Requirements {
    /// What a kernel sharing X through subgroup broadcasts needs: subgroups of at least 8,
    /// naga's WGSL, and the storage buffers its binding kind binds.
    pub fn subgroup_broadcasts(storage_buffers: u32) -> Self {
        Self {
            min_subgroup_size: Some(8),
            storage_buffers,
            naga_wgsl: true,
            ..Self::default()
        }
    }

    /// Why the adapter `summary` describes cannot meet these requirements, if it cannot;
    /// `kernel` names the kernel in the message.
    pub fn unmet_on(
        &self,
        kernel: impl fmt::Display,
        summary: &crate::adapter::AdapterSummary,
    ) -> Option<String> {
        if summary.max_storage_buffers_per_shader_stage < self.storage_buffers {
            return Some(format!(
                "kernel {kernel} binds {} storage buffers; '{}' allows {} \
                 (max_storage_buffers_per_shader_stage)",
                self.storage_buffers, summary.name, summary.max_storage_buffers_per_shader_stage
            ));
        }
        if self.shader_f16 && !summary.shader_f16 {
            return Some(format!(
                "kernel {kernel} needs f16 in shaders (SHADER_F16), which '{}' does not offer",
                summary.name
            ));
        }
        if let Some((tile, f32_acc)) = self.cooperative_matrix {
            let want = crate::adapter::CoopMatrix::f16_inputs(tile, f32_acc);
            if !summary.cooperative_matrix.contains(&want) {
                let offers: Vec<String> = summary
                    .cooperative_matrix
                    .iter()
                    .map(|c| c.to_string())
                    .collect();
                return Some(format!(
                    "kernel {kernel} needs cooperative matrices {want}; '{}' offers {}",
                    summary.name,
                    if offers.is_empty() {
                        "none (Vulkan's VK_KHR_cooperative_matrix or Metal's simdgroup \
                         matrices, through wgpu's EXPERIMENTAL_COOPERATIVE_MATRIX)"
                            .to_string()
                    } else {
                        offers.join(", ")
                    }
                ));
            }
        }
        if self.naga_wgsl && !summary.naga_wgsl {
            return Some(format!(
                "kernel {kernel} is written in the WGSL wgpu's naga reads (subgroup builtins \
                 with no `enable subgroups;`, or naga's cooperative-matrix extension); '{}' \
                 is the browser's WebGPU, whose own compiler reads standard WGSL",
                summary.name
            ));
        }
        let min = self.min_subgroup_size?;
        if !summary.subgroup {
            Some(format!(
                "kernel {kernel} needs subgroup operations, which '{}' does not offer",
                summary.name
            ))
        } else if summary.subgroup_size.0 < min {
            Some(format!(
                "kernel {kernel} needs subgroups of at least {min} invocations; '{}' may use {}",
                summary.name, summary.subgroup_size.0
            ))
        } else {
            None
        }
    }
}
