// Variant 0, `naive`: the baseline. One output element per invocation, every operand read
// straight from storage buffers; no workgroup memory, no barriers. It exists to be obviously
// right and to give the tuned variants something to beat.
//
// Shape contract (all row-major f32):
//   x    [tokens, d_model]
//   w    [d_model, n_out], n_out = q_width + 2 * kv_width; columns [0, q_width) are Wq,
//        [q_width, q_width + kv_width) are Wk, the rest are Wv (one GEMM for all three)
//   bias [n_out], read only when HAS_BIAS (a 1-element placeholder is bound otherwise)
//   q    [tokens, q_width], k [tokens, kv_width], v [tokens, kv_width]
// Dispatch: (ceil(n_out / 16), ceil(tokens / 16), 1) workgroups of 16 x 16 invocations;
// invocation (x, y) computes output column x, token row y.

struct Params {
    tokens: u32,
    d_model: u32,
    q_width: u32,
    kv_width: u32,
}

// Specialised per pipeline (PipelineCompilationOptions::constants), so the no-bias pipeline
// carries no bias load at all.
override HAS_BIAS: bool = false;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> q: array<f32>;
@group(0) @binding(5) var<storage, read_write> k: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;

// Routes fused column `col` of token `row` to the Q, K or V buffer it belongs to.
fn store(row: u32, col: u32, value: f32) {
    let qw = params.q_width;
    let kvw = params.kv_width;
    if col < qw {
        q[row * qw + col] = value;
    } else if col < qw + kvw {
        k[row * kvw + (col - qw)] = value;
    } else {
        v[row * kvw + (col - qw - kvw)] = value;
    }
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let row = gid.y;
    let n_out = params.q_width + 2u * params.kv_width;
    if row >= params.tokens || col >= n_out {
        return;
    }
    let d = params.d_model;
    var acc = 0.0;
    for (var i = 0u; i < d; i++) {
        acc += x[row * d + i] * w[i * n_out + col];
    }
    if HAS_BIAS {
        acc += bias[col];
    }
    store(row, col, acc);
}
