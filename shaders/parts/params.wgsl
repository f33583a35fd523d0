// Part: the uniform every projection kernel reads, and the override constants every one is
// specialised by. Provides `struct Params` (the host's `binding::Params`, member for member),
// `params` (binding 0), HAS_BIAS, HEAD_LAYOUT and ELEM. Expects nothing.

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
