// Variant 3, `direct`: register-blocked, straight from storage, no workgroup memory and no
// barriers. A workgroup owns 8 token rows and 4 x WG fused columns; each invocation keeps an
// 8 x 4 block of accumulators (8 vec4s), so every k step does 12 loads for 32 FMAs where the
// naive kernel does 2 loads per FMA. That ratio is what matters on drivers that run
// invocations as SIMD lanes of a CPU (Mesa's lavapipe): there, a load whose address differs
// per invocation is a loop over the lanes, far costlier than the arithmetic, and barriers
// split the shader into coroutines. The block is written out by hand because loops over
// register arrays are not always unrolled, and an array indexed at run time lives in memory.
// Neighbouring invocations read neighbouring W columns, so a GPU coalesces the W loads, and
// all invocations of a workgroup read the same X rows, which a GPU serves from cache.
//
// Shape contract (all row-major f32):
//   x    [tokens, d_model]
//   w    [d_model, n_out], n_out = q_width + 2 * kv_width; columns [0, q_width) are Wq,
//        [q_width, q_width + kv_width) are Wk, the rest are Wv (one GEMM for all three)
//   bias [n_out], read only when HAS_BIAS (a 1-element placeholder is bound otherwise)
//   q    [tokens, q_width], k [tokens, kv_width], v [tokens, kv_width]; with HEAD_LAYOUT,
//        q [batch, q_width / q_head_dim, seq_len, q_head_dim] and k, v [batch,
//        kv_width / kv_head_dim, seq_len, kv_head_dim], where token = batch_index * seq_len + s
// Dispatch: (ceil(n_out / (4 * WG)), ceil(tokens / 8), 1) workgroups of WG invocations;
// invocation i of workgroup (gx, gy) computes rows 8gy..8gy+7 of columns 4·WG·gx + i + j·WG,
// j = 0..3.

struct Params {
    tokens: u32,
    d_model: u32,
    q_width: u32,
    kv_width: u32,
    // Used only with HEAD_LAYOUT.
    seq_len: u32,
    q_head_dim: u32,
    kv_head_dim: u32,
    // Row stride of W in elements: n_cols, or n_cols padded to a multiple of 4 for kernels
    // that read W as vec4 (only those use it).
    w_stride: u32,
    // The bound W holds fused columns [col0, col0 + n_cols) (all n_out of them unless the
    // host split the columns to fit a device limit); the kernel computes those columns only.
    col0: u32,
    n_cols: u32,
}

override HAS_BIAS: bool = false;
// Write Q, K, V as [batch, heads, seq, head_dim] instead of [tokens, width].
override HEAD_LAYOUT: bool = false;
// The storage type of X, W and Q, K, V: 0 f32, 1 f16, 2 bf16 (the host sets it; kernels that
// read only f32 are never given another). Arithmetic is f32 in every case.
override ELEM: u32 = 0u;
// Invocations per workgroup, all along the output columns (tuned per adapter).
override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
// Q, K, V as 32-bit words: f32 elements, or two 16-bit elements per word (element 2i in the
// low half of word i). Atomic, because with half types two invocations may own the two
// halves of one word (an odd width puts the end of one row and the start of the next there).
@group(0) @binding(4) var<storage, read_write> q: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read_write> k: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> v: array<atomic<u32>>;

// Where element (row, c) of an output `width` columns wide goes: row-major [tokens, width],
// or with HEAD_LAYOUT [batch, width / head_dim, seq_len, head_dim].
fn out_index(row: u32, c: u32, width: u32, head_dim: u32) -> u32 {
    if HEAD_LAYOUT {
        let seq = params.seq_len;
        let b = row / seq;
        let s = row - b * seq;
        let h = c / head_dim;
        let d = c - h * head_dim;
        return ((b * (width / head_dim) + h) * seq + s) * head_dim + d;
    }
    return row * width + c;
}

