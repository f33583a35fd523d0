//! A kernel configuration resolved once into a plain value: the typed parameters of its
//! variant, its shader sources, override constants, binding kind, output tile, W padding,
//! split-K scratch, dispatch grid and what the adapter must offer. The plan, the projector,
//! the tuner and the context read these fields; nothing downstream asks the variant again.

use super::config::{CoopBlock, KernelConfig};
use super::registry::{Kernel, Requirements, ShaderSource};
use crate::adapter::AdapterSummary;
use crate::binding::BindingKind;

/// Most 16-byte pieces of X (or of W) one invocation of `coopmat` stages per step (the
/// generated shaders hold this many; scripts/gen_kernels.py's COOPMAT_MAX_PIECES).
pub const COOPMAT_MAX_PIECES: u32 = 8;
pub use crate::element::ElementType;
use std::fmt;

/// A variant with its tuning parameters, typed: each field means one thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// One output per invocation.
    Naive,
    /// 16x16 workgroup-memory tiles.
    Tiled,
    /// 4x4 outputs per invocation over tiles, `wgx` x `wgy` invocations.
    Regtile {
        /// Invocations along output columns.
        wgx: u32,
        /// Invocations along token rows.
        wgy: u32,
    },
    /// 8x4 outputs per invocation, `wg` invocations along columns.
    Direct {
        /// Invocations per workgroup.
        wg: u32,
    },
    /// 32x4 outputs per invocation, X by subgroup broadcasts.
    Subgroup {
        /// Invocations per workgroup.
        wg: u32,
    },
    /// 16x4 outputs per invocation through textures.
    Texture {
        /// Invocations per workgroup.
        wg: u32,
    },
    /// 32x4 outputs per invocation through textures and subgroup broadcasts.
    SubgroupTexture {
        /// Invocations per workgroup.
        wg: u32,
    },
    /// 8x8 outputs per invocation over 128x128 tiles.
    Blocktile,
    /// Blocktile over `splits` ranges of d_model, then a reduce pass.
    Splitk {
        /// Ranges of d_model, one partial sum each.
        splits: u32,
    },
    /// Cooperative matrices of `tile` x `tile`, `block` per workgroup.
    Coopmat {
        /// M = N = K of the matrices: 8 or 16.
        tile: u32,
        /// An f32 accumulator (else f16).
        f32_accumulator: bool,
        /// The block, its subgroups' parts, the step along d_model and the stages.
        block: CoopBlock,
    },
}

/// How X and W lie in GPU memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperandLayout {
    /// X [tokens, d_model] as given; W [d_model, w_stride], each row's columns zero-padded
    /// to [`KernelSpec::w_align`].
    RowMajor,
    /// X [tokens, KS] and W transposed, [n_cols, KS]: both operands rows along d_model, KS
    /// being d_model rounded up to 8 with zeros past it, so that every row starts on 16
    /// bytes and a kernel reads whole 16-byte pieces (`coopmat`). The params' `w_stride` is
    /// KS.
    KMajor,
}

/// Everything about one kernel configuration that the plan, the projector, the tuner and the
/// context need, resolved once from a [`KernelConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct KernelSpec {
    /// The configuration as named (for reports and the tuning cache).
    pub config: KernelConfig,
    /// Its typed parameters.
    pub variant: Variant,
    /// The main pass.
    pub source: ShaderSource,
    /// The split-K reduce pass, run after the main pass over each column block.
    pub reduce: Option<ShaderSource>,
    /// Override constants of the variant (the projector adds `HAS_BIAS`, `HEAD_LAYOUT`).
    pub constants: Vec<(&'static str, f64)>,
    /// How the kernel binds its operands.
    pub binding: BindingKind,
    /// Output elements (columns, rows) one workgroup covers.
    pub tile: (u32, u32),
    /// W's rows are padded with zeros to a multiple of this many columns.
    pub w_align: u32,
    /// How X and W lie in GPU memory.
    pub operands: OperandLayout,
    /// Ranges of d_model summed separately (1 without split-K); the partial sums take
    /// `splits x rows x columns` elements.
    pub splits: u32,
    /// Invocations per workgroup of the main pass; for `coopmat`, subgroups instead: the
    /// invocations are that many times the device's subgroup size
    /// ([`workgroup_invocations`](Self::workgroup_invocations)).
    pub invocations: u32,
    /// The storage type of X, W and Q, K, V.
    pub element: ElementType,
    /// What the adapter must offer.
    pub requires: Requirements,
    /// Whether every buffer and workgroup-memory access of the kernel is within the length
    /// the host's plan gives it, by the kernel's own guards, whatever the shape, chunking,
    /// column blocks, layout and subgroup count; and no workgroup memory is read before it is
    /// written. Only such a kernel may be built without runtime checks
    /// ([`crate::ContextOptions::unchecked_kernels`]); tests/unchecked.rs holds the bounds.
    /// `coopmat` only, for now.
    pub bounds_proven: bool,
}

