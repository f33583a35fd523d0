// Part: W as a checkpoint stores it, dequantized as it is read. Wq, Wk and Wv each keep the
// rows of their file, a row per output feature along d_model, in their own format (FMT_Q,
// FMT_K, FMT_V: ggml's type numbers, F32, F16, BF16 or one of the block formats Q8_0, Q4_0,
// Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K), one after another in `w`, each part starting on 16
// bytes. Every value is ggml's `dequantize_row_*` of its block: a product that is exact in
// f32 (d x q, or d x sc x q with d x sc first), plus the minimum where the format has one
// (rounded once, as there), so the kernel reads exactly the values the reference uses.
// Provides FMT_Q/K/V, and for W read along d_model (the decode kernel): UNIT_QUADS, `WCol`,
// `w_col`, `WUnit`, `w_unit` and `w_quad`; for W read across columns (the tiled kernels'
// row-major view, params.w_stride = n_cols rounded up to 4): `w4_at`. Expects params.wgsl,
// widen.wgsl (`f16_bits4`) and W's bytes as vec4s (`w_vec4`: w_buffer.wgsl or
// w_texels.wgsl). W is read in vec4s, because a CPU driver runs each storage load as a loop
// over the SIMD lanes (lavapipe: one loop per load, whatever its width): a unit's words are
// read as the two or three vec4s that hold them and cut out with selects.
// The host pads the buffer by 48 bytes past the last part, so that those vec4s exist (a
// buffer whose length is not a multiple of 16 ends in a part of one no kernel can index).
//
// d_model is a multiple of 32 (the host refuses others with block formats), so that every
// run of 32 elements starting at a multiple of 32 (a "unit") has one scale and minimum per
// 16 elements: Q8_0 ... Q5_1 blocks are units, Q4_K and Q5_K blocks hold 8 with their own
// 6-bit scale and minimum, Q6_K blocks 8 with an 8-bit scale per 16 elements.

// Word i of W: one load.
fn wd(i: u32) -> u32 {
    return w_vec4(i >> 2u)[i & 3u];
}

// Words o .. o + 3 of the eight words a, b (o < 4): selects, not a branch.
fn from_pair(a: vec4<u32>, b: vec4<u32>, o: u32) -> vec4<u32> {
    let low = select(a, vec4<u32>(a.yzw, b.x), o == 1u);
    let high = select(vec4<u32>(a.zw, b.xy), vec4<u32>(a.w, b.xyz), o == 3u);
    return select(low, high, o >= 2u);
}

// Word o of v (o < 4).
fn word_of(v: vec4<u32>, o: u32) -> u32 {
    return select(select(v.x, v.y, o == 1u), select(v.z, v.w, o == 3u), o >= 2u);
}

// Words i .. i + 8 of W (v, v2, then e): three vec4 loads (two where nothing of the third
// is used: the compiler drops its load).
struct Words9 {
    v: vec4<u32>,
    v2: vec4<u32>,
    e: u32,
}

fn words9(i: u32) -> Words9 {
    let a = w_vec4(i >> 2u);
    let b = w_vec4((i >> 2u) + 1u);
    let c = w_vec4((i >> 2u) + 2u);
    let o = i & 3u;
    return Words9(from_pair(a, b, o), from_pair(b, c, o), word_of(c, o));
}

// Each part's format (ggml's numbering; the host sets them).
override FMT_Q: u32 = 0u;
override FMT_K: u32 = 0u;
override FMT_V: u32 = 0u;

// Bytes of one stored row of `d` elements in format `fmt`.
fn row_bytes(fmt: u32, d: u32) -> u32 {
    switch fmt {
        case 0u: { return 4u * d; }
        case 1u, 30u: { return 2u * d; }
        case 2u: { return d / 32u * 18u; }
        case 3u: { return d / 32u * 20u; }
        case 6u: { return d / 32u * 22u; }
        case 7u: { return d / 32u * 24u; }
        case 8u: { return d / 32u * 34u; }
        case 12u: { return d / 256u * 144u; }
        case 13u: { return d / 256u * 176u; }
        default: { return d / 256u * 210u; }
    }
}

