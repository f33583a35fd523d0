//! X or W on the GPU ([`Operand`]): a storage buffer, a texture packed as the texture kernels
//! read it ([`TextureLayout`]), or a texture holding a buffer's bytes ([`texel_extent`]);
//! and the bytes a matrix is uploaded as.

use crate::binding::{texel_extent, TextureLayout};
use crate::element::ElementType;
use crate::host::Elements;

/// Where a kernel reads X or W from.
pub(super) enum Operand {
    Buffer(wgpu::Buffer),
    /// Packed as the texture kernels read it ([`TextureLayout`]).
    Texture(wgpu::Texture, wgpu::TextureView),
    /// The bytes a buffer would hold, in an rgba32uint texture ([`BindingKind::Texels`]).
    Texels(wgpu::Texture, wgpu::TextureView),
}

/// Bytes of W written to a [`Operand::Texels`] texture per call (whole rows of it), so that
/// no upload needs a staging copy of all of W at once.
const TEXEL_BAND_BYTES: usize = 16 << 20;

/// Bytes of a storage buffer of `elems` elements of `element`: whole 16-byte units, so that
/// a kernel reading vec4s of 32-bit words sees every element (a binding's last partial
/// vec4 would be out of bounds).
pub(super) fn storage_bytes(element: ElementType, elems: u64) -> u64 {
    element.buffer_bytes(elems).div_ceil(16).max(1) * 16
}

impl Operand {
    /// A storage buffer of `elems` elements of `element`, or a texture `(width, height)`
    /// texels of 4 elements ([`TextureLayout::format`]).
    pub(super) fn new(
        device: &wgpu::Device,
        label: &str,
        (textures, element): (bool, ElementType),
        elems: usize,
        (width, height): (u32, u32),
    ) -> Self {
        if textures {
            let (texture, view) = texture(
                device,
                label,
                (width, height),
                TextureLayout::format(element),
            );
            Operand::Texture(texture, view)
        } else {
            Operand::Buffer(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: storage_bytes(element, elems as u64),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }))
        }
    }

    /// An rgba32uint texture of at least `bytes` bytes, in the extent [`texel_extent`] gives.
    pub(super) fn texels(device: &wgpu::Device, label: &str, bytes: u64) -> Self {
        let extent = texel_extent(bytes);
        let (texture, view) = texture(device, label, extent, wgpu::TextureFormat::Rgba32Uint);
        Operand::Texels(texture, view)
    }

    /// Writes `bytes` from the first texel of a [`Operand::Texels`] texture on, zeros past
    /// them, in bands of whole rows.
    pub(super) fn write_texels(texture: &wgpu::Texture, queue: &wgpu::Queue, bytes: &[u8]) {
        let (width, height) = (texture.width(), texture.height() as usize);
        let row = width as usize * 16;
        let band = (TEXEL_BAND_BYTES / row).max(1);
        let mut padded = Vec::new();
        for first in (0..height).step_by(band) {
            let rows = band.min(height - first);
            let (start, end) = (
                (first * row).min(bytes.len()),
                ((first + rows) * row).min(bytes.len()),
            );
            let data = if end - start == rows * row {
                &bytes[start..end]
            } else {
                padded.clear();
                padded.extend_from_slice(&bytes[start..end]);
                padded.resize(rows * row, 0);
                &padded[..]
            };
            queue.write_texture(
                wgpu::TexelCopyTextureInfo {
                    texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: first as u32,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                data,
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(row as u32),
                    rows_per_image: Some(rows as u32),
                },
                wgpu::Extent3d {
                    width,
                    height: rows as u32,
                    depth_or_array_layers: 1,
                },
            );
        }
    }

    /// Writes a matrix of `row_len`-element rows stored as `element`: f32 data rounded to
    /// nearest even into a half type ([`ElementType::encode`]), or 16-bit patterns already in
    /// it; into a buffer with each row zero-padded to `stride` elements (as it is where the
    /// stride is the row's length), into a texture with each row zero-padded to the
    /// texture's width. `scratch` holds the bytes where they are not written as they are.
    pub(super) fn write(
        &self,
        queue: &wgpu::Queue,
        (data, element): (Elements<'_>, ElementType),
        (row_len, stride): (usize, usize),
        scratch: &mut Vec<u8>,
    ) {
        match self {
            Operand::Buffer(b) => {
                let bytes = buffer_bytes((data, element), (row_len, stride), scratch);
                queue.write_buffer(b, 0, bytes);
            }
            Operand::Texels(t, _) => {
                let bytes = buffer_bytes((data, element), (row_len, stride), scratch);
                Self::write_texels(t, queue, bytes);
            }
            Operand::Texture(t, _) => {
                let (width, height) = (t.width(), t.height());
                let padded_len = width as usize * 4;
                let texels: &[u8] = match data {
                    Elements::F32(d)
                        if padded_len == row_len
                            && data.len() / row_len.max(1) == height as usize
                            && !element.is_half() =>
                    {
                        bytemuck::cast_slice(d)
                    }
                    _ => {
                        let total = padded_len * element.size() as usize * height as usize;
                        scratch.clear();
                        padded_rows((data, element), (row_len, padded_len), total, scratch);
                        scratch
                    }
                };
                queue.write_texture(
                    wgpu::TexelCopyTextureInfo {
                        texture: t,
                        mip_level: 0,
                        origin: wgpu::Origin3d::ZERO,
                        aspect: wgpu::TextureAspect::All,
                    },
                    texels,
                    wgpu::TexelCopyBufferLayout {
                        offset: 0,
                        bytes_per_row: Some(width * 4 * element.size() as u32),
                        rows_per_image: Some(height),
                    },
                    t.size(),
                );
            }
        }
    }

    /// Bytes of the buffer (for a texture, its texels' bytes).
    pub(super) fn size(&self) -> u64 {
        match self {
            Operand::Buffer(b) => b.size(),
            Operand::Texture(t, _) | Operand::Texels(t, _) => {
                let size = t.size();
                t.format().block_copy_size(None).unwrap_or(16) as u64
                    * size.width as u64
                    * size.height as u64
            }
        }
    }

    /// The storage buffer, for a buffer operand.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the pipeline's, native only
    pub(super) fn buffer(&self) -> Option<&wgpu::Buffer> {
        match self {
            Operand::Buffer(b) => Some(b),
            Operand::Texture(..) | Operand::Texels(..) => None,
        }
    }

    pub(super) fn resource(&self) -> wgpu::BindingResource<'_> {
        match self {
            Operand::Buffer(b) => b.as_entire_binding(),
            Operand::Texture(_, view) | Operand::Texels(_, view) => {
                wgpu::BindingResource::TextureView(view)
            }
        }
    }
}