impl From<Kernel> for KernelSpec {
    /// The spec of a variant's default configuration (always valid).
    fn from(kernel: Kernel) -> Self {
        KernelSpec::new(KernelConfig::from(kernel)).expect("default configurations are valid")
    }
}

impl KernelSpec {
    /// Checks `config` and resolves it, storing f32 ([`with_element`](Self::with_element)
    /// for another type).
    pub fn new(config: KernelConfig) -> Result<Self, String> {
        config.check()?;
        if config.kernel == Kernel::Coopmat && config.wg == 0 {
            return Err(format!(
                "{config}: its tile is chosen from the adapter's cooperative-matrix \
                 configurations (KernelConfig::for_adapter), or give one: coopmat(tile=8) or \
                 coopmat(tile=16)"
            ));
        }
        let (wg, wgy) = (config.wg, config.wgy);
        let variant = match config.kernel {
            Kernel::Naive => Variant::Naive,
            Kernel::Tiled => Variant::Tiled,
            Kernel::Regtile => Variant::Regtile { wgx: wg, wgy },
            Kernel::Direct => Variant::Direct { wg },
            Kernel::Subgroup => Variant::Subgroup { wg },
            Kernel::Texture => Variant::Texture { wg },
            Kernel::SubgroupTexture => Variant::SubgroupTexture { wg },
            Kernel::Blocktile => Variant::Blocktile,
            Kernel::Splitk => Variant::Splitk { splits: wg },
            Kernel::Coopmat => Variant::Coopmat {
                tile: wg,
                f32_accumulator: wgy == 32,
                block: config.block,
            },
        };
        let (constants, tile, invocations, splits) = match variant {
            Variant::Naive | Variant::Tiled => (vec![], (16, 16), 256, 1),
            Variant::Regtile { wgx, wgy } => (
                vec![("WG_X", wgx as f64), ("WG_Y", wgy as f64)],
                (wgx * 4, wgy * 4),
                wgx * wgy,
                1,
            ),
            Variant::Direct { wg } => (vec![("WG", wg as f64)], (wg * 4, 8), wg, 1),
            Variant::Subgroup { wg } | Variant::SubgroupTexture { wg } => {
                (vec![("WG", wg as f64)], (wg * 4, 32), wg, 1)
            }
            Variant::Texture { wg } => (vec![("WG", wg as f64)], (wg * 4, 16), wg, 1),
            Variant::Blocktile => (vec![], (128, 128), 256, 1),
            Variant::Splitk { splits } => {
                (vec![("SPLITS", splits as f64)], (128, 128), 256, splits)
            }
            // WG (the subgroups) is set from the device's subgroup size (`device_constants`).
            Variant::Coopmat { block: b, .. } => (
                vec![
                    ("SM", (b.bm / b.wm) as f64),
                    ("SN", (b.bn / b.wn) as f64),
                    ("BK", b.bk as f64),
                    ("BK_LOG2", b.bk.trailing_zeros() as f64),
                    ("STAGES", b.stages as f64),
                ],
                (b.bn, b.bm),
                b.subgroups(),
                1,
            ),
        };
        let kernel = config.kernel;
        let (source, mut requires) = (kernel.source(), kernel.requires());
        let source = match variant {
            Variant::Coopmat {
                tile,
                f32_accumulator,
                block,
            } => {
                requires.cooperative_matrix = Some((tile, f32_accumulator));
                super::registry::coopmat_source(tile, f32_accumulator, block.wn / tile)
            }
            _ => source,
        };
        let operands = match variant {
            Variant::Coopmat { .. } => OperandLayout::KMajor,
            _ => OperandLayout::RowMajor,
        };
        Ok(Self {
            config,
            variant,
            source,
            reduce: kernel.reduce_pass(),
            constants,
            binding: kernel.binding(),
            tile,
            w_align: kernel.w_align(),
            operands,
            splits,
            invocations,
            element: ElementType::F32,
            requires,
            bounds_proven: matches!(variant, Variant::Coopmat { .. }),
        })
    }

    /// The same kernel storing X, W and Q, K, V as `element`; an error for a variant that
    /// reads only f32 (naming those that read every type).
    pub fn with_element(self, element: ElementType) -> Result<Self, String> {
        self.with_element_on(element, None)
    }

