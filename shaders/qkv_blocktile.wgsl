// Variant 7, `blocktile`: the GPU kernel. Each workgroup of 16 x 16 invocations computes a
// 128 x 128 tile of the fused output; each invocation keeps an 8 x 8 block of it in 16 vec4
// registers. d_model is walked in steps of BK = 16: the tile's X [128 rows, 16] (transposed,
// as vec4s of 4 rows) and W [16, 128 columns] (as vec4s) are staged in workgroup memory, and
// every step of the inner loop reads 2 vec4s of X and 2 of W for 64 FMAs. While the
// workgroup computes on one step, each invocation already holds the next step's 8 X values
// and 2 W vec4s in registers (software prefetch), so global-memory latency overlaps the
// arithmetic. Global loads are coalesced: 16 neighbouring invocations read 16 consecutive X
// elements of a row, 32 read a 512-byte run of a W row. The X tile is stored with its vec4
// index XOR-swizzled by (k & 7), which spreads the transposing stores over the memory banks
// without padding (the two tiles fill exactly 16 KiB, WebGPU's default workgroup storage).
// Barriers and workgroup memory are cheap on a GPU and costly on a CPU driver; on lavapipe
// the texture kernels win instead, which is what the tuner is for.
// Runs in every storage type (ELEM): f32, and f16 or bf16 packed two to a 32-bit word,
// widened to f32 on load; it accumulates in f32 and rounds once, at the store.
// Its `main` is the tile it shares with `splitk` (shaders/parts/tile128.wgsl, over the whole of
// d_model here); composed with the parts (shaders/parts/) src/kernels/variants/blocktile.rs
// names.
//
// Shape contract (all row-major, in the storage type; bias always f32):
//   x    [tokens, d_model]
//   w    [d_model, w_stride] as vec4s, w_stride = n_out rounded up to a multiple of 4, the
//        padding zero; n_out = q_width + 2 * kv_width; columns [0, q_width) are Wq,
//        [q_width, q_width + kv_width) are Wk, the rest are Wv (one GEMM for all three)
//   bias [n_out], read only when HAS_BIAS (a 1-element placeholder is bound otherwise)
//   q    [tokens, q_width], k [tokens, kv_width], v [tokens, kv_width]; with HEAD_LAYOUT,
//        q [batch, q_width / q_head_dim, seq_len, q_head_dim] and k, v [batch,
//        kv_width / kv_head_dim, seq_len, kv_head_dim], where token = batch_index * seq_len + s
// Dispatch: (ceil(n_out / 128), ceil(tokens / 128), 1) workgroups of 16 x 16 invocations.
// Invocation (tx, ty) of workgroup (gx, gy) computes rows 128 gy + 4 ty + i and
// 128 gy + 64 + 4 ty + i (i = 0..3) of columns 128 gx + 4 tx + j and 128 gx + 64 + 4 tx + j
// (j = 0..3): the two halves keep neighbouring invocations on neighbouring vec4s.

// The whole of d_model: one range (the grid's z is 1).
fn k_range(z: u32) -> vec2<u32> {
    return vec2<u32>(0u, params.d_model);
}

// The bias of columns col .. col + 3 (zero past n_cols, and without HAS_BIAS).
fn tile_bias(col: u32) -> vec4<f32> {
    var b = vec4<f32>();
    if !HAS_BIAS {
        return b;
    }
    let n = params.n_cols;
    if col + 0u < n {
        b.x = bias[params.col0 + col + 0u];
    }
    if col + 1u < n {
        b.y = bias[params.col0 + col + 1u];
    }
    if col + 2u < n {
        b.z = bias[params.col0 + col + 2u];
    }
    if col + 3u < n {
        b.w = bias[params.col0 + col + 3u];
    }
    return b;
}

// Stores the four columns col .. col + 3 of `row` that exist, adding the bias.
fn emit(z: u32, row: u32, col: u32, value: vec4<f32>, b: vec4<f32>) {
    if row >= params.tokens {
        return;
    }
    store4(row, col, value + b, params.n_cols);
}
