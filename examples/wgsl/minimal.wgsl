// The smallest kernel that meets the contract of docs/KERNELS.md: f32 only, one output
// element per invocation. `qkv try examples/wgsl/minimal.wgsl` checks and times it.
//
// qkv: elements f32
// qkv: w_align 1

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
@group(0) @binding(2) var<storage, read> w: array<f32>;       // [d_model, w_stride]
@group(0) @binding(3) var<storage, read> bias: array<f32>;    // [q_width + 2 kv_width]
@group(0) @binding(4) var<storage, read_write> q: array<f32>;
@group(0) @binding(5) var<storage, read_write> k: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;

// Each workgroup covers 16 output columns x 16 tokens.
const TILE_COLS: u32 = 16u;
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

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let col = id.x; // a column of this W block: fused column params.col0 + col
    let row = id.y;
    if row >= params.tokens || col >= params.n_cols {
        return;
    }
    var acc = 0.0;
    for (var i = 0u; i < params.d_model; i++) {
        acc += x[row * params.d_model + i] * w[i * params.w_stride + col];
    }
    let c = params.col0 + col;
    if HAS_BIAS {
        acc += bias[c];
    }
    let qw = params.q_width;
    let kvw = params.kv_width;
    if c < qw {
        q[out_index(row, c, qw, params.q_head_dim)] = acc;
    } else if c < qw + kvw {
        k[out_index(row, c - qw, kvw, params.kv_head_dim)] = acc;
    } else {
        v[out_index(row, c - qw - kvw, kvw, params.kv_head_dim)] = acc;
    }
}