    /// [`with_element`](Self::with_element), naming in the error only the variants that
    /// read `element` and that `summary`'s adapter can run (`coopmat` is not suggested on
    /// an adapter without cooperative matrices).
    pub fn with_element_on(
        self,
        element: ElementType,
        summary: Option<&AdapterSummary>,
    ) -> Result<Self, String> {
        let kernel = self.kernel();
        if !kernel.elements().contains(&element) {
            let typed: Vec<&str> = Kernel::ALL
                .iter()
                .filter(|k| k.elements().contains(&element))
                .filter(|&&k| {
                    summary.is_none_or(|s| KernelConfig::from(k).unsupported_on(s).is_none())
                })
                .map(|k| k.name())
                .collect();
            return Err(format!(
                "kernel {self} reads only f32; in {element} run one of: {}",
                typed.join(", ")
            ));
        }
        Ok(Self { element, ..self })
    }

    /// The variant.
    pub fn kernel(&self) -> Kernel {
        self.config.kernel
    }

    /// The type X and W are read in on the GPU: f16 for `coopmat`, else the storage type.
    pub fn input_element(&self) -> ElementType {
        self.kernel().input_element(self.element)
    }

    /// Invocations per workgroup on a device with `summary`'s subgroup size: for `coopmat`,
    /// its block's subgroups (bm/wm x bn/wn) of the smallest size the device runs, else fixed.
    pub fn workgroup_invocations(&self, summary: &AdapterSummary) -> u32 {
        self.workgroup_invocations_for(summary.subgroup_size.0)
    }

    /// Invocations per workgroup with subgroups of `subgroup_size`.
    pub fn workgroup_invocations_for(&self, subgroup_size: u32) -> u32 {
        match self.variant {
            Variant::Coopmat { .. } => self.invocations * subgroup_size.max(1),
            _ => self.invocations,
        }
    }

    /// Whether the kernel accumulates in f16 (`coopmat(acc=16)`): the tolerance widens
    /// ([`crate::Tolerance::for_f16_accumulator`]).
    pub fn accumulates_in_f16(&self) -> bool {
        matches!(
            self.variant,
            Variant::Coopmat {
                f32_accumulator: false,
                ..
            }
        )
    }

    /// Override constants that depend on the device: `coopmat`'s WG.
    pub fn device_constants(&self, summary: &AdapterSummary) -> Vec<(&'static str, f64)> {
        match self.variant {
            Variant::Coopmat { .. } => {
                vec![("WG", self.workgroup_invocations(summary) as f64)]
            }
            // The kernels that read half types widen f16 in the hardware where it has f16
            // and its conversions (the shaders' NATIVE_F16); only f16 runs declare the need.
            _ if self.element == ElementType::F16 && summary.shader_f16 && summary.f16_unpack => {
                vec![("NATIVE_F16", 1.0)]
            }
            _ => Vec::new(),
        }
    }

    /// Whether X and W are bound as textures (see [`crate::binding::TextureLayout`]).
    pub fn reads_textures(&self) -> bool {
        self.binding == BindingKind::Textured
    }

    /// Why the adapter (or device) `summary` describes cannot run this kernel, if it
    /// cannot: a feature, the storage buffers its binding kind needs, or more invocations
    /// per workgroup than the device allows.
    pub fn unsupported_on(&self, summary: &AdapterSummary) -> Option<String> {
        if let Some(why) = self.requires.unmet_on(self, summary) {
            return Some(why);
        }
        let (min, max) = summary.subgroup_size;
        if matches!(self.variant, Variant::Coopmat { .. }) && min != max {
            // Its workgroup is a fixed number of subgroups; with a varying size the driver may
            // run fewer, wider ones (the kernel then writes NaN, so it would only fail the check).
            return Some(format!(
                "kernel {self} needs one subgroup size (its workgroup is a fixed number of \
                 subgroups); '{}' runs subgroups of {min} to {max}",
                summary.name
            ));
        }
        let max = summary
            .max_compute_invocations_per_workgroup
            .min(summary.max_compute_workgroup_size_x);
        let invocations = self.workgroup_invocations(summary);
        if let Variant::Coopmat {
            tile,
            f32_accumulator,
            block,
        } = self.variant
        {
            let bytes = block.workgroup_bytes(tile, f32_accumulator);
            if bytes > summary.max_compute_workgroup_storage_size {
                return Some(format!(
                    "kernel {self} needs {bytes} bytes of workgroup memory; '{}' allows {} \
                     (max_compute_workgroup_storage_size): give fewer stages, a smaller bk \
                     or a smaller block",
                    summary.name, summary.max_compute_workgroup_storage_size
                ));
            }
            let (xp, wp) = block.pieces_per_invocation(invocations);
            if xp.max(wp) > COOPMAT_MAX_PIECES {
                return Some(format!(
                    "kernel {self} would stage {} 16-byte pieces per invocation per step on \
                     '{}' (subgroups of {}); the shader holds {COOPMAT_MAX_PIECES}: give a \
                     smaller bk or more subgroups",
                    xp.max(wp),
                    summary.name,
                    summary.subgroup_size.0
                ));
            }
        }
        (invocations > max).then(|| {
            format!(
                "kernel {self} needs workgroups of {} invocations; '{}' allows {max} \
                 (max_compute_invocations_per_workgroup / max_compute_workgroup_size_x){}",
                invocations,
                summary.name,
                if self.config.wg > 0 && !matches!(self.kernel(), Kernel::Splitk | Kernel::Coopmat)
                {
                    "; give a smaller wg, or --kernel auto".to_string()
                } else {
                    String::new()
                }
            )
        })
    }