// A part's bytes, padded to 16 (the next part starts on a vec4).
fn part_bytes(fmt: u32, rows: u32) -> u32 {
    return (rows * row_bytes(fmt, params.d_model) + 15u) & ~15u;
}

// The 32-bit word at byte `b` (even: every field of every format is).
fn word_at(b: u32) -> u32 {
    let i = b >> 2u;
    let v = words9(i).v;
    return select(v.x, (v.x >> 16u) | (v.y << 16u), (b & 2u) != 0u);
}

// The f16 at byte `b` (even), widened exactly.
fn f16_at(b: u32) -> f32 {
    return f16_bits4(vec4<u32>((wd(b >> 2u) >> ((b & 2u) * 8u)) & 0xffffu)).x;
}

// The byte at `b`, unsigned and signed.
fn u8_at(b: u32) -> u32 {
    return (wd(b >> 2u) >> ((b & 3u) * 8u)) & 0xffu;
}
fn i8_at(b: u32) -> f32 {
    return f32(bitcast<i32>(u8_at(b) << 24u) >> 24u);
}

// The 16 bytes that start half-way into word v.x: v shifted down by half a word, the low
// half of the next word `e` on top.
fn half_on(v: vec4<u32>, e: u32) -> vec4<u32> {
    return (v >> vec4<u32>(16u)) | (vec4<u32>(v.yzw, e) << vec4<u32>(16u));
}

// The 16 bytes two bytes into a unit whose words are v, e, ...: half-way into v.x where the
// unit starts on a word (odd false), from v.y where it starts half-way into one.
fn past_half(v: vec4<u32>, e: u32, odd: bool) -> vec4<u32> {
    return select(half_on(v, e), vec4<u32>(v.yzw, e), odd);
}

// The 32 bytes at byte `b` (even) as eight words (v, v2; e unused): three vec4 loads,
// shifted by half a word where `b` is 2 mod 4.
fn bytes32(b: u32) -> Words9 {
    let n = words9(b >> 2u);
    let odd = (b & 2u) != 0u;
    let low = select(n.v, half_on(n.v, n.v2.x), odd);
    return Words9(low, select(n.v2, half_on(n.v2, n.e), odd), 0u);
}

// The low (high false) or high half of a word as an f16, widened exactly.
fn f16_half(word: u32, high: bool) -> f32 {
    return f16_bits4(vec4<u32>(select(word & 0xffffu, word >> 16u, high))).x;
}

// Small unsigned integers (below 2^31) as f32, exactly: converted as signed integers, one
// instruction on x86, where an unsigned conversion takes several.
fn small_f32(v: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(bitcast<vec4<i32>>(v));
}

// Bits sh .. sh + width - 1 (`mask`: 2^width - 1) of each of the four bytes of a word: one
// shift and one mask (sh < 8: 0 or 4 takes the low or high nibbles).
fn byte_bits(word: u32, sh: u32, mask: u32) -> vec4<u32> {
    return (vec4<u32>(word) >> (vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>(sh))) & vec4<u32>(mask);
}

// Q4_K's and Q5_K's 6-bit scale and minimum of sub-block `j` (ggml's get_scale_min_k4), from
// the 12 bytes of scales as three words (s0 bytes 0..3, s1 4..7, s2 8..11): no branch, so
// that lanes at different sub-blocks read the same three words.
fn scale_min_k4(s0: u32, s1: u32, s2: u32, j: u32) -> vec2<f32> {
    let sh = 8u * (j % 4u);
    let x0 = (s0 >> sh) & 255u;
    let x1 = (s1 >> sh) & 255u;
    let x2 = (s2 >> sh) & 255u;
    let high = vec2<u32>((x2 & 15u) | ((x0 >> 6u) << 4u), (x2 >> 4u) | ((x1 >> 6u) << 4u));
    return vec2<f32>(select(high, vec2<u32>(x0 & 63u, x1 & 63u), j < 4u));
}

