//! The binding contract between the host and every shader under `shaders/`: the `Params`
//! uniform each projection kernel reads, the bind group layout of each binding kind, and how
//! the texture kernels pack X and W into textures. It sits below the context and the plan;
//! `tests/binding_contract.rs` reflects every shader with naga and checks it against this
//! module, member offsets and bindings alike.
//!
//! Bindings of every projection kernel (group 0), declared once in the parts under
//! `shaders/parts/` that each kernel is composed with:
//!
//! | binding | storage kind (`Storage`)  | `Textured`              | `Texels`                | `SplitK`          | `RopeNorm`                |
//! |---------|---------------------------|-------------------------|-------------------------|-------------------|---------------------------|
//! | 0       | params (uniform)          | params                  | params                  | params            | params                    |
//! | 1       | x (read-only storage)     | x (`texture_2d<u32>`)   | x (read-only storage)   | x                 | x                         |
//! | 2       | w (read-only storage)     | w (`texture_2d<u32>`)   | w (`texture_2d<u32>`)   | w                 | w                         |
//! | 3       | bias (read-only storage)  | bias                    | bias                    | bias              | bias                      |
//! | 4, 5, 6 | q, k, v (read-write)      | q, k, v                 | q, k, v                 | q, k, v           | q, k, v                   |
//! | 7       |                           |                         |                         | partial sums (rw) | [`EpilogueParams`]        |
//! | 8       |                           |                         |                         |                   | the epilogue's tables (r) |
//!
//! X, W and Q, K, V hold the storage type's bits ([`crate::element`]): the kernels that read
//! every type declare X and W as 32-bit words (`array<u32>`, `array<vec4<u32>>`, uint
//! textures) and Q, K, V as `array<atomic<u32>>`; the bias and split-K's partial sums are f32.
//!
//! `fill_nan.wgsl`: 0 data (read-write storage).
//!
//! `qkv_epilogue.wgsl` (the pass after a kernel run with `QK_SCRATCH`, [`crate::epilogue`]):
//! 0 params, 4, 5, 6 q, k, v (read-write: Q and K written, V bound only because `put` names
//! it), 7 [`EpilogueParams`] (uniform) and 8 the angle tables, norm weights and positions
//! (read-only), as `RopeNorm` binds them (`shaders/parts/rope_norm.wgsl` declares both), 9,
//! 10 Q and K as the kernel left them (f32, read-only).

use crate::layout::OutputLayout;
use crate::shape::QkvShape;

/// The uniform every projection kernel reads at binding 0: `struct Params` in
/// `shaders/parts/params.wgsl`, member for member (the reflection test checks names and
/// offsets in every composed kernel).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Token rows of the chunk being dispatched.
    pub tokens: u32,
    /// Columns of X, rows of W.
    pub d_model: u32,
    /// Columns of Q.
    pub q_width: u32,
    /// Columns of K and of V.
    pub kv_width: u32,
    /// Tokens per sequence (read only with `HEAD_LAYOUT`).
    pub seq_len: u32,
    /// Width of one query head (read only with `HEAD_LAYOUT`).
    pub q_head_dim: u32,
    /// Width of one key/value head (read only with `HEAD_LAYOUT`).
    pub kv_head_dim: u32,
    /// Row stride of the bound W block, in elements.
    pub w_stride: u32,
    /// The bound W block holds fused columns [col0, col0 + n_cols).
    pub col0: u32,
    /// Columns of the bound W block.
    pub n_cols: u32,
}

impl Params {
    /// The member names of `struct Params`, in order.
    pub const MEMBERS: [&'static str; 10] = [
        "tokens",
        "d_model",
        "q_width",
        "kv_width",
        "seq_len",
        "q_head_dim",
        "kv_head_dim",
        "w_stride",
        "col0",
        "n_cols",
    ];

