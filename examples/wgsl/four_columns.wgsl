// minimal.wgsl, four columns per invocation: each X element read once feeds four outputs,
// and W is read a vec4 at a time (its rows padded to 4 columns: `w_align 4`). The second
// step of docs/KERNELS.md's walkthrough.
//
// qkv: elements f32
// qkv: w_align 4

struct Params {
    tokens: u32,
    d_model: u32,
    q_width: u32,
    kv_width: u32,
    seq_len: u32,
    q_head_dim: u32,
    kv_head_dim: u32,
    w_stride: u32,
    col0: u32,
    n_cols: u32,
}

// Set by the host on every pipeline.
override HAS_BIAS: bool = false;
override HEAD_LAYOUT: bool = false;
override ELEM: u32 = 0u; // always 0 (f32) here: the header claims f32 alone

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;       // [tokens, d_model]
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>; // [d_model, w_stride / 4]
@group(0) @binding(3) var<storage, read> bias: array<f32>;    // [q_width + 2 kv_width]
@group(0) @binding(4) var<storage, read_write> q: array<f32>;
@group(0) @binding(5) var<storage, read_write> k: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;

// Each workgroup covers 64 output columns (16 invocations x 4) x 16 tokens.
const TILE_COLS: u32 = 64u;
const TILE_ROWS: u32 = 16u;

// Element (row, c) of an output `width` wide: [tokens, width], or with HEAD_LAYOUT
// [batch, width / head_dim, seq_len, head_dim].
fn out_index(row: u32, c: u32, width: u32, head_dim: u32) -> u32 {
    if HEAD_LAYOUT {
        let b = row / params.seq_len;
        let s = row % params.seq_len;
        return ((b * (width / head_dim) + c / head_dim) * params.seq_len + s) * head_dim
            + c % head_dim;
    }
    return row * width + c;
}

// Stores `value` at fused column c of `row` in Q, K or V.
fn store(row: u32, c: u32, value: f32) {
    let qw = params.q_width;
    let kvw = params.kv_width;
    if c < qw {
        q[out_index(row, c, qw, params.q_head_dim)] = value;
    } else if c < qw + kvw {
        k[out_index(row, c - qw, kvw, params.kv_head_dim)] = value;
    } else {
        v[out_index(row, c - qw - kvw, kvw, params.kv_head_dim)] = value;
    }
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let col = id.x * 4u; // columns col .. col + 3 of this W block
    let row = id.y;
    if row >= params.tokens || col >= params.n_cols {
        return;
    }
    // w_stride is a multiple of 4 (w_align 4) and so is col: whole vec4s, the padding zeros.
    let stride4 = params.w_stride / 4u;
    var acc = vec4<f32>(0.0);
    for (var i = 0u; i < params.d_model; i++) {
        acc += x[row * params.d_model + i] * w[i * stride4 + col / 4u];
    }
    for (var j = 0u; j < 4u; j++) {
        if col + j < params.n_cols {
            let c = params.col0 + col + j;
            var value = acc[j];
            if HAS_BIAS {
                value += bias[c];
            }
            store(row, c, value);
        }
    }
}