// The format of fused column `c` (params.col0 + the block's column): a select of the three
// override constants, so that where they are one format the compiler folds every switch on
// it away (a vector or a branch there kept it a run-time value, and every format's code ran).
fn w_fmt(c: u32) -> u32 {
    let kv = select(FMT_K, FMT_V, c >= params.q_width + params.kv_width);
    return select(FMT_Q, kv, c >= params.q_width);
}

// The first byte of the row of fused column `c`, stored in `fmt`.
fn w_row(c: u32, fmt: u32) -> u32 {
    let d = params.d_model;
    let q = part_bytes(FMT_Q, params.q_width);
    let k = part_bytes(FMT_K, params.kv_width);
    let base = select(select(0u, q, c >= params.q_width), q + k, c >= params.q_width + params.kv_width);
    let first = select(select(0u, params.q_width, c >= params.q_width), params.q_width + params.kv_width, c >= params.q_width + params.kv_width);
    return base + (c - first) * row_bytes(fmt, d);
}

// One unit of a row: its format, the first byte of its block, which unit of the block it is,
// value = scale.x q + scale.y for elements 0..15, scale.z q + scale.w for 16..31 (q the
// stored bits as an unsigned integer, Q8_0's signed; a format centred on 8, 16 or 32 has
// -8, -16 or -32 times the scale as its minimum: the product is exact, so one fma gives the
// value exactly, with no subtraction per element), and its quantized bytes read once (realigned to words): 16 or 32 bytes of low bits (q0, q1) and
// the high bits of the Q5 and Q6 formats (h0, h1; Q5_0's and Q5_1's one word in h0.x).
// An f32 unit's vec4s are read as they go, from vec4 `at` on; an f16 or bf16 one's four
// are q0, q1, h0, h1.
struct WUnit {
    fmt: u32,
    at: u32,
    sub: u32,
    scale: vec4<f32>,
    q0: vec4<u32>,
    q1: vec4<u32>,
    h0: vec4<u32>,
    h1: vec4<u32>,
}

// Vec4s of W per unit.
const UNIT_QUADS: u32 = 8u;

// Where the row of fused column params.col0 + `col` lies: its format and first byte (the
// same for all of its units: found once, before the loop over them).
struct WCol {
    fmt: u32,
    row: u32,
}

fn w_col(col: u32) -> WCol {
    let c = params.col0 + col;
    let fmt = w_fmt(c);
    return WCol(fmt, w_row(c, fmt));
}