    /// Byte offsets of [`Params::MEMBERS`] in the Rust struct.
    pub const OFFSETS: [usize; 10] = [
        std::mem::offset_of!(Params, tokens),
        std::mem::offset_of!(Params, d_model),
        std::mem::offset_of!(Params, q_width),
        std::mem::offset_of!(Params, kv_width),
        std::mem::offset_of!(Params, seq_len),
        std::mem::offset_of!(Params, q_head_dim),
        std::mem::offset_of!(Params, kv_head_dim),
        std::mem::offset_of!(Params, w_stride),
        std::mem::offset_of!(Params, col0),
        std::mem::offset_of!(Params, n_cols),
    ];

    /// The params of a dispatch over `rows` tokens of `shape` in `layout`, for the W block of
    /// fused columns [col0, col0 + n_cols) stored `w_stride` elements per row. In the token
    /// layout the head fields are unused by the shaders; they hold one head as wide as each
    /// output, each token its own sequence.
    pub fn new(
        shape: &QkvShape,
        layout: OutputLayout,
        rows: u32,
        (col0, n_cols): (u32, u32),
        w_stride: u32,
    ) -> Self {
        let (seq_len, q_head_dim, kv_head_dim) = match layout {
            OutputLayout::Tokens => (1, shape.q_width, shape.kv_width),
            OutputLayout::Heads(h) => (h.seq_len, h.q_head_dim(shape), h.kv_head_dim(shape)),
        };
        Self {
            tokens: rows,
            d_model: shape.d_model,
            q_width: shape.q_width,
            kv_width: shape.kv_width,
            seq_len,
            q_head_dim,
            kv_head_dim,
            w_stride,
            col0,
            n_cols,
        }
    }
}

/// How a kernel binds its operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingKind {
    /// X, W, bias, Q, K, V as storage buffers.
    Storage,
    /// X and W as uint textures packed by [`TextureLayout`], the rest as storage.
    Textured,
    /// As `Storage`, plus the split-K partial sums at binding 7.
    SplitK,
    /// As `Storage`, but W an rgba32uint texture holding the bytes its storage buffer would,
    /// in order, [`W_TEXEL_ROW`] texels (16 bytes each) a row ([`texel_extent`]).
    Texels,
    /// X as in `Textured`, W's bytes as in `Texels` (W in a checkpoint's formats read by a
    /// texture kernel), the rest as storage.
    TexturedTexels,
    /// As `Storage`, plus QK-norm's and RoPE's uniform and tables at 7 and 8: a kernel with
    /// the epilogue fused into its store ([`crate::kernels::KernelSpec::with_rope_norm`]).
    RopeNorm,
}

/// Texels per row of a W bound as [`BindingKind::Texels`]: vec4 `i` of W's bytes is texel
/// (i mod W_TEXEL_ROW, i / W_TEXEL_ROW). A power of two (the shader divides by shifting)
/// that every device's `max_texture_dimension_2d` allows (WebGPU's least is 8192).
pub const W_TEXEL_ROW: u32 = 4096;

/// The extent (width, height) of a [`BindingKind::Texels`] texture holding `bytes` bytes: one
/// row where they fit in one, else [`W_TEXEL_ROW`] wide, the last row zero-padded.
pub fn texel_extent(bytes: u64) -> (u32, u32) {
    let texels = bytes.div_ceil(16).max(1);
    let width = texels.min(W_TEXEL_ROW as u64);
    (width as u32, texels.div_ceil(width) as u32)
}

/// The epilogue's uniform at binding 7: `struct EpilogueParams` in
/// `shaders/parts/rope_norm.wgsl`, member for member; what each member means is written there.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct EpilogueParams {
    pub row0: u32,
    pub pos_offset: u32,
    pub seq: u32,
    pub lo_bits: u32,
    pub lo_mask: u32,
    pub table_hi: u32,
    pub q_weight: u32,
    pub k_weight: u32,
    pub positions: u32,
    pub eps: f32,
    pub q_inv_span: f32,
    pub k_inv_span: f32,
}

