//! How a batch is split to fit the device: token chunks (each its own dispatch, streamed
//! through double-buffered GPU buffers) and, where one weight matrix alone is past a binding
//! or texture limit, blocks of output columns (each its own dispatch over its own slice of W).
//!
//! A plan is made once per (shape, kernel spec) from the device's limits alone, and the
//! projector is given it. Every size comes from those limits; `--chunk-tokens` overrides the
//! token chunk, and a chunk it asks for that does not fit is an error, never silently shrunk.

use crate::binding::{TextureLayout, W_TEXEL_ROW};
use crate::error::{fmt_bytes, Error, Result};
use crate::kernels::KernelSpec;
use crate::layout::{HeadSplit, OutputLayout};
use crate::shape::QkvShape;
use std::ops::Range;

/// Memory the chunks in flight may use together by default (X, Q, K and V of each, in every
/// buffer set), so that a streamed run's memory is bounded by its chunks, not by the batch:
/// a streamed chunk gets this divided among the buffer sets.
pub const DEFAULT_CHUNK_BYTES: u64 = 64 << 20;

/// How to split a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOptions {
    /// Tokens per chunk; `None` picks the largest that fits the device and `max_chunk_bytes`
    /// (`None` is the one way to ask for that: 0 is refused, [`ChunkOptions::check`]).
    pub chunk_tokens: Option<u32>,
    /// The byte budget of X + Q + K + V of every chunk in flight together when
    /// `chunk_tokens` is `None`: one chunk's without streaming, else divided among the
    /// `buffer_sets`.
    pub max_chunk_bytes: u64,
    /// Overlap producing, uploading, computing, reading back and consuming chunks (several
    /// sets of chunk buffers); `false` runs chunks one after another.
    pub streaming: bool,
    /// Chunk buffer sets in flight when streaming: [`MIN_BUFFER_SETS`] to
    /// [`MAX_BUFFER_SETS`], and never more than there are chunks. Each set holds one chunk's X,
    /// Q, K, V on the GPU and its staging memory on the host.
    pub buffer_sets: u32,
    /// Q and K also pass through f32 buffers of a chunk on the GPU, for the epilogue pass
    /// ([`crate::epilogue`]): the device's bound on a chunk counts them at 4 bytes an
    /// element, whatever the storage type. They stay on the GPU, so the host budget
    /// (`max_chunk_bytes`) does not count them. Given to
    /// [`Projector::with_epilogue`](crate::Projector::with_epilogue), it asks for the pass
    /// even where the kernel could apply the epilogue in its store (to compare the two).
    pub qk_f32: bool,
    /// W's column blocks start on a multiple of this many columns, and end on one but at
    /// W's end, where the device's limits allow a block that wide (else on 4 as always): a
    /// head's width, for an epilogue fused into the kernel's store, which needs every head in
    /// one block ([`Projector::with_epilogue`](crate::Projector::with_epilogue) sets it).
    /// 1: no constraint but the kernels' own.
    pub col_multiple: u32,
}

/// Buffer sets the native pipeline streams through by default: one chunk being produced, one
/// on the GPU, one being consumed.
pub const DEFAULT_BUFFER_SETS: u32 = 3;
/// The fewest buffer sets streaming takes.
pub const MIN_BUFFER_SETS: u32 = 2;
/// The most buffer sets streaming takes.
pub const MAX_BUFFER_SETS: u32 = 16;

impl Default for ChunkOptions {
    fn default() -> Self {
        Self {
            chunk_tokens: None,
            max_chunk_bytes: DEFAULT_CHUNK_BYTES,
            streaming: true,
            buffer_sets: DEFAULT_BUFFER_SETS,
            qk_f32: false,
            col_multiple: 1,
        }
    }
}

impl ChunkOptions {
    /// Refuses a `chunk_tokens` of 0: `None` asks for the size that fits, and no other value
    /// means "automatic". What [`ChunkPlan::new`] refuses, for a front end to check its
    /// user's setting before any work, with the same message.
    pub fn check(&self) -> Result<()> {
        match self.chunk_tokens {
            Some(0) => Err(Error::Input("`chunk_tokens` must be at least 1".into())),
            _ => Ok(()),
        }
    }
}

