//! A kernel configuration resolved once into a plain value: its shader sources, override constants, binding kind, output tile, W padding,
//! split-K scratch, dispatch grid and what the adapter must offer. The plan, the projector,
//! the tuner and the context read these fields; what depends on the device is asked of the
//! variant's definition here, and nothing downstream asks the variant again.

use super::config::KernelConfig;
use super::registry::Kernel;
use super::requirements::Requirements;
use super::shaders::ShaderSource;
use crate::adapter::AdapterSummary;
use crate::binding::BindingKind;
pub use crate::element::{ElementType, OperandTypes};
use crate::quant::WeightType;
use crate::shape::QkvShape;
use std::fmt;

/// The arithmetic a kernel multiplies and adds with: what bounds its rounding error
/// ([`crate::Tolerance::for_kernel`]) and which measured peak it is compared with
/// ([`crate::peak`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arithmetic {
    /// f32 fused multiply-adds, whatever the storage type.
    F32Fma,
    /// Cooperative matrices of `tile` x `tile` with f16 inputs and an f32 (or f16)
    /// accumulator.
    Matrix {
        /// M = N = K of the matrices.
        tile: u32,
        /// An f32 accumulator (else f16).
        f32_accumulator: bool,
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

/// Bytes past the last part of a W kept in its stored formats ([`KernelSpec::w_block_bytes`]):
/// the kernels read a unit's words as the vec4s that hold them, up to 48 bytes from the
/// vec4 of its first word (`shaders/parts/w_blocks.wgsl`), and a buffer whose length is not
/// a multiple of 16 ends in a part of a vec4 they cannot index.
pub const W_BLOCK_PAD: u64 = 48;

/// Where each part of a W kept in its stored formats starts: on 16 bytes, a vec4 of the
/// kernels' view, so that rows of f32, f16 and bf16 elements (d_model a multiple of 32)
/// are whole vec4s, each read with one load (`shaders/parts/w_blocks.wgsl`).
pub const W_PART_ALIGN: u64 = 16;

/// What a spec made from a user's kernel carries: its name for reports, and whether it takes
/// the host's `NATIVE_F16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustomInfo {
    /// The file name (or the page's label) it came from.
    pub label: &'static str,
    /// It declares `override NATIVE_F16: bool` (set where the device converts f16 itself).
    pub native_f16: bool,
}

/// Everything about one kernel configuration that the plan, the projector, the tuner and the
/// context need, resolved once from a [`KernelConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct KernelSpec {
    /// The configuration as named (for reports and the tuning cache).
    pub config: KernelConfig,
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
    /// The type X, W and Q, K, V are each stored in on the GPU, as the variant reads the
    /// run's type ([`VariantDef::reads`](super::VariantDef::reads)); the run's type is the
    /// outputs' ([`dtype`](Self::dtype)).
    pub types: OperandTypes,
    /// What the adapter must offer.
    pub requires: Requirements,
    /// The arithmetic it multiplies and adds with (what bounds its error, which peak it is
    /// compared with).
    pub arithmetic: Arithmetic,
    /// Whether every buffer and workgroup-memory access of the kernel is within the length
    /// the host's plan gives it, by the kernel's own guards, whatever the shape, chunking,
    /// column blocks, layout and subgroup count; and no workgroup memory is read before it is
    /// written. Only such a kernel may be built without runtime checks
    /// ([`crate::ContextOptions::unchecked_kernels`]); tests/unchecked.rs holds the bounds.
    /// `coopmat` only, for now.
    pub bounds_proven: bool,
    /// A user's kernel (`qkv try`) in the place of the variant's source: its name, and
    /// whether it takes `NATIVE_F16` ([`crate::kernels::CustomKernel::spec`]).
    pub custom: Option<CustomInfo>,
    /// Wq's, Wk's and Wv's formats where W is read as a checkpoint stores it (rows along
    /// d_model, each part in its own format, dequantized in the kernel:
    /// [`with_w_formats`](Self::with_w_formats)); None where W is fused in
    /// [`types`](Self::types)' `w`.
    pub w_formats: Option<[WeightType; 3]>,
}

impl TryFrom<Kernel> for KernelSpec {
    type Error = String;

    /// The spec of a built-in variant's default configuration: an error for `coopmat`, whose
    /// tile comes from the adapter ([`KernelConfig::for_adapter`]). A user's kernel's spec
    /// comes from its file, [`CustomKernel::spec`](super::CustomKernel::spec).
    fn try_from(kernel: Kernel) -> Result<Self, String> {
        KernelSpec::new(KernelConfig::from(kernel))
    }
}