impl EpilogueParams {
    /// The member names of `struct EpilogueParams`, in order (each 4 bytes, so member i is at
    /// byte 4i).
    pub const MEMBERS: [&'static str; 12] = [
        "row0",
        "pos_offset",
        "seq",
        "lo_bits",
        "lo_mask",
        "table_hi",
        "q_weight",
        "k_weight",
        "positions",
        "eps",
        "q_inv_span",
        "k_inv_span",
    ];
}

/// What a binding slot holds, as both sides of the contract describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A uniform buffer of [`Params`].
    Uniform,
    /// A uniform buffer of [`EpilogueParams`].
    EpilogueUniform,
    /// A storage buffer, read-only or read-write.
    Storage {
        /// Whether the shader only reads it.
        read_only: bool,
    },
    /// A uint 2-D texture read with `textureLoad` (rgba32uint or rg32uint).
    Texture,
}

impl BindingKind {
    /// Storage buffers a kernel of this kind binds: x, w, bias, q, k, v (six); bias, q, k, v
    /// when X and W are textures (four); six and the partial sums for split-K (seven).
    pub const fn storage_buffers(self) -> u32 {
        match self {
            BindingKind::Storage => 6,
            BindingKind::Textured => 4,
            BindingKind::SplitK => 7,
            BindingKind::Texels => 5,
            BindingKind::TexturedTexels => 4,
            BindingKind::RopeNorm => 7,
        }
    }

    /// Whether X is a texture packed by [`TextureLayout`] (else a storage buffer).
    pub const fn x_texture(self) -> bool {
        matches!(self, BindingKind::Textured | BindingKind::TexturedTexels)
    }

    /// Whether W is its bytes as texels ([`texel_extent`]).
    pub const fn w_texels(self) -> bool {
        matches!(self, BindingKind::Texels | BindingKind::TexturedTexels)
    }

    /// Every kind, for layouts made once per context (in discriminant order: [`Layouts`]
    /// indexes them so).
    pub const ALL: [BindingKind; 6] = [
        BindingKind::Storage,
        BindingKind::Textured,
        BindingKind::SplitK,
        BindingKind::Texels,
        BindingKind::TexturedTexels,
        BindingKind::RopeNorm,
    ];

    /// The slots of group 0, binding 0 first.
    pub fn slots(self) -> Vec<Slot> {
        let storage = Slot::Storage { read_only: true };
        let x = if self.x_texture() {
            Slot::Texture
        } else {
            storage
        };
        let w = if self.x_texture() || self.w_texels() {
            Slot::Texture
        } else {
            storage
        };
        let mut slots = vec![Slot::Uniform, x, w, Slot::Storage { read_only: true }];
        slots.extend([Slot::Storage { read_only: false }; 3]);
        match self {
            BindingKind::SplitK => slots.push(Slot::Storage { read_only: false }),
            BindingKind::RopeNorm => {
                slots.extend([Slot::EpilogueUniform, Slot::Storage { read_only: true }])
            }
            _ => {}
        }
        slots
    }

    fn label(self) -> &'static str {
        match self {
            BindingKind::Storage => "projection",
            BindingKind::Textured => "projection (textures)",
            BindingKind::SplitK => "projection (split-K)",
            BindingKind::Texels => "projection (W as texels)",
            BindingKind::TexturedTexels => "projection (X as a texture, W as texels)",
            BindingKind::RopeNorm => "projection (QK-norm and RoPE in the store)",
        }
    }
}

fn entry(binding: u32, slot: Slot) -> wgpu::BindGroupLayoutEntry {
    let ty = match slot {
        Slot::Uniform => wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: wgpu::BufferSize::new(std::mem::size_of::<Params>() as u64),
        },
        Slot::EpilogueUniform => wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: wgpu::BufferSize::new(std::mem::size_of::<EpilogueParams>() as u64),
        },
        Slot::Storage { read_only } => wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        Slot::Texture => wgpu::BindingType::Texture {
            sample_type: wgpu::TextureSampleType::Uint,
            view_dimension: wgpu::TextureViewDimension::D2,
            multisampled: false,
        },
    };
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty,
        count: None,
    }
}