    /// The row stride of X on the GPU, in elements, for `d_model`: d_model, or KS (d_model
    /// rounded up to 8) for [`OperandLayout::KMajor`].
    pub const fn x_stride(&self, d_model: u32) -> u32 {
        match self.operands {
            OperandLayout::RowMajor => d_model,
            OperandLayout::KMajor => d_model.div_ceil(8) * 8,
        }
    }

    /// The row stride of a W block of `n_cols` columns over `d_model` (the params'
    /// `w_stride`): `n_cols` rounded up to [`w_align`](Self::w_align), or for a transposed W
    /// ([`OperandLayout::KMajor`]) KS, as X's. The padding is zeros and is never stored.
    pub const fn w_stride(&self, d_model: u32, n_cols: u32) -> u32 {
        match self.operands {
            OperandLayout::RowMajor => n_cols.div_ceil(self.w_align) * self.w_align,
            OperandLayout::KMajor => self.x_stride(d_model),
        }
    }

    /// Elements of a W block of `n_cols` columns over `d_model` on the GPU.
    pub const fn w_len(&self, d_model: u32, n_cols: u32) -> u64 {
        let stride = self.w_stride(d_model, n_cols) as u64;
        match self.operands {
            OperandLayout::RowMajor => d_model as u64 * stride,
            OperandLayout::KMajor => n_cols as u64 * stride,
        }
    }

    /// The main pass's grid over `rows` tokens and `cols` columns of one W block.
    pub fn grid(&self, rows: u32, cols: u32) -> (u32, u32, u32) {
        (
            cols.div_ceil(self.tile.0),
            rows.div_ceil(self.tile.1),
            self.splits,
        )
    }

    /// The reduce pass's workgroups of `wg` invocations over `rows` x `cols` partial sums (a
    /// grid-stride loop, so any count covers the block), at most `max_groups`; None without
    /// a reduce pass.
    pub fn reduce_groups(&self, rows: u32, cols: u32, max_groups: u32, wg: u32) -> Option<u32> {
        self.reduce.map(|_| {
            let elements = rows as u64 * cols as u64;
            elements
                .div_ceil(wg.max(1) as u64)
                .clamp(1, max_groups.max(1) as u64) as u32
        })
    }

    /// Elements of the split-K partial sums for `rows` tokens and a widest W block of
    /// `cols` columns: [splits, rows, cols]; 0 without split-K.
    pub fn scratch_len(&self, rows: u32, cols: u32) -> u64 {
        match self.reduce {
            Some(_) => self.splits as u64 * rows as u64 * cols as u64,
            None => 0,
        }
    }

    /// The override constants a pipeline is compiled with: the variant's, plus `HAS_BIAS`,
    /// `HEAD_LAYOUT` and `ELEM` (the storage type).
    pub fn pipeline_constants(&self, bias: bool, head_layout: bool) -> Vec<(&'static str, f64)> {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let mut constants = vec![
            ("HAS_BIAS", flag(bias)),
            ("HEAD_LAYOUT", flag(head_layout)),
            ("ELEM", self.element.shader_code() as f64),
        ];
        constants.extend(self.constants.iter().copied());
        constants
    }
}

impl fmt::Display for KernelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

/// Shortcuts for a configuration at hand (the CLI, tests): each resolves the spec and asks it.
impl KernelConfig {
    /// Why this adapter cannot run the configuration, if it cannot (an invalid configuration
    /// included).
    pub fn unsupported_on(&self, summary: &AdapterSummary) -> Option<String> {
        match KernelSpec::new(self.for_adapter(summary)) {
            Ok(spec) => spec.unsupported_on(summary),
            Err(e) => Some(e),
        }
    }