// Unit `u` (elements 32 u .. 32 u + 31) of the row `wc`.
fn w_unit(wc: WCol, u: u32) -> WUnit {
    let fmt = wc.fmt;
    let row = wc.row;
    switch fmt {
        case 0u, 1u, 30u: {
            // Rows of elements start on 16 bytes (parts do, and d_model is a multiple of
            // 32): a unit is 8 vec4s of f32, read a quad at a time, or 4 of f16 or bf16,
            // read here.
            let one = vec4<f32>(1.0, 0.0, 1.0, 0.0);
            let i = (row >> 4u) + u * select(4u, 8u, fmt == 0u);
            if fmt == 0u {
                let none = vec4<u32>();
                return WUnit(fmt, i, 0u, one, none, none, none, none);
            }
            let q0 = w_vec4(i);
            let q1 = w_vec4(i + 1u);
            return WUnit(fmt, i, 0u, one, q0, q1, w_vec4(i + 2u), w_vec4(i + 3u));
        }
        case 2u, 6u, 8u: {
            // Q4_0 (d, qs[16]), Q5_0 (d, qh, qs[16]), Q8_0 (d, qs[32]): a unit starts on an
            // even byte, at a word (odd false) or half-way into one. Its words are read once
            // and the fields cut from them: two, three and three vec4 loads.
            let at = row + u * row_bytes(fmt, 32u);
            let i = at >> 2u;
            let odd = (at & 2u) != 0u;
            let n = words9(i);
            let v = n.v;
            let e = n.v2.x;
            let d = f16_half(v.x, odd);
            // Q4_0's and Q5_0's values are d (q - 8) and d (q - 16): the offset goes in the
            // minimum, -8 d and -16 d (exact), so that fma(d, q, -8 d) is the value exactly.
            let m = select(select(0.0, -8.0 * d, fmt == 2u), -16.0 * d, fmt == 6u);
            // The 16 bytes at unit byte 2 (Q4_0's and Q8_0's qs).
            var q0 = past_half(v, e, odd);
            var q1 = vec4<u32>();
            var h = vec4<u32>();
            if fmt == 8u {
                q1 = past_half(n.v2, n.e, odd);
            }
            if fmt == 6u {
                // qh at unit byte 2, qs at 6.
                h.x = select((v.x >> 16u) | (v.y << 16u), v.y, odd);
                let v1 = vec4<u32>(v.yzw, e);
                q0 = past_half(v1, n.v2.y, odd);
            }
            return WUnit(fmt, at, 0u, vec4<f32>(d, m, d, m), q0, q1, h, vec4<u32>());
        }
        case 3u, 7u: {
            // Q4_1 (d, m, qs[16]), Q5_1 (d, m, qh, qs[16]): their units (20 and 24 bytes)
            // start on a word, as every part and row does: two and three vec4 loads.
            let i = (row + u * row_bytes(fmt, 32u)) >> 2u;
            let n = words9(i);
            let v = n.v;
            let e = n.v2.x;
            let scale = vec2<f32>(f16_half(v.x, false), f16_half(v.x, true));
            var q0 = vec4<u32>(v.yzw, e);
            var h = vec4<u32>();
            if fmt == 7u {
                h.x = v.y;
                q0 = vec4<u32>(v.zw, e, n.v2.y);
            }
            let none = vec4<u32>();
            return WUnit(fmt, 4u * i, 0u, vec4<f32>(scale, scale), q0, none, h, none);
        }
        case 12u, 13u: {
            // Q4_K: d, dmin, scales[12], qs[128]; Q5_K: the same with qh[32] before qs. Their
            // blocks (144 and 176 bytes, multiples of 16) start on 16 bytes, as every part
            // does, so each field is whole vec4s: the head (d, dmin, scales), Q5_K's qh, and
            // the 32 bytes of qs a unit reads: three and five vec4 loads.
            let at = row + u / 8u * row_bytes(fmt, 256u);
            let b = at >> 4u;
            let sub = u % 8u;
            let head = w_vec4(b);
            let sm = scale_min_k4(head.y, head.z, head.w, sub);
            let d = f16_half(head.x, false) * sm.x;
            let m = f16_half(head.x, true) * sm.y;
            // Units 2g and 2g + 1 share qs[32 g ..] (low and high nibbles).
            let qs = b + select(1u, 3u, fmt == 13u) + 2u * (sub / 2u);
            var h0 = vec4<u32>();
            var h1 = vec4<u32>();
            if fmt == 13u {
                h0 = w_vec4(b + 1u);
                h1 = w_vec4(b + 2u);
            }
            let scale = vec4<f32>(d, -m, d, -m);
            return WUnit(fmt, at, sub, scale, w_vec4(qs), w_vec4(qs + 1u), h0, h1);
        }
        default: {
            // Q6_K: halves of 128, each four quarters of 32, a signed scale per 16.
            let at = row + u / 8u * 210u;
            let sub = u % 8u;
            let d = f16_at(at + 208u);
            // Its two scales, bytes s and s + 1 (s even: one word); values d sc (q - 32), the
            // offset in the minimum, -32 d sc (exact: d sc is, and 32 a power of two).
            let s = at + 192u + 8u * (sub / 4u) + 2u * (sub % 4u);
            let sw = wd(s >> 2u) >> ((s & 2u) * 8u);
            let sc = vec2<f32>(vec2<i32>(bitcast<i32>(sw << 24u), bitcast<i32>(sw << 16u)) >> vec2<u32>(24u));
            let ds = d * sc;
            let scale = vec4<f32>(ds.x, -32.0 * ds.x, ds.y, -32.0 * ds.y);
            // Quarter t of half n: ql[64 n + 32 (t & 1) ..], qh[32 n ..].
            let ql = at + 64u * (sub / 4u) + 32u * (sub & 1u);
            let qh = at + 128u + 32u * (sub / 4u);
            let low = bytes32(ql);
            let high = bytes32(qh);
            return WUnit(fmt, at, sub, scale, low.v, low.v2, high.v, high.v2);
        }
    }
}