/// A 2-D texture of `(width, height)` texels of `format` that kernels read and the queue
/// writes, and its view.
fn texture(
    device: &wgpu::Device,
    label: &str,
    (width, height): (u32, u32),
    format: wgpu::TextureFormat,
) -> (wgpu::Texture, wgpu::TextureView) {
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let view = texture.create_view(&wgpu::TextureViewDescriptor {
        label: Some(label),
        ..Default::default()
    });
    (texture, view)
}

/// A matrix of `row_len`-element rows as a storage buffer holds it in `element`, each row
/// zero-padded to `stride` elements (see [`Operand::write`]): `data`'s own bytes where they
/// are that already, else built in `scratch`.
pub(super) fn buffer_bytes<'s>(
    (data, element): (Elements<'s>, ElementType),
    (row_len, stride): (usize, usize),
    scratch: &'s mut Vec<u8>,
) -> &'s [u8] {
    scratch.clear();
    let len = data.len();
    match data {
        Elements::F32(d) if !element.is_half() && stride == row_len => bytemuck::cast_slice(d),
        _ if stride == row_len => {
            data.encode(element, scratch);
            // Whole words: a half-typed matrix of odd length ends in half a word.
            scratch.resize(element.buffer_bytes(len as u64) as usize, 0);
            scratch
        }
        _ => {
            let elems = (len / row_len.max(1) * stride) as u64;
            padded_rows(
                (data, element),
                (row_len, stride),
                element.buffer_bytes(elems) as usize,
                scratch,
            );
            scratch
        }
    }
}

/// Appends each row of `data` in `element`'s bytes followed by zeros up to `padded_len`
/// elements, then zeros up to `total` bytes in all.
fn padded_rows(
    (data, element): (Elements<'_>, ElementType),
    (row_len, padded_len): (usize, usize),
    total: usize,
    out: &mut Vec<u8>,
) {
    let pad = (padded_len - row_len.min(padded_len)) * element.size() as usize;
    for r in 0..data.len() / row_len.max(1) {
        data.slice(r * row_len..(r + 1) * row_len)
            .encode(element, out);
        out.resize(out.len() + pad, 0);
    }
    out.resize(total, 0);
}
