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
