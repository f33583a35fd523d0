//! What one kernel variant is: the [`VariantDef`] each module under `variants/` implements
//! (its name, parameters with their defaults and ranges, sources, binding kind, the operand
//! types it reads for each run type, requirements, output tile, override constants and
//! tuning sweep), and the plain values it resolves a configuration into. A module reads its
//! configuration's values typed in its own `resolve`; the registry ([`super::Kernel`]) lists
//! the modules; the rest of the crate reads a [`KernelSpec`](super::KernelSpec), never a
//! variant.

use super::config::KernelConfig;
use super::requirements::Requirements;
use super::shaders::ShaderSource;
use super::spec::{Arithmetic, KernelSpec, OperandLayout};
use crate::adapter::AdapterSummary;
use crate::binding::BindingKind;
use crate::element::{ElementType, OperandTypes};

/// What a configuration resolves into: the fields of a [`KernelSpec`] that depend on the
/// variant's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The main pass's source.
    pub source: ShaderSource,
    /// The variant's override constants.
    pub constants: Vec<(&'static str, f64)>,
    /// Output elements (columns, rows) one workgroup covers.
    pub tile: (u32, u32),
    /// Invocations per workgroup (for a kernel sized in subgroups, the subgroups:
    /// [`VariantDef::workgroup_invocations`]).
    pub invocations: u32,
    /// Ranges of d_model summed separately (1 without split-K).
    pub splits: u32,
    /// What the adapter must offer.
    pub requires: Requirements,
    /// The arithmetic.
    pub arithmetic: Arithmetic,
    /// How it binds X and W: the variant's [`VariantDef::binding`], or one a parameter picks
    /// (`decode(texels=1)`).
    pub binding: BindingKind,
}

/// The adapter and storage type a tuning sweep is for.
#[derive(Debug, Clone, Copy)]
pub struct SweepTarget<'a> {
    /// The adapter.
    pub summary: &'a AdapterSummary,
    /// Whether it is a CPU driver (lavapipe, SwiftShader).
    pub on_cpu: bool,
    /// The storage type tuned for.
    pub element: ElementType,
}

/// One kernel variant: every fact about it, in its own module. Defaults are those of a
/// kernel with no knobs that binds storage buffers, reads f32, pads nothing, needs nothing
/// of the adapter and is not tuned.
pub trait VariantDef: Sync {
    /// The name used on the command line and in reports.
    fn name(&self) -> &'static str;

    /// One line on what it does.
    fn description(&self) -> &'static str;