/// A bind group layout and the pipeline layout over it.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) group: wgpu::BindGroupLayout,
    pub(crate) pipeline: wgpu::PipelineLayout,
}

impl Layout {
    /// The layout of `slots` at bindings 0, 1, 2, ...
    pub(crate) fn new(device: &wgpu::Device, label: &str, slots: &[Slot]) -> Self {
        let numbered: Vec<_> = (0..).zip(slots.iter().copied()).collect();
        Self::at(device, label, &numbered)
    }

    /// The layout of each (binding, slot).
    pub(crate) fn at(device: &wgpu::Device, label: &str, slots: &[(u32, Slot)]) -> Self {
        let entries: Vec<_> = slots
            .iter()
            .map(|&(binding, slot)| entry(binding, slot))
            .collect();
        let group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&format!("{label} bind group layout")),
            entries: &entries,
        });
        let pipeline = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&format!("{label} pipeline layout")),
            bind_group_layouts: &[Some(&group)],
            immediate_size: 0,
        });
        Self { group, pipeline }
    }
}

/// The layouts of every binding kind and of `fill_nan`, made once per context so that one
/// bind group serves every kernel of a kind.
#[derive(Debug)]
pub(crate) struct Layouts {
    kinds: [Option<Layout>; BindingKind::ALL.len()],
    pub(crate) fill: Layout,
    pub(crate) epilogue: Layout,
}

/// The epilogue pass's bindings (see the table at the top).
pub const EPILOGUE_SLOTS: [(u32, Slot); 8] = [
    (0, Slot::Uniform),
    (4, Slot::Storage { read_only: false }),
    (5, Slot::Storage { read_only: false }),
    (6, Slot::Storage { read_only: false }),
    (7, Slot::EpilogueUniform),
    (8, Slot::Storage { read_only: true }),
    (9, Slot::Storage { read_only: true }),
    (10, Slot::Storage { read_only: true }),
];

impl Layouts {
    /// Layouts of every kind the device's storage-buffer limit allows (split-K's seven
    /// buffers are more than some devices have; the other kinds still run there).
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let storage = device.limits().max_storage_buffers_per_shader_stage;
        Self {
            kinds: BindingKind::ALL.map(|k| {
                (k.storage_buffers() <= storage).then(|| Layout::new(device, k.label(), &k.slots()))
            }),
            fill: Layout::new(device, "fill_nan", &[Slot::Storage { read_only: false }]),
            epilogue: Layout::at(device, "epilogue", &EPILOGUE_SLOTS),
        }
    }

    /// The layout kernels of `kind` are compiled and bound with; None when the device
    /// cannot bind that many storage buffers.
    pub(crate) fn of(&self, kind: BindingKind) -> Option<&Layout> {
        self.kinds[kind as usize].as_ref()
    }
}

/// How the texture kernels (`texture`, `subgroup-texture`) hold X and W: one texel = 4
/// consecutive elements of a row ([`TextureLayout::format`]), zero-padded so that their
/// d_model loop needs no bounds checks (the contract is in the shaders' headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextureLayout {
    /// X: (texels per row, rows) = (ceil(d_model / 32) * 8, tokens).
    pub x: (u32, u32),
    /// W: (texels per row, rows) = (w_stride / 4, ceil(d_model / 32) * 32).
    pub w: (u32, u32),
}

impl TextureLayout {
    /// The texel format for `element`: rgba32uint holds 4 f32, rg32uint 4 f16 or bf16.
    pub fn format(element: crate::element::ElementType) -> wgpu::TextureFormat {
        if element.is_half() {
            wgpu::TextureFormat::Rg32Uint
        } else {
            wgpu::TextureFormat::Rgba32Uint
        }
    }

    /// The textures of `shape` for a kernel reading W rows `w_stride` elements wide.
    pub fn of(shape: &QkvShape, w_stride: u32) -> Self {
        let d_pad = shape.d_model.div_ceil(32) * 32;
        Self {
            x: (d_pad / 4, shape.tokens),
            w: (w_stride.div_ceil(4), d_pad),
        }
    }
}
