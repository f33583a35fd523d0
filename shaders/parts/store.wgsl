// Part: the epilogue every projection kernel ends with. Provides `bias` (binding 3) and Q, K, V
// (bindings 4 to 6, 32-bit words), and the store: `out_index` (the row-major or head layout),
// `store` (one element, routed to Q, K or V), `store4` (four columns), `put`, `put_word`,
// `half_bits` (rounding to the storage type), QK_SCRATCH. Expects params.wgsl (`params`,
// HEAD_LAYOUT, ELEM).

// With QK_SCRATCH the kernel is followed by the epilogue pass (qkv_epilogue.wgsl: QK-norm,
// RoPE): Q and K go as f32, token-major [tokens, width], to the scratch buffers bound at 4
// and 5 in their place, to be normalized, rotated, laid out and rounded there. V is stored
// as always.
override QK_SCRATCH: bool = false;

// The bias of each fused column, f32 in every storage type, read only when HAS_BIAS (a
// 1-element placeholder is bound otherwise).
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
    if QK_SCRATCH && col < qw + kvw {
        if col < qw {
            put(0u, row * qw + col, value);
        } else {
            put(1u, row * kvw + col - qw, value);
        }
    } else if col < qw {
        put(0u, out_index(row, col, qw, params.q_head_dim), value);
    } else if col < qw + kvw {
        put(1u, out_index(row, col - qw, kvw, params.kv_head_dim), value);
    } else {
        put(2u, out_index(row, col - qw - kvw, kvw, params.kv_head_dim), value);
    }
}

// Stores columns local .. local + 3 of `row` that are below `n`, as `store` does. In a half
// type, four columns of one output that land on consecutive elements starting on a word
// boundary are written as two whole words (no read-modify-write); anything else (Q's and K's
// f32 scratch among it) goes element by element.
fn store4(row: u32, local: u32, value: vec4<f32>, n: u32) {
    let scratch = QK_SCRATCH && params.col0 + local < params.q_width + params.kv_width;
    if ELEM != 0u && local + 3u < n && !scratch {
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

// Writes element `i` of output `which` (0 Q, 1 K, 2 V) in the storage type (Q and K in f32
// with QK_SCRATCH).
fn put(which: u32, i: u32, value: f32) {
    if ELEM == 0u || (QK_SCRATCH && which < 2u) {
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
