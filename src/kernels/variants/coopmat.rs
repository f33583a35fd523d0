//! `coopmat` (9): cooperative matrices (tensor cores), laid out as CUTLASS's and llama.cpp's
//! cooperative-matrix matmuls: a `bm` x `bn` block per workgroup of subgroups that each own
//! `wm` x `wn` outputs (4 x 2 or 4 x 4 accumulator matrices), d_model walked `bk` at a time
//! through `stages` staging buffers. Reads X and W as f16 (the host converts), W transposed
//! ([`OperandLayout::KMajor`]); stores Q, K, V in every type. Its body,
//! `shaders/qkv_coopmat.wgsl` (written by `scripts/gen_kernels.py`), makes eight sources, one
//! per (tile, accumulator, matrices per subgroup), each composed with that tile's and
//! accumulator's type part and that grid's part.

use super::super::variant::prelude::*;
use crate::adapter::CoopMatrix;

/// The variant.
pub struct Coopmat;

/// Most 16-byte pieces of X (or of W) one invocation stages per step (the generated shaders
/// hold this many; scripts/gen_kernels.py's COOPMAT_MAX_PIECES).
pub const COOPMAT_MAX_PIECES: u32 = 8;

/// The sources, one per (tile, accumulator, accumulator matrices per subgroup): 8x8 then
/// 16x16; f32 then f16 accumulators; 4x2 then 4x4 matrices ([`coopmat_source`]). The block
/// shape, d_model step and stages are override constants.
pub const COOPMAT_SOURCES: [ShaderSource; 8] = {
    // The body, a type part, the bindings, the matrices per subgroup, the store.
    macro_rules! coopmat {
        ($tile:literal, $acc:literal, $grid:literal) => {
            crate::kernels::shaders::coop_shader!(
                "qkv_coopmat.wgsl",
                $tile,
                $acc,
                concat!(", ", $grid),
                parts: [
                    "params.wgsl",
                    "f16_rows.wgsl",
                    concat!("coop_", $grid, ".wgsl"),
                    "store.wgsl",
                ]
            )
        };
    }
    [
        coopmat!(8, "f32", "4x2"),
        coopmat!(8, "f32", "4x4"),
        coopmat!(8, "f16", "4x2"),
        coopmat!(8, "f16", "4x4"),
        coopmat!(16, "f32", "4x2"),
        coopmat!(16, "f32", "4x4"),
        coopmat!(16, "f16", "4x2"),
        coopmat!(16, "f16", "4x4"),
    ]
};

/// The source for `tile` x `tile` matrices (8 or 16) with an f32 accumulator (or an f16
/// one), each subgroup owning 4 x `fn_` of them (`fn_` 2 or 4).
pub const fn coopmat_source(tile: u32, f32_accumulator: bool, fn_: u32) -> ShaderSource {
    let i = if tile == 16 { 4 } else { 0 }
        + if f32_accumulator { 0 } else { 2 }
        + if fn_ == 4 { 1 } else { 0 };
    COOPMAT_SOURCES[i]
}

/// The blocks the tuner tries with `tile` x `tile` matrices: on a GPU the tile's default
/// ([`CoopBlock::default_for`]), 128x128 16x16 outputs of 4 subgroups of 4x4 matrices (as
/// CUTLASS's 64x64 warp tiles), 128x256 and 256x128 of 8 subgroups of 4x4 (the wide one also
/// in one stage, for devices with less workgroup memory), and 8 subgroups of 4x2 with steps
/// of 64 in one stage; on a CPU driver the default alone.
pub fn coopmat_blocks(tile: u32, on_cpu: bool) -> Vec<CoopBlock> {
    let d = CoopBlock::default_for(tile);
    if on_cpu {
        return vec![d];
    }
    let t = tile;
    let square = CoopBlock {
        bm: 8 * t,
        bn: 8 * t,
        wm: 4 * t,
        wn: 4 * t,
        bk: 32,
        stages: 2,
    };
    let mut out = vec![d];
    for b in [
        square,
        CoopBlock {
            bn: 16 * t,
            ..square
        },
        CoopBlock {
            bm: 16 * t,
            ..square
        },
        CoopBlock {
            bn: 16 * t,
            stages: 1,
            ..square
        },
        CoopBlock {
            wn: 2 * t,
            bk: 64,
            stages: 1,
            ..square
        },
    ] {
        if !out.contains(&b) {
            out.push(b);
        }
    }
    out
}

/// The configuration for an adapter: the largest tile it offers with an f32 accumulator,
/// else (only then) the largest with an f16 one, with that tile's default block; None
/// without cooperative matrices.
pub fn coopmat_for(summary: &AdapterSummary) -> Option<KernelConfig> {
    let offered = |tile, f32_acc| {
        summary
            .cooperative_matrix
            .contains(&CoopMatrix::f16_inputs(tile, f32_acc))
    };
    [(16, true), (8, true), (16, false), (8, false)]
        .into_iter()
        .find(|&(t, a)| offered(t, a))
        .map(|(tile, f32_acc)| KernelConfig::coopmat(tile, f32_acc, CoopBlock::default_for(tile)))
}

