// Variant 2, `regtile`: the register-blocked tiled kernel for GPUs. Each invocation computes
// a 4 x 4 block of outputs held in registers (four vec4 accumulators); a workgroup of
// WG_X x WG_Y invocations covers a (4 WG_Y) x (4 WG_X) tile of the fused output, walking
// d_model in steps of BK = 16. Each step stages the tile's X rows [4 WG_Y, 16] and W rows
// [16, 4 WG_X] in workgroup memory (W as vec4: rows are padded to a multiple of 4 columns),
// so every global element is loaded once per workgroup and reused 4 WG_X or 4 WG_Y times
// from fast memory. Loads are bounds-checked only in tiles that hang over an edge of X or W
// (a workgroup-uniform branch); interior tiles load unchecked. f32 accumulation.
//
// Shape contract (all row-major f32):
//   x    [tokens, d_model]
//   w    [d_model, w_stride] as vec4s, w_stride = n_out rounded up to a multiple of 4, the
//        padding zero; n_out = q_width + 2 * kv_width; columns [0, q_width) are Wq,
//        [q_width, q_width + kv_width) are Wk, the rest are Wv (one GEMM for all three)
//   bias [n_out], read only when HAS_BIAS (a 1-element placeholder is bound otherwise)
//   q    [tokens, q_width], k [tokens, kv_width], v [tokens, kv_width]; with HEAD_LAYOUT,
//        q [batch, q_width / q_head_dim, seq_len, q_head_dim] and k, v [batch,
//        kv_width / kv_head_dim, seq_len, kv_head_dim], where token = batch_index * seq_len + s
// Dispatch: (ceil(n_out / (4 WG_X)), ceil(tokens / (4 WG_Y)), 1) workgroups of WG_X x WG_Y.
// Staging loops stride by the workgroup size, so any WG_X x WG_Y covers its tiles.

// Invocations per workgroup along output columns and token rows (tuned per adapter).
override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;

// The outputs one workgroup covers, 4 WG_X columns x 4 WG_Y token rows: the host's grid divides
// by these (src/kernels/variants/regtile.rs says the same; tests/shaders.rs checks the two agree).
// Declared before `xs`, whose length is an override expression: declared after it, naga 30's
// override processing (the pipeline's creation) fails an internal assertion.
override TILE_COLS: u32 = 4u * WG_X;
override TILE_ROWS: u32 = 4u * WG_Y;

const BK: u32 = 16u;

// xs[r * BK + i] = X[tile_row + r, k0 + i]        (BM = 4 WG_Y rows)
// ws[i * WG_X + c] = W[k0 + i, tile_col + 4c .. +4] (WG_X vec4s per row)
var<workgroup> xs: array<f32, 4u * WG_Y * BK>;
var<workgroup> ws: array<vec4<f32>, BK * WG_X>;

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let d = params.d_model;
    // Columns of this W block (q_width + 2 * kv_width when the columns are not split).
    let n_out = params.n_cols;
    let w_row = params.w_stride / 4u;
    let bm = TILE_ROWS;
    let threads = WG_X * WG_Y;
    let row_tile = wid.y * bm;
    let col4_tile = wid.x * TILE_COLS / 4u; // first vec4 column of the tile
    let rows_inside = row_tile + bm <= params.tokens;
    let cols_inside = col4_tile + WG_X <= w_row;

    var a0 = vec4<f32>();
    var a1 = vec4<f32>();
    var a2 = vec4<f32>();
    var a3 = vec4<f32>();
    let r0 = lid.y * 4u;
    for (var k0 = 0u; k0 < d; k0 += BK) {
        // Uniform across the workgroup: every invocation takes the same branch.
        let interior = rows_inside && cols_inside && k0 + BK <= d;
        // Stage X: bm x BK elements, threads at a time.
        for (var e = li; e < bm * BK; e += threads) {
            let r = e / BK;
            let i = e - r * BK;
            if interior {
                xs[e] = x[(row_tile + r) * d + k0 + i];
            } else {
                let ok = row_tile + r < params.tokens && k0 + i < d;
                let src = min(row_tile + r, params.tokens - 1u) * d + min(k0 + i, d - 1u);
                xs[e] = select(0.0, x[src], ok);
            }
        }
        // Stage W: BK x WG_X vec4s.
        for (var e = li; e < BK * WG_X; e += threads) {
            let i = e / WG_X;
            let c = e - i * WG_X;
            if interior {
                ws[e] = w[(k0 + i) * w_row + col4_tile + c];
            } else {
                let ok = k0 + i < d && col4_tile + c < w_row;
                let src = min(k0 + i, d - 1u) * w_row + min(col4_tile + c, w_row - 1u);
                ws[e] = select(vec4<f32>(), w[src], ok);
            }
        }
        workgroupBarrier();
        for (var i = 0u; i < BK; i++) {
            let b = ws[i * WG_X + lid.x];
            a0 = fma(vec4<f32>(xs[(r0 + 0u) * BK + i]), b, a0);
            a1 = fma(vec4<f32>(xs[(r0 + 1u) * BK + i]), b, a1);
            a2 = fma(vec4<f32>(xs[(r0 + 2u) * BK + i]), b, a2);
            a3 = fma(vec4<f32>(xs[(r0 + 3u) * BK + i]), b, a3);
        }
        workgroupBarrier();
    }

    let acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
    let col0 = (col4_tile + lid.x) * 4u;
    for (var c = 0u; c < 4u; c++) {
        let col = col0 + c;
        if col >= n_out {
            continue;
        }
        var b = 0.0;
        if HAS_BIAS {
            b = bias[params.col0 + col];
        }
        for (var r = 0u; r < 4u; r++) {
            let row = row_tile + r0 + r;
            if row < params.tokens {
                store(row, col, acc[r][c] + b);
            }
        }
    }
}
