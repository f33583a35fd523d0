// Kernel: the epilogue pass after a projection kernel run with QK_SCRATCH (store.wgsl): what
// current models do to Q and K right after the projection (crate::epilogue), in f32: RMSNorm
// of each head (or of the whole width), then RoPE; then each element rounded to the storage
// type and written in the run's layout by store.wgsl's `put` and `out_index`. V is not
// touched. Expects params.wgsl and store.wgsl (composed before this body).
//
// Shape contract: q_in [rows, q_width] and k_in [rows, kv_width], f32 (the kernel's sums, bias
// added), rows = params.tokens (this chunk's); Q and K as store.wgsl writes them; heads of
// HEAD_DIM elements; the chunk's token `row` is token epi.row0 + row of the batch.
// Dispatch: (g, 1, 1) workgroups of WG, any g >= 1: one invocation per span of a row, a span
// being a head, or with NORM = 2 the whole of Q or of K; a grid-stride loop covers the rest.
// An invocation walks its span alone (no workgroup memory, no barriers: on a CPU driver a
// barrier costs far more than the span's few hundred reads from cache).

// Invocations per workgroup.
override WG: u32 = 64u;
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

@group(0) @binding(7) var<storage, read> q_in: array<f32>;
@group(0) @binding(8) var<storage, read> k_in: array<f32>;
@group(0) @binding(9) var<uniform> epi: EpilogueParams;
// The angle tables ([rows][ROTARY / 2] pairs of (cos, sin) as f32 bits), the norm weights
// (f32 bits) and the positions (u32), at the offsets `epi` gives.
@group(0) @binding(10) var<storage, read> aux: array<u32>;

// Element `i` of the chunk's Q (is_k false) or K, as the projection left it.
fn load(is_k: bool, i: u32) -> f32 {
    if is_k {
        return k_in[i];
    }
    return q_in[i];
}

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

// The reciprocal root mean square, with ε, of the `span` elements from element `base` of
// Q (K).
fn inv_rms(is_k: bool, base: u32, span: u32) -> f32 {
    var s = 0.0;
    for (var c = 0u; c < span; c++) {
        let y = load(is_k, base + c);
        s += y * y;
    }
    return inverseSqrt(s * select(epi.q_inv_span, epi.k_inv_span, is_k) + epi.eps);
}

// Element `col` of Q (K) row `row` (at element `base`), normalized with `scale`, written.
fn keep(is_k: bool, row: u32, base: u32, col: u32, scale: f32) {
    let width = select(params.q_width, params.kv_width, is_k);
    let head_dim = select(params.q_head_dim, params.kv_head_dim, is_k);
    let wc = select(col % HEAD_DIM, col, NORM == 2u);
    let out = normed(is_k, load(is_k, base + col), wc, scale);
    put(select(0u, 1u, is_k), out_index(row, col, width, head_dim), out);
}

// Normalizes and rotates the span `j` of row `row` (spans 0 .. q_spans - 1 are Q's, the rest
// K's), head by head: each rotated pair read, turned and written once (a·cos - b·sin, b·cos +
// a·sin), its angle's tables read once; the dimensions past ROTARY only normalized.
fn span_of(row: u32, j: u32, q_spans: u32) {
    let is_k = j >= q_spans;
    let width = select(params.q_width, params.kv_width, is_k);
    let span = select(HEAD_DIM, width, NORM == 2u);
    let first = select(j, j - q_spans, is_k) * span;
    let head_dim = select(params.q_head_dim, params.kv_head_dim, is_k);
    let which = select(0u, 1u, is_k);
    let base = row * width;
    var scale = 1.0;
    if NORM != 0u {
        scale = inv_rms(is_k, base + first, span);
    }
    let pos = position(epi.row0 + row);
    let rotary = select(0u, ROTARY, ROPE != 0u);
    for (var head = first; head < first + span; head += HEAD_DIM) {
        for (var i = 0u; i < rotary / 2u; i++) {
            // Pair i: (i, i + ROTARY / 2), or (2i, 2i + 1).
            var a = head + 2u * i;
            var b = a + 1u;
            if ROPE == 1u {
                a = head + i;
                b = a + ROTARY / 2u;
            }
            let wa = select(a - head, a, NORM == 2u);
            let wb = select(b - head, b, NORM == 2u);
            let na = normed(is_k, load(is_k, base + a), wa, scale);
            let nb = normed(is_k, load(is_k, base + b), wb, scale);
            let cs = angle(pos, i);
            put(which, out_index(row, a, width, head_dim), na * cs.x - nb * cs.y);
            put(which, out_index(row, b, width, head_dim), nb * cs.x + na * cs.y);
        }
        for (var c = head + rotary; c < head + HEAD_DIM; c++) {
            keep(is_k, row, base, c, scale);
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    var q_spans = params.q_width / HEAD_DIM;
    var k_spans = params.kv_width / HEAD_DIM;
    if NORM == 2u {
        q_spans = 1u;
        k_spans = 1u;
    }
    let per_row = q_spans + k_spans;
    let total = params.tokens * per_row;
    for (var s = gid.x; s < total; s += groups.x * WG) {
        let row = s / per_row;
        span_of(row, s - row * per_row, q_spans);
    }
}