// Word i (bytes 4 i .. 4 i + 3) of a unit's 32 bytes of low bits.
fn word32(unit: WUnit, i: u32) -> u32 {
    return select(unit.q1[i & 3u], unit.q0[i & 3u], i < 4u);
}

// Elements 4 i .. 4 i + 3 (i < 8) of a unit, dequantized.
fn w_quad(unit: WUnit, i: u32) -> vec4<f32> {
    let at = unit.at;
    var q: vec4<f32>;
    switch unit.fmt {
        case 0u: {
            return bitcast<vec4<f32>>(w_vec4(at + i));
        }
        case 1u, 30u: {
            let low = select(unit.q0, unit.q1, i >= 2u);
            let v = select(low, select(unit.h0, unit.h1, i >= 6u), i >= 4u);
            let h = select(v.xy, v.zw, (i & 1u) == 1u);
            let halves = vec4<u32>(h.x & 0xffffu, h.x >> 16u, h.y & 0xffffu, h.y >> 16u);
            if unit.fmt == 1u {
                return f16_bits4(halves);
            }
            return bitcast<vec4<f32>>(halves << vec4<u32>(16u));
        }
        case 8u: {
            let b = vec4<u32>(word32(unit, i)) << vec4<u32>(24u, 16u, 8u, 0u);
            q = vec4<f32>(bitcast<vec4<i32>>(b) >> vec4<u32>(24u));
        }
        case 2u, 3u: {
            // Q4_0 (centred on 8: the minimum holds -8 d) and Q4_1: element e < 16 the low
            // nibble of qs[e], else the high nibble of qs[e - 16].
            q = small_f32(byte_bits(unit.q0[i & 3u], select(0u, 4u, i >= 4u), 15u));
        }
        case 6u, 7u: {
            // Q5_0 (centred on 16: the minimum holds -16 d) and Q5_1: element e's fifth bit
            // is bit e of qh.
            let low = byte_bits(unit.q0[i & 3u], select(0u, 4u, i >= 4u), 15u);
            let e = vec4<u32>(4u * i) + vec4<u32>(0u, 1u, 2u, 3u);
            let high = ((vec4<u32>(unit.h0.x) >> e) & vec4<u32>(1u)) << vec4<u32>(4u);
            q = small_f32(low | high);
        }
        case 12u: {
            // Q4_K: unit 2g + h is the low (h = 0) or high nibbles of qs[32 g ..].
            q = small_f32(byte_bits(word32(unit, i), 4u * (unit.sub & 1u), 15u));
        }
        case 13u: {
            // Q5_K: as Q4_K, unit s's fifth bits bit s of qh[l].
            let low = byte_bits(word32(unit, i), 4u * (unit.sub & 1u), 15u);
            let qh = select(unit.h1[i & 3u], unit.h0[i & 3u], i < 4u);
            q = small_f32(low | (byte_bits(qh, unit.sub, 1u) << vec4<u32>(4u)));
        }
        default: {
            // Q6_K (centred on 32: the minimum holds -32 d sc): quarter t, the low (t < 2) or
            // high nibbles of ql and bits 2t, 2t + 1 of qh.
            let t = unit.sub % 4u;
            let low = byte_bits(word32(unit, i), 4u * (t / 2u), 15u);
            let qh = select(unit.h1[i & 3u], unit.h0[i & 3u], i < 4u);
            q = small_f32(low | (byte_bits(qh, 2u * t, 3u) << vec4<u32>(4u)));
        }
    }
    let s = select(unit.scale.xy, unit.scale.zw, i >= 4u);
    return fma(vec4<f32>(s.x), q, vec4<f32>(s.y));
}