impl KernelSpec {
    /// Checks `config` and resolves it for a run in f32 ([`with_element`](Self::with_element)
    /// for another type).
    pub fn new(config: KernelConfig) -> Result<Self, String> {
        config.check()?;
        let def = config.kernel.def();
        let r = def.resolve(&config)?;
        Ok(Self {
            config,
            source: r.source,
            reduce: def.reduce(),
            constants: r.constants,
            binding: r.binding,
            tile: r.tile,
            w_align: def.w_align(),
            operands: def.operands(),
            splits: r.splits,
            invocations: r.invocations,
            types: def
                .reads(ElementType::F32)
                .ok_or_else(|| format!("kernel {config} reads no f32"))?,
            requires: r.requires,
            arithmetic: r.arithmetic,
            bounds_proven: def.bounds_proven(),
            custom: None,
            w_formats: None,
        })
    }

    /// `config` resolved for a run stored as `element` on the adapter `summary` describes,
    /// once: a bare `coopmat` takes the adapter's tile
    /// ([`KernelConfig::for_adapter`]), the configuration is checked, the element type is
    /// one the variant reads, and the adapter can run it. The error says which failed.
    pub fn resolve(
        config: KernelConfig,
        element: ElementType,
        summary: &AdapterSummary,
    ) -> Result<Self, String> {
        let spec =
            Self::new(config.for_adapter(summary))?.with_element_on(element, Some(summary))?;
        match spec.unsupported_on(summary) {
            Some(why) => Err(why),
            None => Ok(spec),
        }
    }