// Routes column `local` of the bound W (fused column col0 + local) of token `row` to the Q,
// K or V buffer it belongs to.
fn store(row: u32, local: u32, value: f32) {
    let qw = params.q_width;
    let kvw = params.kv_width;
    let col = params.col0 + local;
    if col < qw {
        put(0u, out_index(row, col, qw, params.q_head_dim), value);
    } else if col < qw + kvw {
        put(1u, out_index(row, col - qw, kvw, params.kv_head_dim), value);
    } else {
        put(2u, out_index(row, col - qw - kvw, kvw, params.kv_head_dim), value);
    }
}

// Stores columns local .. local + 3 of `row` that are below `n`, as `store` does. In a half
// type, four columns of one output that land on consecutive elements starting on a word
// boundary are written as two whole words (no read-modify-write); anything else goes
// element by element.
fn store4(row: u32, local: u32, value: vec4<f32>, n: u32) {
    if ELEM != 0u && local + 3u < n {
        let qw = params.q_width;
        let kvw = params.kv_width;
        let col = params.col0 + local;
        var which = 2u;
        var first = qw + kvw;
        var width = kvw;
        var head_dim = params.kv_head_dim;
        if col < qw {
            which = 0u;
            first = 0u;
            width = qw;
            head_dim = params.q_head_dim;
        } else if col < qw + kvw {
            which = 1u;
            first = qw;
        }
        let c = col - first;
        if c + 3u < width {
            let i = out_index(row, c, width, head_dim);
            if (i & 1u) == 0u && out_index(row, c + 3u, width, head_dim) == i + 3u {
                let lo = half_bits(value.x) | (half_bits(value.y) << 16u);
                let hi = half_bits(value.z) | (half_bits(value.w) << 16u);
                put_word(which, i >> 1u, lo);
                put_word(which, (i >> 1u) + 1u, hi);
                return;
            }
        }
    }
    if local < n {
        store(row, local, value.x);
    }
    if local + 1u < n {
        store(row, local + 1u, value.y);
    }
    if local + 2u < n {
        store(row, local + 2u, value.z);
    }
    if local + 3u < n {
        store(row, local + 3u, value.w);
    }
}

// Writes word `word` of output `which` (0 Q, 1 K, 2 V) whole.
fn put_word(which: u32, word: u32, bits: u32) {
    switch which {
        case 0u: { atomicStore(&q[word], bits); }
        case 1u: { atomicStore(&k[word], bits); }
        default: { atomicStore(&v[word], bits); }
    }
}

// The 16-bit pattern of `value` in the half storage type, rounded to nearest even: f16 by
// integer arithmetic (pack2x16float may round either way, leaves values past f16's range
// undefined, and needs a capability some drivers lack), bf16 as the top half of the f32. NaN
// stays a quiet NaN, values past f16's range become infinities. Integer tests only, since
// WGSL lets a compiler assume floats are never NaN.
fn half_bits(value: f32) -> u32 {
    let b = bitcast<u32>(value);
    let sign = (b >> 16u) & 0x8000u;
    let mag = b & 0x7fffffffu;
    if mag > 0x7f800000u {
        return sign | select(0x7fc0u, 0x7e00u, ELEM == 1u);
    }
    if ELEM != 1u {
        return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
    }
    // 0x477ff000 is 65520, the first value that rounds to infinity in f16.
    if mag >= 0x477ff000u {
        return sign | 0x7c00u;
    }
    // 0x38800000 is 2^-14, f16's smallest normal value: rebias the exponent (127 - 15 = 112)
    // and round the 23-bit significand to 10 bits.
    if mag >= 0x38800000u {
        let m = mag - 0x38000000u;
        return sign | ((m + 0xfffu + ((m >> 13u) & 1u)) >> 13u);
    }
    // Subnormal: a multiple of 2^-24; WGSL's round() rounds halves to even (1024 is 2^-14).
    return sign | u32(round(abs(value) * 16777216.0));
}