    /// The names of its tuning parameters, in the order they are printed and stored
    /// ([`KernelConfig::values`]).
    fn params(&self) -> &'static [&'static str] {
        &[]
    }

    /// The parameters' ranges, in words, for `--help` and for errors ("" without any).
    fn ranges(&self) -> &'static str {
        ""
    }

    /// The configuration it runs with when none was tuned or named.
    fn default_config(&self) -> KernelConfig;

    /// Whether a configuration's parameter values are ones its shader runs.
    fn valid(&self, _config: &KernelConfig) -> bool {
        true
    }

    /// Fills in the parameters a user's partial configuration implies (`coopmat(tile=16)`
    /// takes that tile's block).
    fn complete(&self, _config: &mut KernelConfig) {}

    /// The configuration to run on `summary`'s adapter for `config` (a variant whose
    /// parameters come from the adapter fills them in here).
    fn for_adapter(&self, config: KernelConfig, _summary: &AdapterSummary) -> KernelConfig {
        config
    }

    /// Resolves a valid configuration, reading its values typed: its source, constants,
    /// tile.
    fn resolve(&self, config: &KernelConfig) -> Result<Resolved, String>;

    /// How it binds X and W (and whether it has partial sums).
    fn binding(&self) -> BindingKind {
        BindingKind::Storage
    }

    /// What the adapter must offer, whatever the parameters (a configuration adds to it in
    /// [`resolve`](Self::resolve)).
    fn requires(&self) -> Requirements {
        Requirements {
            storage_buffers: self.binding().storage_buffers(),
            ..Requirements::default()
        }
    }

    /// The operand types it reads and stores for a run given in `given` (`--dtype`), or
    /// None where it cannot run in that type. The outputs are always in `given`
    /// ([`OperandTypes::out`]). By default f32 alone, every operand in it; a typed variant
    /// reads every type ([`reads_every_type`]).
    fn reads(&self, given: ElementType) -> Option<OperandTypes> {
        (given == ElementType::F32).then_some(OperandTypes::all(given))
    }

    /// W's rows are padded with zeros to a multiple of this many columns (the padding is
    /// never stored).
    fn w_align(&self) -> u32 {
        1
    }

    /// How X and W lie in GPU memory.
    fn operands(&self) -> OperandLayout {
        OperandLayout::RowMajor
    }

    /// Every source it may run, that of its default configuration first (the checks over
    /// every shader read them all); none for a user's kernel, whose source is its file.
    fn sources(&self) -> Vec<ShaderSource>;

    /// The main pass's source for W kept in a checkpoint's formats, dequantized as it is
    /// read (`shaders/parts/w_blocks.wgsl`), for a configuration `resolve` gave `source`,
    /// and the binding kind it reads its operands through; None for a variant that reads W
    /// only in an element type.
    fn blocks_source(&self, _config: &KernelConfig) -> Option<(ShaderSource, BindingKind)> {
        None
    }

    /// The main pass's source with QK-norm and RoPE ([`crate::epilogue`]) fused into its
    /// store, bound as [`BindingKind::RopeNorm`], for a configuration `resolve` gave a source
    /// (W in a checkpoint's formats where `blocks`, its [`blocks_source`](Self::blocks_source));
    /// None for a variant that leaves them to the epilogue pass.
    fn rope_norm_source(&self, _config: &KernelConfig, _blocks: bool) -> Option<ShaderSource> {
        None
    }

    /// The second pass that adds up partial sums, if it has one.
    fn reduce(&self) -> Option<ShaderSource> {
        None
    }

    /// Whether every access is proven in bounds by its own guards
    /// ([`KernelSpec::bounds_proven`]).
    fn bounds_proven(&self) -> bool {
        false
    }

    /// The configurations the tuner tries on `target`, in the order it tries them.
    fn sweep(&self, _target: &SweepTarget) -> Vec<KernelConfig> {
        Vec::new()
    }

    /// Where its sweep goes among the others' (lower first: likely-fast variants first, so
    /// that a slow candidate is cut short once a fast one has set the best time).
    fn sweep_rank(&self, _on_cpu: bool) -> u32 {
        u32::MAX
    }

    /// Invocations per workgroup of `spec` with subgroups of `subgroup_size`.
    fn workgroup_invocations(&self, spec: &KernelSpec, _subgroup_size: u32) -> u32 {
        spec.invocations
    }

    /// Override constants that depend on the device. By default: a kernel that reads f16
    /// widens it in the hardware where the device has f16 and its conversions (the shaders'
    /// `NATIVE_F16`).
    fn device_constants(
        &self,
        spec: &KernelSpec,
        summary: &AdapterSummary,
    ) -> Vec<(&'static str, f64)> {
        let reads_f16 = spec.types.x == ElementType::F16 || spec.types.w == ElementType::F16;
        if reads_f16 && summary.shader_f16 && summary.f16_unpack {
            vec![("NATIVE_F16", 1.0)]
        } else {
            Vec::new()
        }
    }

    /// Why `summary`'s device cannot run `spec`, beyond its requirements and its
    /// invocations per workgroup (workgroup memory, say).
    fn unsupported_on(&self, _spec: &KernelSpec, _summary: &AdapterSummary) -> Option<String> {
        None
    }

    /// What to suggest when `spec`'s workgroup is too large ("" for nothing).
    fn smaller_workgroup_hint(&self) -> &'static str {
        ""
    }
}

/// What every variant module uses.
pub(crate) mod prelude {
    pub use crate::adapter::AdapterSummary;
    pub use crate::binding::BindingKind;
    pub use crate::element::{ElementType, OperandTypes};
    pub use crate::kernels::block::CoopBlock;
    pub use crate::kernels::config::KernelConfig;
    pub use crate::kernels::registry::Kernel;
    pub use crate::kernels::requirements::Requirements;
    pub(crate) use crate::kernels::shaders::{shader, ShaderSource};
    pub use crate::kernels::spec::{Arithmetic, KernelSpec, OperandLayout};
    pub use crate::kernels::variant::{reads_every_type, Resolved, SweepTarget, VariantDef};

    /// The one parameter of the variants sized by `wg` invocations per workgroup.
    pub const WG_PARAM: &[&str] = &["wg"];
}

/// What a typed variant reads: every operand in the run's type, whichever it is (its shader
/// reads X and W as 32-bit words and widens them, and stores Q, K, V in that type).
pub fn reads_every_type(given: ElementType) -> Option<OperandTypes> {
    Some(OperandTypes::all(given))
}

impl Resolved {
    /// A configuration of a variant sized by `wg` invocations along output columns, each
    /// computing 4 columns of `rows` token rows: override constant `WG`, tile (4 wg, rows).
    pub fn per_wg(def: &dyn VariantDef, source: ShaderSource, wg: u32, rows: u32) -> Self {
        Resolved {
            constants: vec![("WG", wg as f64)],
            ..Self::plain(def, source, (wg * 4, rows), wg)
        }
    }

    /// A configuration of `def` with no override constants, no split-K, no requirement
    /// beyond the variant's own, f32 FMA arithmetic: `tile` outputs (columns, rows) per
    /// workgroup of `invocations`.
    pub fn plain(
        def: &dyn VariantDef,
        source: ShaderSource,
        tile: (u32, u32),
        invocations: u32,
    ) -> Self {
        Resolved {
            source,
            constants: Vec::new(),
            tile,
            invocations,
            splits: 1,
            requires: def.requires(),
            arithmetic: Arithmetic::F32Fma,
            binding: def.binding(),
        }
    }
}
