// Variant 4, `subgroup`: `direct` (8 x 4 outputs per invocation in registers, no workgroup
// memory, no barriers) with X shared through subgroup operations. All invocations of a
// workgroup need the same 8 X rows; instead of every invocation loading every X element,
// lanes 0..7 of each subgroup load 8 consecutive elements of each row, and
// subgroupBroadcast hands each one to every lane. Each invocation's 4 columns are adjacent
// and read as one vec4 (W rows are padded to a multiple of 4 columns). Per 8 steps of d_model
// an invocation then does 8 scalar X loads + 8 vec4 W loads for 256 FMAs, against
// `direct`'s 96 scalar loads. On Mesa's lavapipe, where every per-invocation load is a loop
// over SIMD lanes but a broadcast from a constant lane is one register shuffle, that is most
// of the cost.
//
// Needs the SUBGROUP feature, a subgroup size of at least 8, and WG a multiple of 8 (the
// host never selects it otherwise).
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
// Dispatch: (ceil(n_out / (4 * WG)), ceil(tokens / 8), 1) workgroups of WG invocations;
// invocation i of workgroup (gx, gy) computes rows 8gy..8gy+7 of columns 4(WG·gx + i) + j,
// j = 0..3.

// Subgroup builtins need the device's SUBGROUP feature. WGSL's `enable subgroups;` directive
// belongs here, but naga (wgpu 30) rejects it as not yet implemented and accepts the
// builtins without it.

struct Params {
    tokens: u32,
    d_model: u32,
    q_width: u32,
    kv_width: u32,
    // Used only with HEAD_LAYOUT.
    seq_len: u32,
    q_head_dim: u32,
    kv_head_dim: u32,
    // Row stride of W in elements: n_out, or n_out padded to a multiple of 4 for kernels that
    // read W as vec4 (only those use it).
    w_stride: u32,
}

override HAS_BIAS: bool = false;
// Write Q, K, V as [batch, heads, seq, head_dim] instead of [tokens, width].
override HEAD_LAYOUT: bool = false;
// Invocations per workgroup, all along the output columns (tuned per adapter); a multiple
// of 8, so that every subgroup holds lanes 0..7.
override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> q: array<f32>;
@group(0) @binding(5) var<storage, read_write> k: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;

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