/// A batch split into token chunks and output-column blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkPlan {
    /// The whole batch's shape.
    pub shape: QkvShape,
    /// The layout Q, K and V are written in (a head split checked against `shape`).
    pub layout: OutputLayout,
    /// Tokens per chunk; the last chunk may be shorter.
    pub chunk_tokens: u32,
    /// Fused output columns per block: (first column, columns). One block unless W had to be
    /// split to fit.
    pub col_blocks: Vec<(u32, u32)>,
    /// Why the chunk has the size it has (the limit that bound it, or the user's choice).
    pub chunk_reason: String,
    /// Whether chunks stream through several buffer sets: asked for, and more than one chunk.
    pub streaming: bool,
    /// Chunk buffer sets: 1 without streaming, else as asked but no more than the chunks.
    pub buffer_sets: u32,
    /// Whether chunks have room for Q and K in f32 besides ([`ChunkOptions::qk_f32`]).
    pub qk_f32: bool,
}

impl ChunkPlan {
    /// Number of token chunks.
    pub fn chunks(&self) -> u32 {
        self.shape.tokens.div_ceil(self.chunk_tokens)
    }

    /// The token rows of chunk `i`.
    pub fn chunk(&self, i: u32) -> Range<u32> {
        let start = i * self.chunk_tokens;
        start..(start + self.chunk_tokens).min(self.shape.tokens)
    }

    /// The shape of one full chunk (the buffers' size).
    pub fn chunk_shape(&self) -> QkvShape {
        QkvShape {
            tokens: self.chunk_tokens,
            ..self.shape
        }
    }

    /// The widest column block.
    pub fn widest_block(&self) -> u32 {
        self.col_blocks.iter().map(|b| b.1).max().unwrap_or(0)
    }

    /// Plans `shape` for `spec` on a device with `limits`. Fails with
    /// [`Error::DeviceLimit`] only where not even one token (one sequence, with a head
    /// layout) or four output columns fit, and with [`Error::Input`] for a `chunk_tokens`
    /// that does not fit or does not hold whole sequences, and with [`Error::Shape`] for a
    /// head split that does not divide `shape`.
    pub fn new(
        limits: &wgpu::Limits,
        shape: &QkvShape,
        spec: &KernelSpec,
        layout: OutputLayout,
        opts: &ChunkOptions,
    ) -> Result<Self> {
        let layout = match layout {
            OutputLayout::Tokens => layout,
            // Re-check: a HeadSplit may have been built for another shape.
            OutputLayout::Heads(h) => {
                OutputLayout::Heads(HeadSplit::new(shape, h.seq_len, h.heads, h.kv_heads)?)
            }
        };
        plan(limits, shape, spec, layout, opts)
    }
}

/// Checks that `shape` can run with `spec` on a device with `limits` at all (chunked as
/// needed), with an error naming the limit that stops it.
pub fn check_fits(limits: &wgpu::Limits, shape: &QkvShape, spec: &KernelSpec) -> Result<()> {
    plan(
        limits,
        shape,
        spec,
        OutputLayout::Tokens,
        &ChunkOptions::default(),
    )
    .map(|_| ())
}

fn plan(
    limits: &wgpu::Limits,
    shape: &QkvShape,
    spec: &KernelSpec,
    layout: OutputLayout,
    opts: &ChunkOptions,
) -> Result<ChunkPlan> {
    opts.check()?;
    let room = Room::of(limits, spec);
    let col_blocks = column_blocks(&room, shape, spec, opts.col_multiple)?;
    let seq = match layout {
        OutputLayout::Tokens => 1,
        OutputLayout::Heads(h) => h.seq_len as u64,
    };
    let (device_max, what, name) = most_tokens(&room, shape, spec, &col_blocks, opts.qk_f32)?;
    if device_max < seq.max(1) {
        return Err(Error::DeviceLimit {
            what,
            needed: if seq > 1 {
                format!("one sequence of {seq} tokens per chunk")
            } else {
                "one token per chunk".into()
            },
            limit: format!("{device_max} tokens"),
            limit_name: name,
        });
    }
    let (chunk, reason) = match opts.chunk_tokens {
        Some(c) => (
            given_chunk(c, seq, device_max, &what, name)?,
            "`chunk_tokens`".to_string(),
        ),
        None => chunk_from_budget(shape, spec, opts, seq, (device_max, &what, name)),
    };
    let chunk_tokens = chunk.min(shape.tokens as u64) as u32;
    if !(MIN_BUFFER_SETS..=MAX_BUFFER_SETS).contains(&opts.buffer_sets) {
        return Err(Error::Input(format!(
            "{} buffer sets asked for; streaming takes {MIN_BUFFER_SETS} to {MAX_BUFFER_SETS}",
            opts.buffer_sets
        )));
    }
    let chunks = shape.tokens.div_ceil(chunk_tokens);
    // One buffer set suffices when there is only one chunk.
    let streaming = opts.streaming && chunks > 1;
    Ok(ChunkPlan {
        shape: *shape,
        layout,
        chunk_tokens,
        col_blocks,
        chunk_reason: reason,
        streaming,
        buffer_sets: if streaming {
            opts.buffer_sets.min(chunks)
        } else {
            1
        },
        qk_f32: opts.qk_f32,
    })
}