/// Its parameters' names, in the order of [`CoopParams::values`].
const PARAMS: &[&str] = &["tile", "acc", "bm", "bn", "wm", "wn", "bk", "stages"];

/// `coopmat`'s parameters, typed: what a complete configuration's values mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CoopParams {
    /// M = N = K of the matrices: 8 or 16.
    pub tile: u32,
    /// An f32 accumulator (`acc=32`; else `acc=16`, f16).
    pub f32_accumulator: bool,
    /// The block, its subgroups' parts, the step along d_model and the stages.
    pub block: CoopBlock,
}

impl CoopParams {
    /// The typed parameters of a `coopmat` configuration; None for a bare one (its tile
    /// comes from the adapter) or another variant's.
    pub fn of(c: &KernelConfig) -> Option<Self> {
        if c.kernel != Kernel::Coopmat || c.value(0) == 0 {
            return None;
        }
        let v = |i| c.value(i);
        Some(Self {
            tile: v(0),
            f32_accumulator: v(1) == 32,
            block: CoopBlock {
                bm: v(2),
                bn: v(3),
                wm: v(4),
                wn: v(5),
                bk: v(6),
                stages: v(7),
            },
        })
    }

    /// The configuration's values, in [`PARAMS`]'s order.
    pub const fn values(&self) -> [u32; 8] {
        let b = self.block;
        let acc = if self.f32_accumulator { 32 } else { 16 };
        [self.tile, acc, b.bm, b.bn, b.wm, b.wn, b.bk, b.stages]
    }
}

impl KernelConfig {
    /// `coopmat` with `tile` x `tile` matrices, an f32 accumulator or an f16 one, and `block`.
    pub const fn coopmat(tile: u32, f32_accumulator: bool, block: CoopBlock) -> Self {
        let p = CoopParams {
            tile,
            f32_accumulator,
            block,
        };
        KernelConfig::new(Kernel::Coopmat, &p.values())
    }
}