// Routes fused column `col` of token `row` to the Q, K or V buffer it belongs to.
fn store(row: u32, col: u32, value: f32) {
    let qw = params.q_width;
    let kvw = params.kv_width;
    if col < qw {
        q[out_index(row, col, qw, params.q_head_dim)] = value;
    } else if col < qw + kvw {
        k[out_index(row, col - qw, kvw, params.kv_head_dim)] = value;
    } else {
        v[out_index(row, col - qw - kvw, kvw, params.kv_head_dim)] = value;
    }
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let d = params.d_model;
    let n_out = params.q_width + 2u * params.kv_width;
    let row0 = wid.y * 8u;
    let group = wid.x * WG + lid.x;
    let col_base = group * 4u;
    // Row stride of W in vec4s, and this invocation's vec4 within a row (clamped: a group
    // past the edge reads valid data and stores nothing).
    let w_row = params.w_stride / 4u;
    let wc = min(group, w_row - 1u);
    let last = params.tokens - 1u;
    let x0 = min(row0 + 0u, last) * d;
    let x1 = min(row0 + 1u, last) * d;
    let x2 = min(row0 + 2u, last) * d;
    let x3 = min(row0 + 3u, last) * d;
    let x4 = min(row0 + 4u, last) * d;
    let x5 = min(row0 + 5u, last) * d;
    let x6 = min(row0 + 6u, last) * d;
    let x7 = min(row0 + 7u, last) * d;
    // The step of d_model whose X elements this lane fetches for its subgroup.
    let my_k = min(lane, 7u);

    var a0 = vec4<f32>();
    var a1 = vec4<f32>();
    var a2 = vec4<f32>();
    var a3 = vec4<f32>();
    var a4 = vec4<f32>();
    var a5 = vec4<f32>();
    var a6 = vec4<f32>();
    var a7 = vec4<f32>();
    // a_r[j] accumulates row row0 + r, column c_j. The loop bound is uniform, so every lane
    // reaches every broadcast. Steps past the end of d_model load a valid element and select
    // zero instead (not multiply by zero, which would turn an infinite input into NaN).
    for (var k0 = 0u; k0 < d; k0 += 8u) {
        let kx = k0 + my_k;
        let kx_ok = kx < d;
        let kxc = min(kx, d - 1u);
        let s0 = select(0.0, x[x0 + kxc], kx_ok);
        let s1 = select(0.0, x[x1 + kxc], kx_ok);
        let s2 = select(0.0, x[x2 + kxc], kx_ok);
        let s3 = select(0.0, x[x3 + kxc], kx_ok);
        let s4 = select(0.0, x[x4 + kxc], kx_ok);
        let s5 = select(0.0, x[x5 + kxc], kx_ok);
        let s6 = select(0.0, x[x6 + kxc], kx_ok);
        let s7 = select(0.0, x[x7 + kxc], kx_ok);
        {
            let kw = k0 + 0u;
            let wv = select(vec4<f32>(), w[min(kw, d - 1u) * w_row + wc], kw < d);
            a0 = fma(vec4<f32>(subgroupBroadcast(s0, 0u)), wv, a0);
            a1 = fma(vec4<f32>(subgroupBroadcast(s1, 0u)), wv, a1);
            a2 = fma(vec4<f32>(subgroupBroadcast(s2, 0u)), wv, a2);
            a3 = fma(vec4<f32>(subgroupBroadcast(s3, 0u)), wv, a3);
            a4 = fma(vec4<f32>(subgroupBroadcast(s4, 0u)), wv, a4);
            a5 = fma(vec4<f32>(subgroupBroadcast(s5, 0u)), wv, a5);
            a6 = fma(vec4<f32>(subgroupBroadcast(s6, 0u)), wv, a6);
            a7 = fma(vec4<f32>(subgroupBroadcast(s7, 0u)), wv, a7);
        }
        {
            let kw = k0 + 1u;
            let wv = select(vec4<f32>(), w[min(kw, d - 1u) * w_row + wc], kw < d);
            a0 = fma(vec4<f32>(subgroupBroadcast(s0, 1u)), wv, a0);
            a1 = fma(vec4<f32>(subgroupBroadcast(s1, 1u)), wv, a1);
            a2 = fma(vec4<f32>(subgroupBroadcast(s2, 1u)), wv, a2);
            a3 = fma(vec4<f32>(subgroupBroadcast(s3, 1u)), wv, a3);
            a4 = fma(vec4<f32>(subgroupBroadcast(s4, 1u)), wv, a4);
            a5 = fma(vec4<f32>(subgroupBroadcast(s5, 1u)), wv, a5);
            a6 = fma(vec4<f32>(subgroupBroadcast(s6, 1u)), wv, a6);
            a7 = fma(vec4<f32>(subgroupBroadcast(s7, 1u)), wv, a7);
        }
        {
            let kw = k0 + 2u;
            let wv = select(vec4<f32>(), w[min(kw, d - 1u) * w_row + wc], kw < d);
            a0 = fma(vec4<f32>(subgroupBroadcast(s0, 2u)), wv, a0);
            a1 = fma(vec4<f32>(subgroupBroadcast(s1, 2u)), wv, a1);
            a2 = fma(vec4<f32>(subgroupBroadcast(s2, 2u)), wv, a2);
            a3 = fma(vec4<f32>(subgroupBroadcast(s3, 2u)), wv, a3);
            a4 = fma(vec4<f32>(subgroupBroadcast(s4, 2u)), wv, a4);
            a5 = fma(vec4<f32>(subgroupBroadcast(s5, 2u)), wv, a5);
            a6 = fma(vec4<f32>(subgroupBroadcast(s6, 2u)), wv, a6);
            a7 = fma(vec4<f32>(subgroupBroadcast(s7, 2u)), wv, a7);
        }
        {
            let kw = k0 + 3u;
            let wv = select(vec4<f32>(), w[min(kw, d - 1u) * w_row + wc], kw < d);
            a0 = fma(vec4<f32>(subgroupBroadcast(s0, 3u)), wv, a0);
            a1 = fma(vec4<f32>(subgroupBroadcast(s1, 3u)), wv, a1);
            a2 = fma(vec4<f32>(subgroupBroadcast(s2, 3u)), wv, a2);
            a3 = fma(vec4<f32>(subgroupBroadcast(s3, 3u)), wv, a3);
            a4 = fma(vec4<f32>(subgroupBroadcast(s4, 3u)), wv, a4);
            a5 = fma(vec4<f32>(subgroupBroadcast(s5, 3u)), wv, a5);
            a6 = fma(vec4<f32>(subgroupBroadcast(s6, 3u)), wv, a6);
            a7 = fma(vec4<f32>(subgroupBroadcast(s7, 3u)), wv, a7);
        }
        {
            let kw = k0 + 4u;
            let wv = select(vec4<f32>(), w[min(kw, d - 1u) * w_row + wc], kw < d);
            a0 = fma(vec4<f32>(subgroupBroadcast(s0, 4u)), wv, a0);
            a1 = fma(vec4<f32>(subgroupBroadcast(s1, 4u)), wv, a1);
            a2 = fma(vec4<f32>(subgroupBroadcast(s2, 4u)), wv, a2);
            a3 = fma(vec4<f32>(subgroupBroadcast(s3, 4u)), wv, a3);
            a4 = fma(vec4<f32>(subgroupBroadcast(s4, 4u)), wv, a4);
            a5 = fma(vec4<f32>(subgroupBroadcast(s5, 4u)), wv, a5);
            a6 = fma(vec4<f32>(subgroupBroadcast(s6, 4u)), wv, a6);
            a7 = fma(vec4<f32>(subgroupBroadcast(s7, 4u)), wv, a7);
        }
        {
            let kw = k0 + 5u;
            let wv = select(vec4<f32>(), w[min(kw, d - 1u) * w_row + wc], kw < d);
            a0 = fma(vec4<f32>(subgroupBroadcast(s0, 5u)), wv, a0);
            a1 = fma(vec4<f32>(subgroupBroadcast(s1, 5u)), wv, a1);
            a2 = fma(vec4<f32>(subgroupBroadcast(s2, 5u)), wv, a2);
            a3 = fma(vec4<f32>(subgroupBroadcast(s3, 5u)), wv, a3);
            a4 = fma(vec4<f32>(subgroupBroadcast(s4, 5u)), wv, a4);
            a5 = fma(vec4<f32>(subgroupBroadcast(s5, 5u)), wv, a5);
            a6 = fma(vec4<f32>(subgroupBroadcast(s6, 5u)), wv, a6);
            a7 = fma(vec4<f32>(subgroupBroadcast(s7, 5u)), wv, a7);
        }
        {
            let kw = k0 + 6u;
            let wv = select(vec4<f32>(), w[min(kw, d - 1u) * w_row + wc], kw < d);
            a0 = fma(vec4<f32>(subgroupBroadcast(s0, 6u)), wv, a0);
            a1 = fma(vec4<f32>(subgroupBroadcast(s1, 6u)), wv, a1);
            a2 = fma(vec4<f32>(subgroupBroadcast(s2, 6u)), wv, a2);
            a3 = fma(vec4<f32>(subgroupBroadcast(s3, 6u)), wv, a3);
            a4 = fma(vec4<f32>(subgroupBroadcast(s4, 6u)), wv, a4);
            a5 = fma(vec4<f32>(subgroupBroadcast(s5, 6u)), wv, a5);
            a6 = fma(vec4<f32>(subgroupBroadcast(s6, 6u)), wv, a6);
            a7 = fma(vec4<f32>(subgroupBroadcast(s7, 6u)), wv, a7);
        }
        {
            let kw = k0 + 7u;
            let wv = select(vec4<f32>(), w[min(kw, d - 1u) * w_row + wc], kw < d);
            a0 = fma(vec4<f32>(subgroupBroadcast(s0, 7u)), wv, a0);
            a1 = fma(vec4<f32>(subgroupBroadcast(s1, 7u)), wv, a1);
            a2 = fma(vec4<f32>(subgroupBroadcast(s2, 7u)), wv, a2);
            a3 = fma(vec4<f32>(subgroupBroadcast(s3, 7u)), wv, a3);
            a4 = fma(vec4<f32>(subgroupBroadcast(s4, 7u)), wv, a4);
            a5 = fma(vec4<f32>(subgroupBroadcast(s5, 7u)), wv, a5);
            a6 = fma(vec4<f32>(subgroupBroadcast(s6, 7u)), wv, a6);
            a7 = fma(vec4<f32>(subgroupBroadcast(s7, 7u)), wv, a7);
        }
    }

    let acc = array<vec4<f32>, 8>(a0, a1, a2, a3, a4, a5, a6, a7);
    for (var c = 0u; c < 4u; c++) {
        let col = col_base + c;
        if col >= n_out {
            continue;
        }
        var b = 0.0;
        if HAS_BIAS {
            b = bias[col];
        }
        for (var r = 0u; r < 8u; r++) {
            let row = row0 + r;
            if row < params.tokens {
                store(row, col, acc[r][c] + b);
            }
        }
    }
}
