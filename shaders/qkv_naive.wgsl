// Variant 0, `naive`: the baseline. One output element per invocation, every operand read
// straight from storage buffers; no workgroup memory, no barriers. It exists to be obviously
// right and to give the tuned variants something to beat.
//
// It runs in every storage type (ELEM): f32, and f16 or bf16 packed two to a 32-bit word,
// widened to f32 on load; it accumulates in f32 and rounds once, at the store.
//
// Shape contract (all row-major, in the storage type; bias always f32):
//   x    [tokens, d_model]
//   w    [d_model, n_out], n_out = q_width + 2 * kv_width; columns [0, q_width) are Wq,
//        [q_width, q_width + kv_width) are Wk, the rest are Wv (one GEMM for all three)
//   bias [n_out], read only when HAS_BIAS (a 1-element placeholder is bound otherwise)
//   q    [tokens, q_width], k [tokens, kv_width], v [tokens, kv_width]; with HEAD_LAYOUT,
//        q [batch, q_width / q_head_dim, seq_len, q_head_dim] and k, v [batch,
//        kv_width / kv_head_dim, seq_len, kv_head_dim], where token = batch_index * seq_len + s
//        (the layout attention kernels read, written here directly, not by a second pass)
// Dispatch: (ceil(n_out / 16), ceil(tokens / 16), 1) workgroups of 16 x 16 invocations;
// invocation (x, y) computes output column x, token row y.

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

// Specialised per pipeline (PipelineCompilationOptions::constants), so the no-bias pipeline
// carries no bias load at all.
override HAS_BIAS: bool = false;
// Write Q, K, V as [batch, heads, seq, head_dim] instead of [tokens, width].
override HEAD_LAYOUT: bool = false;
// The storage type of X, W and Q, K, V: 0 f32, 1 f16, 2 bf16 (the host sets it; kernels that
// read only f32 are never given another). Arithmetic is f32 in every case.
override ELEM: u32 = 0u;

@group(0) @binding(0) var<uniform> params: Params;
// X and W as 32-bit words of the storage type (see `widen`).
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
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

// The half-typed element of 32-bit word `word` (the high half when `high`), widened to f32
// exactly, by integer arithmetic (no capability needed): see `widen4`.
fn widen(word: u32, high: bool) -> f32 {
    let h = select(word & 0xffffu, word >> 16u, high);
    return widen4(vec2<u32>(h, 0u)).x;
}

// Whether f16 is widened by the hardware's conversion (`unpack2x16float`, one instruction
// per pair on GPUs with native f16), set by the host where the device has f16 and its
// conversions; else by the integer arithmetic below, which every adapter runs. On a device
// without the conversions (wgpu's DownlevelFlags::SHADER_F16_IN_F32) the host builds the
// module with the `unpack2x16float` expression below replaced by NaN
// (`kernels::F16_UNPACK`), so that it validates; NATIVE_F16 is false there.
override NATIVE_F16: bool = false;

// Four consecutive half-typed elements held in two words, widened to f32 exactly. bf16 is
// the top half of an f32: a shift or a mask. f16: the hardware's conversion (NATIVE_F16), or
// normal values rebias the exponent (127 - 15 = 112); subnormals are m x 2^-24 (a normal
// f32, so no flush to zero); infinities and NaN keep their payload.
fn widen4(words: vec2<u32>) -> vec4<f32> {
    if ELEM == 2u {
        return bitcast<vec4<f32>>(vec4<u32>(
            words.x << 16u,
            words.x & 0xffff0000u,
            words.y << 16u,
            words.y & 0xffff0000u,
        ));
    }
    if NATIVE_F16 {
        return vec4<f32>(unpack2x16float(words.x), unpack2x16float(words.y));
    }
    let h = vec4<u32>(
        words.x & 0xffffu,
        words.x >> 16u,
        words.y & 0xffffu,
        words.y >> 16u,
    );
    if ELEM != 1u {
        return bitcast<vec4<f32>>(h << vec4<u32>(16u));
    }
    let sign = (h & vec4<u32>(0x8000u)) << vec4<u32>(16u);
    let e = (h >> vec4<u32>(10u)) & vec4<u32>(0x1fu);
    let m = h & vec4<u32>(0x3ffu);
    let normal = ((h & vec4<u32>(0x7fffu)) << vec4<u32>(13u)) + vec4<u32>(0x38000000u);
    let sub = bitcast<vec4<u32>>(vec4<f32>(m) * 5.9604644775390625e-8);
    let special = vec4<u32>(0x7f800000u) | (m << vec4<u32>(13u));
    let bits = select(select(normal, sub, e == vec4<u32>(0u)), special, e == vec4<u32>(31u));
    return bitcast<vec4<f32>>(sign | bits);
}

// Element i of X, of W.
fn x_at(i: u32) -> f32 {
    if ELEM == 0u {
        return bitcast<f32>(x[i]);
    }
    return widen(x[i >> 1u], (i & 1u) == 1u);
}

fn w_at(i: u32) -> f32 {
    if ELEM == 0u {
        return bitcast<f32>(w[i]);
    }
    return widen(w[i >> 1u], (i & 1u) == 1u);
}

// The outputs one workgroup covers, 16 columns x 16 token rows: the host's grid divides
// by these (src/kernels/variants/naive.rs says the same; tests/shaders.rs checks the two agree).
const TILE_COLS: u32 = 16u;
const TILE_ROWS: u32 = 16u;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let col = wid.x * TILE_COLS + lid.x;
    let row = wid.y * TILE_ROWS + lid.y;
    // Columns of this W block (q_width + 2 * kv_width when the columns are not split).
    let n_out = params.n_cols;
    if row >= params.tokens || col >= n_out {
        return;
    }
    let d = params.d_model;
    var acc = 0.0;
    for (var i = 0u; i < d; i++) {
        acc += x_at(row * d + i) * w_at(i * n_out + col);
    }
    if HAS_BIAS {
        acc += bias[params.col0 + col];
    }
    store(row, col, acc);
}