    /// This configuration on an adapter: a bare `coopmat` becomes
    /// [`coopmat_for`](Self::coopmat_for) (8x8 with an f32 accumulator where the adapter
    /// offers none, so that it is refused with the reason); anything else is unchanged.
    pub fn for_adapter(self, summary: &AdapterSummary) -> KernelConfig {
        if self.kernel != Kernel::Coopmat || self.wg != 0 {
            return self;
        }
        Self::coopmat_for(summary).unwrap_or(KernelConfig::coopmat(
            8,
            true,
            CoopBlock::default_for(8),
        ))
    }

    /// The `coopmat` configuration for an adapter: the largest tile it offers with an f32
    /// accumulator, else (only then) the largest with an f16 one, with that tile's default
    /// block ([`CoopBlock::default_for`]); None without cooperative matrices. `--kernel
    /// coopmat` without parameters runs this.
    pub fn coopmat_for(summary: &AdapterSummary) -> Option<KernelConfig> {
        let offered = |tile, f32_acc| {
            summary
                .cooperative_matrix
                .contains(&crate::adapter::CoopMatrix::f16_inputs(tile, f32_acc))
        };
        [(16, true), (8, true), (16, false), (8, false)]
            .into_iter()
            .find(|&(t, a)| offered(t, a))
            .map(|(tile, f32_acc)| {
                KernelConfig::coopmat(tile, f32_acc, CoopBlock::default_for(tile))
            })
    }

    /// Output elements (columns, rows) covered by one workgroup (0, 0 for an invalid
    /// configuration).
    pub fn workgroup_tile(&self) -> (u32, u32) {
        KernelSpec::new(*self).map_or((0, 0), |s| s.tile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_resolve_typed_parameters_grids_and_strides() {
        let s = KernelSpec::new("regtile(wgx=8,wgy=16)".parse().unwrap()).unwrap();
        assert_eq!(s.variant, Variant::Regtile { wgx: 8, wgy: 16 });
        assert_eq!((s.tile, s.invocations), ((32, 64), 128));
        assert_eq!(s.grid(65, 33), (2, 2, 1));
        assert_eq!(s.w_stride(7, 10), 12);
        assert_eq!((s.x_stride(7), s.w_len(7, 10)), (7, 84));
        let k = KernelSpec::new("splitk(splits=8)".parse().unwrap()).unwrap();
        assert_eq!(k.variant, Variant::Splitk { splits: 8 });
        assert_eq!(
            (k.grid(129, 128), k.binding),
            ((1, 2, 8), BindingKind::SplitK)
        );
        assert_eq!(k.scratch_len(10, 20), 8 * 10 * 20);
        assert_eq!(k.reduce_groups(10, 1000, 4096, 256), Some(40));
        assert_eq!(k.reduce_groups(10, 1000, 4096, 128), Some(79));
        assert_eq!(k.reduce_groups(1000, 1000, 16, 256), Some(16));
        let n = KernelSpec::from(Kernel::Naive);
        assert_eq!((n.w_stride(3, 10), n.scratch_len(10, 20)), (10, 0));
        let c = KernelSpec::new("coopmat(tile=16)".parse().unwrap()).unwrap();
        assert_eq!(c.operands, OperandLayout::KMajor);
        assert_eq!(
            (c.x_stride(45), c.w_stride(45, 10), c.w_len(45, 10)),
            (48, 48, 480)
        );
        assert_eq!((c.tile, c.grid(129, 257)), ((128, 128), (3, 2, 1)));
        assert_eq!(&c.constants[..2], &[("SM", 2.0), ("SN", 4.0)]);
        assert_eq!(n.reduce_groups(1, 1, 1, 256), None);
        assert!(KernelSpec::new(KernelConfig::new(Kernel::Direct, 0, 0)).is_err());
        assert_eq!(
            n.pipeline_constants(true, false),
            vec![("HAS_BIAS", 1.0), ("HEAD_LAYOUT", 0.0), ("ELEM", 0.0)]
        );
        let b = KernelSpec::from(Kernel::Blocktile)
            .with_element(ElementType::Bf16)
            .unwrap();
        assert_eq!(b.pipeline_constants(false, true)[2], ("ELEM", 2.0));
        let e = KernelSpec::from(Kernel::Tiled)
            .with_element(ElementType::F16)
            .unwrap_err();
        assert!(
            e.contains("reads only f32") && e.contains("blocktile"),
            "{e}"
        );
    }
}