    /// The same kernel for a run in `element`: X, W and Q, K, V in the types the variant
    /// reads it as ([`Kernel::reads`]); an error for a variant that cannot run in it (naming
    /// those that can).
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
        let Some(types) = kernel.reads(element) else {
            let typed: Vec<&str> = Kernel::ALL
                .iter()
                .filter(|k| k.reads(element).is_some())
                .filter(|&&k| {
                    summary.is_none_or(|s| KernelConfig::from(k).unsupported_on(s).is_none())
                })
                .map(|k| k.name())
                .collect();
            let reads: Vec<&str> = kernel.dtypes().iter().map(|e| e.name()).collect();
            return Err(format!(
                "kernel {self} reads only {}; in {element} run one of: {}",
                reads.join(", "),
                typed.join(", ")
            ));
        };
        Ok(Self { types, ..self })
    }

    /// The same kernel reading W as a checkpoint stores it: Wq, Wk and Wv in `formats`,
    /// dequantized as they are read; an error naming the variants that can, for one that
    /// cannot.
    pub fn with_w_formats(self, formats: [WeightType; 3]) -> Result<Self, String> {
        let Some((source, binding)) = (self.custom.is_none())
            .then(|| self.kernel().def().blocks_source(&self.config))
            .flatten()
        else {
            let can: Vec<&str> = Kernel::ALL
                .iter()
                .filter(|k| k.def().blocks_source(&KernelConfig::from(**k)).is_some())
                .map(|k| k.name())
                .collect();
            return Err(format!(
                "kernel {self} reads W only in f32, f16 or bf16; weights in {} are read by: {}",
                formats.map(|f| f.name()).join(", "),
                can.join(", ")
            ));
        };
        Ok(Self {
            w_formats: Some(formats),
            ..self.running(source, binding)
        })
    }

    /// The same kernel running `source`, bound as `binding` (whose storage buffers it then
    /// requires).
    fn running(self, source: ShaderSource, binding: BindingKind) -> Self {
        Self {
            source,
            binding,
            requires: Requirements {
                storage_buffers: binding.storage_buffers(),
                ..self.requires
            },
            ..self
        }
    }

    /// The same kernel with QK-norm and RoPE fused into its store (bound as
    /// [`BindingKind::RopeNorm`]), where the variant has such a source; the caller sees
    /// that the heads fit its tile (`crate::projector` does, and runs the epilogue as a pass
    /// of its own otherwise).
    pub fn with_rope_norm(self) -> Result<Self, String> {
        let blocks = self.w_formats.is_some();
        let Some(source) = (self.custom.is_none())
            .then(|| self.kernel().def().rope_norm_source(&self.config, blocks))
            .flatten()
        else {
            return Err(format!(
                "kernel {self} leaves QK-norm and RoPE to a pass of their own"
            ));
        };
        Ok(self.running(source, BindingKind::RopeNorm))
    }

    /// Bytes of W on the GPU where it is read in its stored formats: each part's rows, the
    /// part padded to [`W_PART_ALIGN`] bytes, and [`W_BLOCK_PAD`] more (the kernels read a
    /// unit's bytes as the vec4s that hold them, past its end); None for a fused W, or where
    /// a part's rows are not whole blocks.
    pub fn w_block_bytes(&self, shape: &QkvShape) -> Option<u64> {
        let [q, k, v] = self.w_formats?;
        let d = shape.d_model as u64;
        let part = |ty: WeightType, rows: u32| {
            ty.row_bytes(d)
                .map(|r| (r * rows as u64).div_ceil(W_PART_ALIGN) * W_PART_ALIGN)
        };
        Some(
            part(q, shape.q_width)?
                + part(k, shape.kv_width)?
                + part(v, shape.kv_width)?
                + W_BLOCK_PAD,
        )
    }

    /// The variant.
    pub fn kernel(&self) -> Kernel {
        self.config.kernel
    }

    /// The run's type (`--dtype`, Python's `dtype=`, the page's choice): that of Q, K and
    /// V, what the user's X, W and bias are rounded to before any conversion to the type
    /// the kernel reads them in, and the one type reports name.
    pub const fn dtype(&self) -> ElementType {
        self.types.out
    }

    /// Invocations per workgroup on a device with `summary`'s subgroup size: for `coopmat`,
    /// its block's subgroups (bm/wm x bn/wn) of the smallest size the device runs, else fixed.
    pub fn workgroup_invocations(&self, summary: &AdapterSummary) -> u32 {
        self.workgroup_invocations_for(summary.subgroup_size.0)
    }

    /// Invocations per workgroup with subgroups of `subgroup_size`.
    pub fn workgroup_invocations_for(&self, subgroup_size: u32) -> u32 {
        self.kernel()
            .def()
            .workgroup_invocations(self, subgroup_size)
    }

    /// Whether the kernel accumulates in f16 (`coopmat(acc=16)`): the tolerance widens
    /// ([`crate::Tolerance::for_f16_accumulator`]).
    pub fn accumulates_in_f16(&self) -> bool {
        matches!(
            self.arithmetic,
            Arithmetic::Matrix {
                f32_accumulator: false,
                ..
            }
        )
    }

    /// Override constants that depend on the device (`coopmat`'s WG; `NATIVE_F16` where
    /// the device widens f16 in hardware and the kernel takes it).
    pub fn device_constants(&self, summary: &AdapterSummary) -> Vec<(&'static str, f64)> {
        self.kernel().def().device_constants(self, summary)
    }

    /// Whether X and W are bound as textures (see [`crate::binding::TextureLayout`]).
    pub fn reads_textures(&self) -> bool {
        self.binding == BindingKind::Textured
    }

    /// Whether X is bound as a texture ([`crate::binding::TextureLayout`]): with W as a
    /// texture of the same layout, or as texels of its bytes.
    pub fn x_texture(&self) -> bool {
        self.binding.x_texture()
    }

    /// Why the adapter (or device) `summary` describes cannot run this kernel, if it
    /// cannot: a feature, the storage buffers its binding kind needs, what the variant
    /// itself needs of the device (workgroup memory, one subgroup size), or more invocations
    /// per workgroup than the device allows.
    pub fn unsupported_on(&self, summary: &AdapterSummary) -> Option<String> {
        if let Some(why) = self.requires.unmet_on(self, summary) {
            return Some(why);
        }
        let def = self.kernel().def();
        if let Some(why) = def.unsupported_on(self, summary) {
            return Some(why);
        }
        let max = summary
            .max_compute_invocations_per_workgroup
            .min(summary.max_compute_workgroup_size_x);
        let invocations = self.workgroup_invocations(summary);
        (invocations > max).then(|| {
            let hint = match def.smaller_workgroup_hint() {
                "" => String::new(),
                h => format!("; {h}"),
            };
            format!(
                "kernel {self} needs workgroups of {invocations} invocations; '{}' allows \
                 {max} (max_compute_invocations_per_workgroup / \
                 max_compute_workgroup_size_x){hint}",
                summary.name,
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
    /// `HEAD_LAYOUT` and `ELEM`: the shaders' one type, the outputs' (which every variant but
    /// `coopmat`, whose X and W are f16 arrays, also reads X and W in).
    pub fn pipeline_constants(&self, bias: bool, head_layout: bool) -> Vec<(&'static str, f64)> {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let mut constants = vec![
            ("HAS_BIAS", flag(bias)),
            ("HEAD_LAYOUT", flag(head_layout)),
            ("ELEM", self.types.out.shader_code() as f64),
        ];
        constants.extend(self.constants.iter().copied());
        if let Some(formats) = self.w_formats {
            for (name, f) in ["FMT_Q", "FMT_K", "FMT_V"].into_iter().zip(formats) {
                constants.push((name, f.ggml_type() as f64));
            }
        }
        constants
    }
}

impl fmt::Display for KernelSpec {
    /// The configuration, or a user's kernel's label.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.custom {
            Some(c) => f.write_str(c.label),
            None => self.config.fmt(f),
        }
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

    /// This configuration on an adapter ([`VariantDef::for_adapter`](super::VariantDef::for_adapter)):
    /// a bare `coopmat` takes the adapter's tile, accumulator and block; anything else is
    /// unchanged.
    pub fn for_adapter(self, summary: &AdapterSummary) -> KernelConfig {
        self.kernel.def().for_adapter(self, summary)
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
        assert_eq!(s.constants, vec![("WG_X", 8.0), ("WG_Y", 16.0)]);
        assert_eq!((s.tile, s.invocations), ((32, 64), 128));
        assert_eq!(s.grid(65, 33), (2, 2, 1));
        assert_eq!(s.w_stride(7, 10), 12);
        assert_eq!((s.x_stride(7), s.w_len(7, 10)), (7, 84));
        let k = KernelSpec::new("splitk(splits=8)".parse().unwrap()).unwrap();
        assert_eq!((k.splits, k.constants[0]), (8, ("SPLITS", 8.0)));
        assert_eq!(
            (k.grid(129, 128), k.binding),
            ((1, 2, 8), BindingKind::SplitK)
        );
        assert_eq!(k.scratch_len(10, 20), 8 * 10 * 20);
        assert_eq!(k.reduce_groups(10, 1000, 4096, 256), Some(40));
        assert_eq!(k.reduce_groups(10, 1000, 4096, 128), Some(79));
        assert_eq!(k.reduce_groups(1000, 1000, 16, 256), Some(16));
        let n = KernelSpec::try_from(Kernel::Naive).unwrap();
        assert!(KernelSpec::try_from(Kernel::Coopmat).is_err());
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
        assert!(KernelSpec::new(KernelConfig::new(Kernel::Direct, &[0])).is_err());
        assert_eq!(
            n.pipeline_constants(true, false),
            vec![("HAS_BIAS", 1.0), ("HEAD_LAYOUT", 0.0), ("ELEM", 0.0)]
        );
        let b = KernelSpec::try_from(Kernel::Blocktile)
            .unwrap()
            .with_element(ElementType::Bf16)
            .unwrap();
        assert_eq!(b.pipeline_constants(false, true)[2], ("ELEM", 2.0));
        let e = KernelSpec::try_from(Kernel::Tiled)
            .unwrap()
            .with_element(ElementType::F16)
            .unwrap_err();
        assert!(
            e.contains("reads only f32") && e.contains("blocktile"),
            "{e}"
        );
    }

    #[test]
    fn each_variant_reads_the_run_type_into_its_operand_types() {
        for k in Kernel::ALL {
            assert!(k.dtypes().contains(&ElementType::F32), "{k}");
            for e in ElementType::ALL {
                // The outputs are always in the run's type: what reports name.
                assert!(k.reads(e).is_none_or(|t| t.out == e), "{k} in {e}");
            }
        }
        let f16 = ElementType::F16;
        let c = KernelSpec::new("coopmat(tile=16)".parse().unwrap()).unwrap();
        let coop = |out| OperandTypes {
            x: f16,
            w: f16,
            out,
        };
        assert_eq!(
            (c.types, c.dtype()),
            (coop(ElementType::F32), ElementType::F32)
        );
        // ELEM stays the outputs' type (the run's), as before the types came apart.
        assert_eq!(c.pipeline_constants(false, false)[2], ("ELEM", 0.0));
        let c = c.with_element(ElementType::Bf16).unwrap();
        assert_eq!(c.types, coop(ElementType::Bf16));
        assert_eq!(c.pipeline_constants(false, false)[2], ("ELEM", 2.0));
        let s = KernelSpec::try_from(Kernel::Splitk)
            .and_then(|s| s.with_element(f16))
            .unwrap();
        assert_eq!(s.types, OperandTypes::all(f16));
    }

    /// A GPU that offers f16 and its conversions, subgroups of 32 and 16x16 cooperative
    /// matrices with an f32 accumulator.
    fn f16_gpu() -> AdapterSummary {
        AdapterSummary::described_gpu(&[(16, true)])
    }

    #[test]
    fn the_shaders_get_the_constants_they_got_before_the_types_came_apart() {
        // The shaders are the same, so the same constants give bit-identical outputs: ELEM
        // the run's type, NATIVE_F16 in f16 runs of the kernels that read X and W in the
        // run's type (coopmat reads f16 arrays and sets only its WG).
        let gpu = f16_gpu();
        for k in Kernel::ALL {
            for e in k.dtypes() {
                let spec = KernelSpec::resolve(KernelConfig::from(k), e, &gpu).unwrap();
                let elem = ("ELEM", e.shader_code() as f64);
                assert_eq!(spec.pipeline_constants(true, true)[2], elem, "{k} in {e}");
                let native = spec.device_constants(&gpu).contains(&("NATIVE_F16", 1.0));
                let before = e == ElementType::F16 && k != Kernel::Coopmat;
                assert_eq!(native, before, "{k} in {e}");
            }
        }
    }
}
