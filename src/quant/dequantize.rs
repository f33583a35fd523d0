//! ggml's `dequantize_row_*` (ggml-quants.c), block by block: the same f32 expressions in the
//! same order, so each element is the value llama.cpp reads.

use super::BlockFormat;

/// The f16 at `b[i..i + 2]`, widened.
fn f16(b: &[u8], i: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

pub(super) fn row(format: BlockFormat, bytes: &[u8], out: &mut [f32]) {
    let per = format.block_elems() as usize;
    let size = format.block_bytes() as usize;
    assert!(
        out.len().is_multiple_of(per) && bytes.len() >= out.len() / per * size,
        "{format}: {} elements are not whole blocks of {} bytes",
        out.len(),
        bytes.len()
    );
    for (y, b) in out.chunks_exact_mut(per).zip(bytes.chunks_exact(size)) {
        match format {
            BlockFormat::Q8_0 => q8_0(b, y),
            BlockFormat::Q4_0 => q4_0(b, y),
            BlockFormat::Q4_1 => q4_1(b, y),
            BlockFormat::Q5_0 => q5_0(b, y),
            BlockFormat::Q5_1 => q5_1(b, y),
            BlockFormat::Q4K => q4_k(b, y),
            BlockFormat::Q5K => q5_k(b, y),
            BlockFormat::Q6K => q6_k(b, y),
        }
    }
}

/// d (f16), then 32 int8: `q * d`.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16(b, 0);
    for (j, v) in y.iter_mut().enumerate() {
        *v = (b[2 + j] as i8) as f32 * d;
    }
}

/// d, then 16 bytes: element j in the low nibble of byte j, j + 16 in its high one;
/// `(q - 8) * d`.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16(b, 0);
    for j in 0..16 {
        let q = b[2 + j];
        y[j] = ((q & 0xf) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// d, m, then nibbles as Q4_0: `q * d + m`.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16(b, 0), f16(b, 2));
    for j in 0..16 {
        let q = b[4 + j];
        y[j] = (q & 0xf) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
}

/// The fifth bits of a Q5 block: bit j of the little-endian u32 at `b[at..]` is element j's.
fn high_bits(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// d, the fifth bits (u32), nibbles as Q4_0: `(q - 16) * d`.
fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16(b, 0);
    let qh = high_bits(b, 2);
    for j in 0..16 {
        let q = b[6 + j];
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = (((q & 0xf) as u32 | h0) as i32 - 16) as f32 * d;
        y[j + 16] = (((q >> 4) as u32 | h1) as i32 - 16) as f32 * d;
    }
}

/// d, m, the fifth bits, nibbles: `q * d + m`.
fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16(b, 0), f16(b, 2));
    let qh = high_bits(b, 4);
    for j in 0..16 {
        let q = b[8 + j];
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = ((q & 0xf) as u32 | h0) as f32 * d + m;
        y[j + 16] = ((q >> 4) as u32 | h1) as f32 * d + m;
    }
}

/// The 6-bit scale and minimum of sub-block `j` of a Q4_K/Q5_K block's 12 scale bytes
/// (ggml's `get_scale_min_k4`).
pub(super) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The (scale, minimum) of the two sub-blocks of the `chunk`-th 64 elements of a Q4_K/Q5_K
/// block: `d * sc` and `dmin * m`, as ggml's `d1, m1` and `d2, m2`.
fn sub_scales(chunk: usize, scales: &[u8], d: f32, min: f32) -> [(f32, f32); 2] {
    [2 * chunk, 2 * chunk + 1].map(|j| {
        let (sc, m) = scale_min_k4(j, scales);
        (d * sc as f32, min * m as f32)
    })
}

/// d, dmin, 12 scale bytes, 128 bytes of nibbles: per 64 elements, 32 low nibbles then 32
/// high ones, each sub-block `d * sc * q - dmin * m`.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (f16(b, 0), f16(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (chunk, out) in y.chunks_exact_mut(64).enumerate() {
        let [(d1, m1), (d2, m2)] = sub_scales(chunk, scales, d, min);
        let q = &qs[32 * chunk..32 * chunk + 32];
        for l in 0..32 {
            out[l] = d1 * (q[l] & 0xf) as f32 - m1;
            out[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

/// d, dmin, 12 scale bytes, 32 bytes of fifth bits, 128 bytes of nibbles (as Q4_K; the
/// fifth bit of element l of the chunk-th 64 is bit 2 chunk (low nibble) or 2 chunk + 1
/// (high) of byte l).
fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (f16(b, 0), f16(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (chunk, out) in y.chunks_exact_mut(64).enumerate() {
        let [(d1, m1), (d2, m2)] = sub_scales(chunk, scales, d, min);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        let q = &qs[32 * chunk..32 * chunk + 32];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            out[l] = d1 * ((q[l] & 0xf) + h1) as f32 - m1;
            out[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
        }
    }
}

/// 128 bytes of low nibbles, 64 of high bit pairs, 16 int8 scales, d: per 128 elements,
/// `d * sc * (q - 32)`.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16(b, 208);
    for (half, out) in y.chunks_exact_mut(128).enumerate() {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..128 + 32 * half + 32];
        let sc = &b[192 + 8 * half..192 + 8 * half + 8];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let s = |k: usize| d * (sc[is + k] as i8) as f32;
            out[l] = s(0) * q1 as f32;
            out[l + 32] = s(2) * q2 as f32;
            out[l + 64] = s(4) * q3 as f32;
            out[l + 96] = s(6) * q4 as f32;
        }
    }
}