/// What one binding, the dispatch and textures allow on a device, for one kernel.
struct Room {
    /// Bytes one storage binding (and buffer) may hold, and the limit that says so.
    binding: u64,
    binding_name: &'static str,
    /// `binding` in whole 16-byte units (buffers are, see the projector).
    avail: u64,
    /// Bytes of an element of X, of W and of Q, K, V, each in its own type on the GPU
    /// ([`KernelSpec::types`]).
    x: u64,
    w: u64,
    out: u64,
    /// Workgroups per dimension of a dispatch; texels along a 2-D texture's side.
    max_groups: u64,
    max_tex: u64,
}

impl Room {
    fn of(limits: &wgpu::Limits, spec: &KernelSpec) -> Self {
        let (binding, binding_name) =
            if limits.max_storage_buffer_binding_size <= limits.max_buffer_size {
                (
                    limits.max_storage_buffer_binding_size,
                    "max_storage_buffer_binding_size",
                )
            } else {
                (limits.max_buffer_size, "max_buffer_size")
            };
        Self {
            binding,
            binding_name,
            avail: binding / 16 * 16,
            x: spec.types.x.size(),
            w: spec.types.w.size(),
            out: spec.types.out.size(),
            max_groups: limits.max_compute_workgroups_per_dimension as u64,
            max_tex: limits.max_texture_dimension_2d as u64,
        }
    }

    /// Bytes W may hold in one binding for `spec`, and the limit that says so: a storage
    /// binding's, or for W as texels ([`BindingKind::Texels`]) a texture [`W_TEXEL_ROW`]
    /// texels wide and as high as the device allows (one row where textures are narrower).
    fn w_room(&self, spec: &KernelSpec) -> (u64, &'static str) {
        if !spec.binding.w_texels() {
            return (self.avail, self.binding_name);
        }
        let (row, tex) = (W_TEXEL_ROW as u64, self.max_tex);
        let texels = if tex >= row { row * tex } else { tex };
        (texels * 16, "max_texture_dimension_2d")
    }
}

/// W's column blocks: the widest slice (a multiple of 4 columns, or of `multiple` and 4
/// where that fits) every limit allows, as equal blocks, each such a multiple of columns but
/// the last: (first column, columns).
fn column_blocks(
    room: &Room,
    shape: &QkvShape,
    spec: &KernelSpec,
    multiple: u32,
) -> Result<Vec<(u32, u32)>> {
    let config = spec.config;
    if spec.w_formats.is_some() {
        return stored_w_block(room, shape, spec);
    }
    // W is read in its own type, its rows (transposed) KS long where the kernel pads d_model
    // ([`KernelSpec::x_stride`]).
    let ks = spec.x_stride(shape.d_model) as u64;
    let mut max_cols = u64::MAX;
    let mut col_limit = "";
    let mut tighten = |cols: u64, name: &'static str| {
        if cols < max_cols {
            max_cols = cols;
            col_limit = name;
        }
    };
    if spec.reads_textures() {
        // W has one texel row per element of d_model (padded); X's rows are 4x narrower, so
        // they fit whenever W's height does.
        let w_rows = TextureLayout::of(shape, 4).w.1 as u64;
        if w_rows > room.max_tex {
            return Err(Error::DeviceLimit {
                what: format!("W as a texture (kernel {config}): one row per element of d_model"),
                needed: format!("{w_rows} rows"),
                limit: format!("{}", room.max_tex),
                limit_name: "max_texture_dimension_2d",
            });
        }
        tighten(room.max_tex * 4, "max_texture_dimension_2d");
    } else {
        // Vec4 kernels pad each block's rows to 4 columns; a multiple of 4 needs no padding.
        // A transposed W (KMajor) holds one KS-long row per column.
        let (avail, name) = room.w_room(spec);
        tighten(avail / (ks * room.w) / 4 * 4, name);
    }
    tighten(
        room.max_groups * spec.tile.0 as u64,
        "max_compute_workgroups_per_dimension",
    );
    if max_cols < 4 {
        return Err(Error::DeviceLimit {
            what: "four columns of the fused W [d_model, n_out]".into(),
            needed: fmt_bytes(ks * 4 * room.w),
            limit: fmt_bytes(room.binding),
            limit_name: col_limit,
        });
    }
    // Blocks on multiples of lcm(4, multiple) where one fits, else of 4.
    let m = multiple.max(1) as u64;
    let lcm = m / gcd(m, 4) * 4;
    let unit = if max_cols >= lcm { lcm } else { 4 };
    let max_cols = max_cols / unit * unit;
    let n_out = shape.n_out() as u64;
    let blocks = n_out.div_ceil(max_cols);
    let per_block = n_out.div_ceil(blocks).div_ceil(unit) * unit;
    Ok((0..blocks)
        .map(|b| b * per_block)
        .take_while(|&c0| c0 < n_out)
        .map(|c0| (c0 as u32, per_block.min(n_out - c0) as u32))
        .collect())
}

