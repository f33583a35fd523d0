// Part: QK-norm and RoPE (crate::epilogue) on one span of a row of Q or K, in f32: RMSNorm of
// each head (or of the whole width), then each rotated pair turned once; each element then
// rounded to the storage type and written in the run's layout by store.wgsl's `put` and
// `out_index`. What the epilogue pass (qkv_epilogue.wgsl) does to Q and K a kernel left in
// scratch, and what `blocktile` with the epilogue fused (tile_rope_norm.wgsl) does to its
// tile. Provides HEAD_DIM, NORM, PLUS_ONE, ROPE, ROTARY, `struct EpilogueParams` (the host's
// binding::EpilogueParams, member for member), `epi` (binding 7), `aux` (binding 8) and
// `rope_norm_span`. Expects params.wgsl, store.wgsl, and from the body:
//   fn epi_load(is_k: bool, i: u32) -> f32   element i of Q (is_k false) or K, wherever the
//                                            body keeps them before the epilogue

// Elements per head, in Q and K alike.
override HEAD_DIM: u32 = 1u;
// The norm: 0 none, 1 RMSNorm of each head, 2 of Q's (K's) whole width.
override NORM: u32 = 0u;
// The norm's weight is stored as an offset from 1 (Gemma): the scale is 1 + w.
override PLUS_ONE: bool = false;
// RoPE: 0 none, 1 pairs (i, i + ROTARY / 2) (rotate-half, NEOX), 2 pairs (2i, 2i + 1) (GPT-J,
// llama.cpp's NORM).
override ROPE: u32 = 0u;
// Dimensions of each head that are rotated, from its start (even; the rest pass through).
override ROTARY: u32 = 0u;

// What changes per chunk, and where each table starts in `aux` (in words).
struct EpilogueParams {
    // The chunk's first token in the batch.
    row0: u32,
    // Token t of a sequence of `seq` is at pos_offset + t mod seq.
    pos_offset: u32,
    seq: u32,
    // A position p is split as (p >> lo_bits, p & lo_mask): cos and sin of the angle of each
    // part come from tables computed in f64 and are combined by the angle-sum formulas.
    lo_bits: u32,
    lo_mask: u32,
    // Word offsets in `aux` of the high parts' table (the low parts' is at 0), of Q's and
    // K's norm weights and of the positions given (one per token of the batch), or
    // 0xffffffff where they are counted from pos_offset instead.
    table_hi: u32,
    q_weight: u32,
    k_weight: u32,
    positions: u32,
    eps: f32,
    // 1 / elements of Q's span and of K's, rounded once to f32 by the host.
    q_inv_span: f32,
    k_inv_span: f32,
}

@group(0) @binding(7) var<uniform> epi: EpilogueParams;
// The angle tables ([rows][ROTARY / 2] pairs of (cos, sin) as f32 bits), the norm weights
// (f32 bits) and the positions (u32), at the offsets `epi` gives.
@group(0) @binding(8) var<storage, read> aux: array<u32>;

// Element `c` of its head (per-head norm) or width, after the norm's scale and weight.
fn normed(is_k: bool, y: f32, c: u32, scale: f32) -> f32 {
    if NORM == 0u {
        return y;
    }
    var w = bitcast<f32>(aux[select(epi.q_weight, epi.k_weight, is_k) + c]);
    if PLUS_ONE {
        w = 1.0 + w;
    }
    return y * scale * w;
}

// Where the batch's token `t` sits in its sequence.
fn position(t: u32) -> u32 {
    if epi.positions != 0xffffffffu {
        return aux[epi.positions + t];
    }
    return epi.pos_offset + t % epi.seq;
}

// (cos, sin) of pair i's angle at position `pos`: hi·2^lo_bits and lo's from the tables,
// summed by cos(a + b) = cos a cos b - sin a sin b, sin(a + b) = sin a cos b + cos a sin b.
fn angle(pos: u32, i: u32) -> vec2<f32> {
    let pairs = ROTARY / 2u;
    let lo = ((pos & epi.lo_mask) * pairs + i) * 2u;
    let hi = epi.table_hi + ((pos >> epi.lo_bits) * pairs + i) * 2u;
    let cl = bitcast<f32>(aux[lo]);
    let sl = bitcast<f32>(aux[lo + 1u]);
    let ch = bitcast<f32>(aux[hi]);
    let sh = bitcast<f32>(aux[hi + 1u]);
    return vec2<f32>(ch * cl - sh * sl, sh * cl + ch * sl);
}

// The reciprocal root mean square, with ε, of the `span` elements of Q (K) from `at`.
fn inv_rms(is_k: bool, at: u32, span: u32) -> f32 {
    var s = 0.0;
    for (var c = 0u; c < span; c++) {
        let y = epi_load(is_k, at + c);
        s += y * y;
    }
    return inverseSqrt(s * select(epi.q_inv_span, epi.k_inv_span, is_k) + epi.eps);
}

// Normalizes and rotates one span of token `row` of the chunk: columns first .. first + span
// of Q (K), span a head (or with NORM = 2 the whole width), read from epi_load(is_k, at ..);
// head by head, each rotated pair read, turned and written once (a·cos - b·sin, b·cos +
// a·sin), its angle's tables read once; the dimensions past ROTARY only normalized.
fn rope_norm_span(is_k: bool, row: u32, first: u32, at: u32) {
    let width = select(params.q_width, params.kv_width, is_k);
    let head_dim = select(params.q_head_dim, params.kv_head_dim, is_k);
    let span = select(HEAD_DIM, width, NORM == 2u);
    let which = select(0u, 1u, is_k);
    var scale = 1.0;
    if NORM != 0u {
        scale = inv_rms(is_k, at, span);
    }
    let pos = position(epi.row0 + row);
    let rotary = select(0u, ROTARY, ROPE != 0u);
    // h: where each head starts in the span; the norm's weight is indexed within the head,
    // or with NORM = 2 within the width (first is then 0).
    for (var h = 0u; h < span; h += HEAD_DIM) {
        let w0 = select(h, 0u, NORM == 2u);
        for (var i = 0u; i < rotary / 2u; i++) {
            // Pair i: (i, i + ROTARY / 2), or (2i, 2i + 1).
            var a = h + 2u * i;
            var b = a + 1u;
            if ROPE == 1u {
                a = h + i;
                b = a + ROTARY / 2u;
            }
            let na = normed(is_k, epi_load(is_k, at + a), a - w0, scale);
            let nb = normed(is_k, epi_load(is_k, at + b), b - w0, scale);
            let cs = angle(pos, i);
            put(which, out_index(row, first + a, width, head_dim), na * cs.x - nb * cs.y);
            put(which, out_index(row, first + b, width, head_dim), nb * cs.x + na * cs.y);
        }
        for (var c = h + rotary; c < h + HEAD_DIM; c++) {
            let y = normed(is_k, epi_load(is_k, at + c), c - w0, scale);
            put(which, out_index(row, first + c, width, head_dim), y);
        }
    }
}
