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

// Invocations per workgroup, all along the output columns (tuned per adapter).
override WG: u32 = 64u;

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
