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

const TILE: u32 = 16u;

// xs[r][i] = X[tile_row + r, k0 + i]; ws[i][c] = W[k0 + i, tile_col + c]. Zero outside the
// matrices, so ragged edges add nothing to the sum.
var<workgroup> xs: array<array<f32, TILE>, TILE>;
var<workgroup> ws: array<array<f32, TILE>, TILE>;

// The outputs one workgroup covers, TILE columns x TILE token rows: the host's grid divides
// by these (src/kernels/variants/tiled.rs says the same; tests/shaders.rs checks the two agree).
const TILE_COLS: u32 = TILE;
const TILE_ROWS: u32 = TILE;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let d = params.d_model;
    // Columns of this W block (q_width + 2 * kv_width when the columns are not split).
    let n_out = params.n_cols;
    let col = wid.x * TILE_COLS + lid.x;
    let row = wid.y * TILE_ROWS + lid.y;

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
