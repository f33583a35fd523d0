// Variant 1, `tiled` (what `qkv explain` and library callers that name no kernel run; the
// CLI's other commands autotune): classic shared-memory tiling over d_model. Each 16 x 16
// workgroup owns a 16 x 16 block of the fused [tokens, n_out] output; it walks d_model in
// steps of TILE, staging a TILE x TILE tile of X and of W in workgroup memory, so each global
// element is read once per workgroup instead of once per invocation. One output per
// invocation, f32 accumulation.
//
// Shape contract (all row-major f32):
//   x    [tokens, d_model]
//   w    [d_model, n_out], n_out = q_width + 2 * kv_width; columns [0, q_width) are Wq,
//        [q_width, q_width + kv_width) are Wk, the rest are Wv (one GEMM for all three)
//   bias [n_out], read only when HAS_BIAS (a 1-element placeholder is bound otherwise)
//   q    [tokens, q_width], k [tokens, kv_width], v [tokens, kv_width]; with HEAD_LAYOUT,
//        q [batch, q_width / q_head_dim, seq_len, q_head_dim] and k, v [batch,
//        kv_width / kv_head_dim, seq_len, kv_head_dim], where token = batch_index * seq_len + s
//        (the layout attention kernels read, written here directly, not by a second pass)
// Dispatch: (ceil(n_out / 16), ceil(tokens / 16), 1) workgroups of 16 x 16 invocations.

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

const TILE: u32 = 16u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> q: array<f32>;
@group(0) @binding(5) var<storage, read_write> k: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;

// xs[r][i] = X[tile_row + r, k0 + i]; ws[i][c] = W[k0 + i, tile_col + c]. Zero outside the
// matrices, so ragged edges add nothing to the sum.
var<workgroup> xs: array<array<f32, TILE>, TILE>;
var<workgroup> ws: array<array<f32, TILE>, TILE>;

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
        q[out_index(row, col, qw, params.q_head_dim)] = value;
    } else if col < qw + kvw {
        k[out_index(row, col - qw, kvw, params.kv_head_dim)] = value;
    } else {
        v[out_index(row, col - qw - kvw, kvw, params.kv_head_dim)] = value;
    }
}

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let d = params.d_model;
    // Columns of this W block (q_width + 2 * kv_width when the columns are not split).
    let n_out = params.n_cols;
    let col = wid.x * TILE + lid.x;
    let row = wid.y * TILE + lid.y;

    var acc = 0.0;
    // The loop bound is uniform across the workgroup, so every invocation reaches every
    // barrier, including those whose own output lies outside the matrix.
    for (var k0 = 0u; k0 < d; k0 += TILE) {
        let xk = k0 + lid.x;
        var xv = 0.0;
        if row < params.tokens && xk < d {
            xv = x[row * d + xk];
        }
        xs[lid.y][lid.x] = xv;

        let wk = k0 + lid.y;
        var wv = 0.0;
        if wk < d && col < n_out {
            wv = w[wk * n_out + col];
        }
        ws[lid.y][lid.x] = wv;
        workgroupBarrier();

        for (var i = 0u; i < TILE; i++) {
            acc += xs[lid.y][i] * ws[i][lid.x];
        }
        workgroupBarrier();
    }

    if row < params.tokens && col < n_out {
        if HAS_BIAS {
            acc += bias[params.col0 + col];
        }
        store(row, col, acc);
    }
}