// Writes element `i` of output `which` (0 Q, 1 K, 2 V) in the storage type.
fn put(which: u32, i: u32, value: f32) {
    if ELEM == 0u {
        put_word(which, i, bitcast<u32>(value));
        return;
    }
    // Half `i & 1` of word `i >> 1`: clear it, then set it, leaving the other half (perhaps
    // another invocation's) alone; any interleaving of the two owners gives the same word.
    let word = i >> 1u;
    let shift = (i & 1u) * 16u;
    let keep = ~(0xffffu << shift);
    let bits = half_bits(value) << shift;
    switch which {
        case 0u: {
            atomicAnd(&q[word], keep);
            atomicOr(&q[word], bits);
        }
        case 1u: {
            atomicAnd(&k[word], keep);
            atomicOr(&k[word], bits);
        }
        default: {
            atomicAnd(&v[word], keep);
            atomicOr(&v[word], bits);
        }
    }
}

// The outputs one workgroup covers, 4 WG columns x 8 token rows: the host's grid divides
// by these (src/kernels/variants/direct.rs says the same; tests/shaders.rs checks the two agree).
override TILE_COLS: u32 = 4u * WG;
const TILE_ROWS: u32 = 8u;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let d = params.d_model;
    // Columns of this W block (q_width + 2 * kv_width when the columns are not split).
    let n_out = params.n_cols;
    let row0 = wid.y * TILE_ROWS;
    let col_base = wid.x * TILE_COLS + lid.x;
    let last = params.tokens - 1u;
    let x0 = min(row0 + 0u, last) * d;
    let x1 = min(row0 + 1u, last) * d;
    let x2 = min(row0 + 2u, last) * d;
    let x3 = min(row0 + 3u, last) * d;
    let x4 = min(row0 + 4u, last) * d;
    let x5 = min(row0 + 5u, last) * d;
    let x6 = min(row0 + 6u, last) * d;
    let x7 = min(row0 + 7u, last) * d;
    let c0 = min(col_base, n_out - 1u);
    let c1 = min(col_base + WG, n_out - 1u);
    let c2 = min(col_base + 2u * WG, n_out - 1u);
    let c3 = min(col_base + 3u * WG, n_out - 1u);
    // Loads use clamped indices, so the loop has no branches; results for rows or columns
    // past the edge are computed from duplicated data and never stored.
    var a0 = vec4<f32>();
    var a1 = vec4<f32>();
    var a2 = vec4<f32>();
    var a3 = vec4<f32>();
    var a4 = vec4<f32>();
    var a5 = vec4<f32>();
    var a6 = vec4<f32>();
    var a7 = vec4<f32>();
    // a_r[j] accumulates row0 + r, column c_j.
    for (var i = 0u; i < d; i++) {
        let wr = i * n_out;
        let wv = vec4<f32>(w[wr + c0], w[wr + c1], w[wr + c2], w[wr + c3]);
        a0 = fma(vec4<f32>(x[x0 + i]), wv, a0);
        a1 = fma(vec4<f32>(x[x1 + i]), wv, a1);
        a2 = fma(vec4<f32>(x[x2 + i]), wv, a2);
        a3 = fma(vec4<f32>(x[x3 + i]), wv, a3);
        a4 = fma(vec4<f32>(x[x4 + i]), wv, a4);
        a5 = fma(vec4<f32>(x[x5 + i]), wv, a5);
        a6 = fma(vec4<f32>(x[x6 + i]), wv, a6);
        a7 = fma(vec4<f32>(x[x7 + i]), wv, a7);
    }
    let acc = array<vec4<f32>, 8>(a0, a1, a2, a3, a4, a5, a6, a7);
    for (var c = 0u; c < 4u; c++) {
        let col = col_base + c * WG;
        if col >= n_out {
            continue;
        }
        var b = 0.0;
        if HAS_BIAS {
            b = bias[params.col0 + col];
        }
        for (var r = 0u; r < 8u; r++) {
            let row = row0 + r;
            if row < params.tokens {
                store(row, col, acc[r][c] + b);
            }
        }
    }
}