impl VariantDef for Coopmat {
    fn name(&self) -> &'static str {
        "coopmat"
    }
    fn description(&self) -> &'static str {
        "cooperative matrices (tensor cores): f16 inputs, 128x128 blocks of 8 subgroups, 4x2 \
         matrices each, two stages"
    }
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    fn ranges(&self) -> &'static str {
        "tile = 8 | 16, acc = 32 | 16 (the accumulator's bits), bm x bn outputs per \
         workgroup of subgroups owning wm x wn each (wm = 4·tile, wn = 2·tile | 4·tile, \
         at most 16 subgroups), bk = 16 | 32 | 64 along d_model, stages = 1 | 2; none: the \
         adapter's largest tile, f32 accumulator where offered, and the tile's default block \
         (16x16: 128x128 of 8 subgroups of 4x2 matrices, bk 32, 2 stages; 8x8: 128x64 of 8 \
         subgroups of 4x4, 1 stage)"
    }
    /// Bare: the tile, accumulator and block come from the adapter
    /// ([`KernelConfig::for_adapter`]).
    fn default_config(&self) -> KernelConfig {
        KernelConfig::new(Kernel::Coopmat, &[])
    }
    fn valid(&self, c: &KernelConfig) -> bool {
        if c.values().iter().all(|&v| v == 0) {
            return true;
        }
        CoopParams::of(c).is_some_and(|p| {
            matches!(p.tile, 8 | 16) && matches!(c.value(1), 16 | 32) && p.block.check(p.tile)
        })
    }
    /// A tile without an accumulator: f32, the one to use wherever it is offered; a block's
    /// unnamed fields keep the tile's defaults.
    fn complete(&self, c: &mut KernelConfig) {
        let tile = c.value(0);
        if tile == 0 {
            return;
        }
        let defaults = CoopParams {
            tile,
            f32_accumulator: true,
            block: CoopBlock::default_for(tile),
        }
        .values();
        for (i, default) in defaults.into_iter().enumerate() {
            if c.value(i) == 0 {
                c.set(i, default);
            }
        }
    }
    /// A bare `coopmat` becomes [`coopmat_for`] the adapter (8x8 with an f32 accumulator
    /// where it offers none, so that it is refused with the reason).
    fn for_adapter(&self, c: KernelConfig, summary: &AdapterSummary) -> KernelConfig {
        if c.value(0) != 0 {
            return c;
        }
        coopmat_for(summary).unwrap_or(KernelConfig::coopmat(8, true, CoopBlock::default_for(8)))
    }
    fn resolve(&self, c: &KernelConfig) -> Result<Resolved, String> {
        let Some(p) = CoopParams::of(c) else {
            return Err(format!(
                "{c}: its tile is chosen from the adapter's cooperative-matrix \
                 configurations (KernelConfig::for_adapter), or give one: coopmat(tile=8) or \
                 coopmat(tile=16)"
            ));
        };
        let (tile, f32_accumulator, b) = (p.tile, p.f32_accumulator, p.block);
        let mut requires = self.requires();
        requires.cooperative_matrix = Some((tile, f32_accumulator));
        Ok(Resolved {
            source: coopmat_source(tile, f32_accumulator, b.wn / tile),
            // WG (the invocations) is set from the device's subgroup size
            // (`device_constants`).
            constants: vec![
                ("SM", (b.bm / b.wm) as f64),
                ("SN", (b.bn / b.wn) as f64),
                ("BK", b.bk as f64),
                ("BK_LOG2", b.bk.trailing_zeros() as f64),
                ("STAGES", b.stages as f64),
            ],
            tile: (b.bn, b.bm),
            invocations: b.subgroups(),
            splits: 1,
            requires,
            arithmetic: Arithmetic::Matrix {
                tile,
                f32_accumulator,
            },
            binding: self.binding(),
        })
    }
    fn requires(&self) -> Requirements {
        Requirements {
            min_subgroup_size: Some(1),
            storage_buffers: self.binding().storage_buffers(),
            shader_f16: true,
            naga_wgsl: true,
            ..Requirements::default()
        }
    }
    /// X and W as f16 in every run type (the host converts them on upload); Q, K, V in the
    /// run's type.
    fn reads(&self, given: ElementType) -> Option<OperandTypes> {
        Some(OperandTypes {
            x: ElementType::F16,
            w: ElementType::F16,
            out: given,
        })
    }
    fn operands(&self) -> OperandLayout {
        OperandLayout::KMajor
    }
    /// Every source, 8x8 with an f32 accumulator and 4x2 matrices first.
    fn sources(&self) -> Vec<ShaderSource> {
        COOPMAT_SOURCES.to_vec()
    }
    fn bounds_proven(&self) -> bool {
        true
    }
    /// For f16 runs only (in another type the inputs would be rounded to f16, which a tuner
    /// must not choose for the user), with an f32 accumulator only (an f16-only offer runs
    /// when asked for by name), over [`coopmat_blocks`].
    fn sweep(&self, target: &SweepTarget) -> Vec<KernelConfig> {
        if target.element != ElementType::F16 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for c in &target.summary.cooperative_matrix {
            if c.inputs == "f16" && c.accumulator == "f32" && matches!(c.size, 8 | 16) {
                for block in coopmat_blocks(c.size, target.on_cpu) {
                    out.push(KernelConfig::coopmat(c.size, true, block));
                }
            }
        }
        out
    }
    fn sweep_rank(&self, _: bool) -> u32 {
        0
    }
    /// Its workgroup is its block's subgroups of the smallest size the device runs.
    fn workgroup_invocations(&self, spec: &KernelSpec, subgroup_size: u32) -> u32 {
        spec.invocations * subgroup_size.max(1)
    }
    fn device_constants(
        &self,
        spec: &KernelSpec,
        summary: &AdapterSummary,
    ) -> Vec<(&'static str, f64)> {
        vec![("WG", spec.workgroup_invocations(summary) as f64)]
    }
    fn unsupported_on(&self, spec: &KernelSpec, summary: &AdapterSummary) -> Option<String> {
        let (min, max) = summary.subgroup_size;
        if min != max {
            // Its workgroup is a fixed number of subgroups; with a varying size the driver may
            // run fewer, wider ones (the kernel then writes NaN, so it would only fail the check).
            return Some(format!(
                "kernel {spec} needs one subgroup size (its workgroup is a fixed number of \
                 subgroups); '{}' runs subgroups of {min} to {max}",
                summary.name
            ));
        }
        let CoopParams {
            tile,
            f32_accumulator,
            block,
        } = CoopParams::of(&spec.config)?;
        let bytes = block.workgroup_bytes(tile, f32_accumulator);
        if bytes > summary.max_compute_workgroup_storage_size {
            return Some(format!(
                "kernel {spec} needs {bytes} bytes of workgroup memory; '{}' allows {} \
                 (max_compute_workgroup_storage_size): give fewer stages, a smaller bk \
                 or a smaller block",
                summary.name, summary.max_compute_workgroup_storage_size
            ));
        }
        let (xp, wp) = block.pieces_per_invocation(spec.workgroup_invocations(summary));
        (xp.max(wp) > COOPMAT_MAX_PIECES).then(|| {
            format!(
                "kernel {spec} would stage {} 16-byte pieces per invocation per step on \
                 '{}' (subgroups of {}); the shader holds {COOPMAT_MAX_PIECES}: give a \
                 smaller bk or more subgroups",
                xp.max(wp),
                summary.name,
                summary.subgroup_size.0
            )
        })
    }
}