/// W read as a checkpoint stores it is one binding of all its columns: the blocks of a
/// row are not split; a W past the binding limit, or a grid past the dispatch limit, is an
/// error naming the limit.
fn stored_w_block(room: &Room, shape: &QkvShape, spec: &KernelSpec) -> Result<Vec<(u32, u32)>> {
    let formats = spec.w_formats.map(|f| f.map(|t| t.name()).join(", "));
    let Some(bytes) = spec.w_block_bytes(shape) else {
        for (ty, name) in spec.w_formats.into_iter().flatten().zip(["Wq", "Wk", "Wv"]) {
            crate::quant::StoredMatrix::row_bytes_of(ty, shape.d_model, name)?;
        }
        return Err(Error::Shape(format!(
            "d_model {} is not whole blocks of W's formats ({})",
            shape.d_model,
            formats.unwrap_or_default()
        )));
    };
    let (avail, name) = room.w_room(spec);
    if bytes.div_ceil(16) * 16 > avail {
        return Err(Error::DeviceLimit {
            what: format!(
                "W in its stored formats ({}; kept whole: its blocks are not split into column \
                 blocks)",
                formats.unwrap_or_default()
            ),
            needed: fmt_bytes(bytes),
            limit: fmt_bytes(avail),
            limit_name: name,
        });
    }
    let n_out = shape.n_out() as u64;
    if n_out.div_ceil(spec.tile.0 as u64) > room.max_groups {
        return Err(Error::DeviceLimit {
            what: format!(
                "the dispatch over W's {n_out} columns ({} per workgroup, kept whole)",
                spec.tile.0
            ),
            needed: format!("{} workgroups", n_out.div_ceil(spec.tile.0 as u64)),
            limit: room.max_groups.to_string(),
            limit_name: "max_compute_workgroups_per_dimension",
        });
    }
    Ok(vec![(0, n_out as u32)])
}