// One element of W, row k of d_model, fused column params.col0 + col: its block's scale and
// its own bits only (a few byte reads), for the tiled kernels, which stage each element once
// for a tile of tokens. The same expressions as `w_unit` and `w_quad`.
fn w_elem(k: u32, col: u32) -> f32 {
    let c = params.col0 + col;
    let fmt = w_fmt(c);
    let row = w_row(c, fmt);
    switch fmt {
        case 0u: {
            return bitcast<f32>(wd((row >> 2u) + k));
        }
        case 1u, 30u: {
            let h = (wd((row + 2u * k) >> 2u) >> (((row + 2u * k) & 2u) * 8u)) & 0xffffu;
            if fmt == 1u {
                return f16_bits4(vec4<u32>(h)).x;
            }
            return bitcast<f32>(h << 16u);
        }
        case 2u, 3u, 6u, 7u, 8u: {
            let at = row + k / 32u * row_bytes(fmt, 32u);
            let e = k % 32u;
            let d = f16_at(at);
            if fmt == 8u {
                return d * i8_at(at + 2u + e);
            }
            // The nibble: low of qs[e] for e < 16, high of qs[e - 16]; qs after d (and m,
            // and Q5's qh).
            let qs = at + select(select(2u, 4u, fmt == 3u), select(6u, 8u, fmt == 7u), fmt >= 6u);
            var q = (u8_at(qs + (e & 15u)) >> (4u * (e / 16u))) & 15u;
            if fmt >= 6u {
                let qh = word_at(at + select(2u, 4u, fmt == 7u));
                q |= ((qh >> e) & 1u) << 4u;
            }
            switch fmt {
                case 2u: { return d * (f32(q) - 8.0); }
                case 6u: { return d * (f32(q) - 16.0); }
                default: { return fma(d, f32(q), f16_at(at + 2u)); }
            }
        }
        case 12u, 13u: {
            let at = row + k / 256u * row_bytes(fmt, 256u);
            let e = k % 256u;
            let sub = e / 32u;
            let l = e % 32u;
            let i = at >> 2u;
            let sm = scale_min_k4(wd(i + 1u), wd(i + 2u), wd(i + 3u), sub);
            let qs = at + select(16u, 48u, fmt == 13u) + 32u * (sub / 2u) + l;
            var q = (u8_at(qs) >> (4u * (sub & 1u))) & 15u;
            if fmt == 13u {
                q |= ((u8_at(at + 16u + l) >> sub) & 1u) << 4u;
            }
            return fma(f16_at(at) * sm.x, f32(q), -(f16_at(at + 2u) * sm.y));
        }
        default: {
            // Q6_K: element e = 128 n + 32 t + l.
            let at = row + k / 256u * 210u;
            let e = k % 256u;
            let n = e / 128u;
            let t = (e % 128u) / 32u;
            let l = e % 32u;
            let low = (u8_at(at + 64u * n + 32u * (t & 1u) + l) >> (4u * (t / 2u))) & 15u;
            let hb = (u8_at(at + 128u + 32u * n + l) >> (2u * t)) & 3u;
            let sc = i8_at(at + 192u + 8u * n + 2u * t + l / 16u);
            return f16_at(at + 208u) * sc * (f32(low | (hb << 4u)) - 32.0);
        }
    }
}

// Elements W[k, 4 c .. 4 c + 3] in the row-major view of the tiled kernels, j = k x (w_stride
// / 4) + c: zero past n_cols, as a padded row-major W would hold.
fn w4_at(j: u32) -> vec4<f32> {
    let stride = params.w_stride / 4u;
    let k = j / stride;
    let c = 4u * (j % stride);
    var v = vec4<f32>();
    for (var i = 0u; i < 4u; i++) {
        if c + i < params.n_cols {
            v[i] = w_elem(k, c + i);
        }
    }
    return v;
}