/// The most tokens one chunk may hold: the least that every per-chunk buffer, texture and
/// the dispatch allow, with what bounds it and the limit's name.
fn most_tokens(
    room: &Room,
    shape: &QkvShape,
    spec: &KernelSpec,
    col_blocks: &[(u32, u32)],
    qk_f32: bool,
) -> Result<(u64, String, &'static str)> {
    let config = spec.config;
    let (avail, binding_name, max_groups) = (room.avail, room.binding_name, room.max_groups);
    let ks = spec.x_stride(shape.d_model) as u64;
    let wg_rows = spec.tile.1;
    let widest = shape.q_width.max(shape.kv_width) as u64;
    let mut bounds: Vec<(u64, String, &'static str)> = vec![
        (
            avail / (widest * room.out),
            format!("a chunk of Q, K or V ({widest} columns)"),
            binding_name,
        ),
        (
            max_groups * wg_rows as u64,
            format!("the dispatch over tokens ({wg_rows} per workgroup)"),
            "max_compute_workgroups_per_dimension",
        ),
    ];
    if qk_f32 {
        let qk = shape.q_width.max(shape.kv_width) as u64;
        bounds.push((
            avail / (qk * 4),
            format!("a chunk of Q or K in f32 before the epilogue ({qk} columns)"),
            binding_name,
        ));
    }
    if spec.reduce.is_some() {
        // Split-K partial sums: [splits, chunk tokens, widest column block].
        let splits = spec.splits as u64;
        if splits > max_groups {
            return Err(Error::DeviceLimit {
                what: format!("the dispatch over d_model ranges (kernel {config})"),
                needed: format!("{splits} workgroups"),
                limit: format!("{max_groups}"),
                limit_name: "max_compute_workgroups_per_dimension",
            });
        }
        let block = col_blocks.iter().map(|b| b.1 as u64).max().unwrap_or(1);
        bounds.push((
            // f32, as the accumulators are.
            avail / (splits * block * 4),
            format!("the partial sums of a chunk ({splits} x {block} columns, kernel {config})"),
            binding_name,
        ));
    }
    if spec.x_texture() {
        bounds.push((
            room.max_tex,
            format!("X as a texture (kernel {config}): one row per token"),
            "max_texture_dimension_2d",
        ));
    } else {
        bounds.push((
            avail / (ks * room.x),
            format!("a chunk of X ({} columns)", shape.d_model),
            binding_name,
        ));
    }
    // Rows per chunk stay below 2^32 / width so that u32 element indices cannot overflow.
    bounds.push((
        (u32::MAX as u64) / widest.max(ks),
        "32-bit element indices in one chunk".into(),
        "u32 index range",
    ));
    Ok(bounds
        .into_iter()
        .min_by_key(|b| b.0)
        .expect("bounds is not empty"))
}

/// A chunk size the user gave, checked (never shrunk; at least 1 already,
/// [`ChunkOptions::check`]): within what the device allows, whole sequences of `seq` tokens.
fn given_chunk(c: u32, seq: u64, device_max: u64, what: &str, name: &str) -> Result<u64> {
    let c = c as u64;
    if c > device_max {
        return Err(Error::Input(format!(
            "`chunk_tokens` {c} does not fit this device: {what} allows at most {device_max} \
             tokens ({name})"
        )));
    }
    if !c.is_multiple_of(seq) {
        return Err(Error::Input(format!(
            "`chunk_tokens` {c} must be a multiple of the sequence length {seq}, so that each \
             chunk holds whole sequences of the head layout"
        )));
    }
    Ok(c)
}

/// The chunk size when none was given: X, Q, K, V of a chunk within the host budget shared
/// among the buffer sets, or the device's most where that is less; whole sequences, whole
/// workgroup tiles where that costs nothing. With why.
fn chunk_from_budget(
    shape: &QkvShape,
    spec: &KernelSpec,
    opts: &ChunkOptions,
    seq: u64,
    (device_max, what, name): (u64, &str, &str),
) -> (u64, String) {
    // A token's row of X and of Q, K, V, each in its type on the GPU.
    let row_bytes =
        shape.d_model as u64 * spec.types.x.size() + shape.n_out() as u64 * spec.types.out.size();
    let sets = if opts.streaming {
        opts.buffer_sets.max(1) as u64
    } else {
        1
    };
    let per_chunk = opts.max_chunk_bytes / sets;
    let budget = (per_chunk / row_bytes).max(1);
    let (mut c, mut reason) = if budget < device_max {
        (
            budget,
            if sets > 1 {
                format!(
                    "{} per chunk for X, Q, K, V: {} for the {sets} buffer sets",
                    fmt_bytes(per_chunk),
                    fmt_bytes(opts.max_chunk_bytes)
                )
            } else {
                format!("{} per chunk for X, Q, K, V", fmt_bytes(per_chunk))
            },
        )
    } else {
        (device_max, format!("{what} ({name})"))
    };
    let wg_rows = spec.tile.1 as u64;
    c = (c / seq).max(1) * seq;
    if c > wg_rows && seq == 1 {
        c = c / wg_rows * wg_rows;
    }
    if c >= shape.tokens as u64 {
        reason = "the whole batch fits one chunk".into();
    }
    (c, reason)
}

/// The greatest common divisor of `a` and `b`.
fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests;
