// Variant 4, `subgroup`: 32 x 4 outputs per invocation in registers (32 vec4 accumulators),
// no workgroup memory, no barriers, with X shared through subgroup operations. All
// invocations of a workgroup need the same 32 X rows; instead of every invocation loading
// every X element, lanes 0..7 of each subgroup load 8 consecutive elements of each row, and
// subgroupBroadcast hands each one to every lane. Each invocation's 4 columns are adjacent
// and read as one vec4 (W rows are padded to a multiple of 4 columns). Per 8 steps of d_model
// an invocation then does 32 scalar X loads + 8 vec4 W loads for 1024 FMAs. On Mesa's
// lavapipe, where every per-invocation load is a loop over SIMD lanes but a broadcast from a
// constant lane is one register shuffle, loads are most of the cost. 32 rows measured best
// there: 8 rows gave 3.0 GFLOP/s, 16 gave 4.5, 32 gave 5.5, and 64 fell back to 4.5 (register
// spills). The block is written out in full because broadcast lanes must be constants, and so
// is the store of the results: indexing an array of the accumulators by a loop counter put
// them in memory (32 rows: 5.5 GFLOP/s that way, 7.0 written out).
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
// Dispatch: (ceil(n_out / (4 * WG)), ceil(tokens / 32), 1) workgroups of WG invocations;
// invocation i of workgroup (gx, gy) computes rows 32gy..32gy+31 of columns 4(WG·gx + i) + j,
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

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let d = params.d_model;
    // Columns of this W block (q_width + 2 * kv_width when the columns are not split).
    let n_out = params.n_cols;
    let row0 = wid.y * 32u;
    let group = wid.x * WG + lid.x;
    let col_base = group * 4u;
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
    let x8 = min(row0 + 8u, last) * d;
    let x9 = min(row0 + 9u, last) * d;
    let x10 = min(row0 + 10u, last) * d;
    let x11 = min(row0 + 11u, last) * d;
    let x12 = min(row0 + 12u, last) * d;
    let x13 = min(row0 + 13u, last) * d;
    let x14 = min(row0 + 14u, last) * d;
    let x15 = min(row0 + 15u, last) * d;
    let x16 = min(row0 + 16u, last) * d;
    let x17 = min(row0 + 17u, last) * d;
    let x18 = min(row0 + 18u, last) * d;
    let x19 = min(row0 + 19u, last) * d;
    let x20 = min(row0 + 20u, last) * d;
    let x21 = min(row0 + 21u, last) * d;
    let x22 = min(row0 + 22u, last) * d;
    let x23 = min(row0 + 23u, last) * d;
    let x24 = min(row0 + 24u, last) * d;
    let x25 = min(row0 + 25u, last) * d;
    let x26 = min(row0 + 26u, last) * d;
    let x27 = min(row0 + 27u, last) * d;
    let x28 = min(row0 + 28u, last) * d;
    let x29 = min(row0 + 29u, last) * d;
    let x30 = min(row0 + 30u, last) * d;
    let x31 = min(row0 + 31u, last) * d;
    let my_k = min(lane, 7u);
    var a0 = vec4<f32>();
    var a1 = vec4<f32>();
    var a2 = vec4<f32>();
    var a3 = vec4<f32>();
    var a4 = vec4<f32>();
    var a5 = vec4<f32>();
    var a6 = vec4<f32>();
    var a7 = vec4<f32>();
    var a8 = vec4<f32>();
    var a9 = vec4<f32>();
    var a10 = vec4<f32>();
    var a11 = vec4<f32>();
    var a12 = vec4<f32>();
    var a13 = vec4<f32>();
    var a14 = vec4<f32>();
    var a15 = vec4<f32>();
    var a16 = vec4<f32>();
    var a17 = vec4<f32>();
    var a18 = vec4<f32>();
    var a19 = vec4<f32>();
    var a20 = vec4<f32>();
    var a21 = vec4<f32>();
    var a22 = vec4<f32>();
    var a23 = vec4<f32>();
    var a24 = vec4<f32>();
    var a25 = vec4<f32>();
    var a26 = vec4<f32>();
    var a27 = vec4<f32>();
    var a28 = vec4<f32>();
    var a29 = vec4<f32>();
    var a30 = vec4<f32>();
    var a31 = vec4<f32>();
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
        let s8 = select(0.0, x[x8 + kxc], kx_ok);
        let s9 = select(0.0, x[x9 + kxc], kx_ok);
        let s10 = select(0.0, x[x10 + kxc], kx_ok);
        let s11 = select(0.0, x[x11 + kxc], kx_ok);
        let s12 = select(0.0, x[x12 + kxc], kx_ok);
        let s13 = select(0.0, x[x13 + kxc], kx_ok);
        let s14 = select(0.0, x[x14 + kxc], kx_ok);
        let s15 = select(0.0, x[x15 + kxc], kx_ok);
        let s16 = select(0.0, x[x16 + kxc], kx_ok);
        let s17 = select(0.0, x[x17 + kxc], kx_ok);
        let s18 = select(0.0, x[x18 + kxc], kx_ok);
        let s19 = select(0.0, x[x19 + kxc], kx_ok);
        let s20 = select(0.0, x[x20 + kxc], kx_ok);
        let s21 = select(0.0, x[x21 + kxc], kx_ok);
        let s22 = select(0.0, x[x22 + kxc], kx_ok);
        let s23 = select(0.0, x[x23 + kxc], kx_ok);
        let s24 = select(0.0, x[x24 + kxc], kx_ok);
        let s25 = select(0.0, x[x25 + kxc], kx_ok);
        let s26 = select(0.0, x[x26 + kxc], kx_ok);
        let s27 = select(0.0, x[x27 + kxc], kx_ok);
        let s28 = select(0.0, x[x28 + kxc], kx_ok);
        let s29 = select(0.0, x[x29 + kxc], kx_ok);
        let s30 = select(0.0, x[x30 + kxc], kx_ok);
        let s31 = select(0.0, x[x31 + kxc], kx_ok);
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
            a8 = fma(vec4<f32>(subgroupBroadcast(s8, 0u)), wv, a8);
            a9 = fma(vec4<f32>(subgroupBroadcast(s9, 0u)), wv, a9);
            a10 = fma(vec4<f32>(subgroupBroadcast(s10, 0u)), wv, a10);
            a11 = fma(vec4<f32>(subgroupBroadcast(s11, 0u)), wv, a11);
            a12 = fma(vec4<f32>(subgroupBroadcast(s12, 0u)), wv, a12);
            a13 = fma(vec4<f32>(subgroupBroadcast(s13, 0u)), wv, a13);
            a14 = fma(vec4<f32>(subgroupBroadcast(s14, 0u)), wv, a14);
            a15 = fma(vec4<f32>(subgroupBroadcast(s15, 0u)), wv, a15);
            a16 = fma(vec4<f32>(subgroupBroadcast(s16, 0u)), wv, a16);
            a17 = fma(vec4<f32>(subgroupBroadcast(s17, 0u)), wv, a17);
            a18 = fma(vec4<f32>(subgroupBroadcast(s18, 0u)), wv, a18);
            a19 = fma(vec4<f32>(subgroupBroadcast(s19, 0u)), wv, a19);
            a20 = fma(vec4<f32>(subgroupBroadcast(s20, 0u)), wv, a20);
            a21 = fma(vec4<f32>(subgroupBroadcast(s21, 0u)), wv, a21);
            a22 = fma(vec4<f32>(subgroupBroadcast(s22, 0u)), wv, a22);
            a23 = fma(vec4<f32>(subgroupBroadcast(s23, 0u)), wv, a23);
            a24 = fma(vec4<f32>(subgroupBroadcast(s24, 0u)), wv, a24);
            a25 = fma(vec4<f32>(subgroupBroadcast(s25, 0u)), wv, a25);
            a26 = fma(vec4<f32>(subgroupBroadcast(s26, 0u)), wv, a26);
            a27 = fma(vec4<f32>(subgroupBroadcast(s27, 0u)), wv, a27);
            a28 = fma(vec4<f32>(subgroupBroadcast(s28, 0u)), wv, a28);
            a29 = fma(vec4<f32>(subgroupBroadcast(s29, 0u)), wv, a29);
            a30 = fma(vec4<f32>(subgroupBroadcast(s30, 0u)), wv, a30);
            a31 = fma(vec4<f32>(subgroupBroadcast(s31, 0u)), wv, a31);
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
            a8 = fma(vec4<f32>(subgroupBroadcast(s8, 1u)), wv, a8);
            a9 = fma(vec4<f32>(subgroupBroadcast(s9, 1u)), wv, a9);
            a10 = fma(vec4<f32>(subgroupBroadcast(s10, 1u)), wv, a10);
            a11 = fma(vec4<f32>(subgroupBroadcast(s11, 1u)), wv, a11);
            a12 = fma(vec4<f32>(subgroupBroadcast(s12, 1u)), wv, a12);
            a13 = fma(vec4<f32>(subgroupBroadcast(s13, 1u)), wv, a13);
            a14 = fma(vec4<f32>(subgroupBroadcast(s14, 1u)), wv, a14);
            a15 = fma(vec4<f32>(subgroupBroadcast(s15, 1u)), wv, a15);
            a16 = fma(vec4<f32>(subgroupBroadcast(s16, 1u)), wv, a16);
            a17 = fma(vec4<f32>(subgroupBroadcast(s17, 1u)), wv, a17);
            a18 = fma(vec4<f32>(subgroupBroadcast(s18, 1u)), wv, a18);
            a19 = fma(vec4<f32>(subgroupBroadcast(s19, 1u)), wv, a19);
            a20 = fma(vec4<f32>(subgroupBroadcast(s20, 1u)), wv, a20);
            a21 = fma(vec4<f32>(subgroupBroadcast(s21, 1u)), wv, a21);
            a22 = fma(vec4<f32>(subgroupBroadcast(s22, 1u)), wv, a22);
            a23 = fma(vec4<f32>(subgroupBroadcast(s23, 1u)), wv, a23);
            a24 = fma(vec4<f32>(subgroupBroadcast(s24, 1u)), wv, a24);
            a25 = fma(vec4<f32>(subgroupBroadcast(s25, 1u)), wv, a25);
            a26 = fma(vec4<f32>(subgroupBroadcast(s26, 1u)), wv, a26);
            a27 = fma(vec4<f32>(subgroupBroadcast(s27, 1u)), wv, a27);
            a28 = fma(vec4<f32>(subgroupBroadcast(s28, 1u)), wv, a28);
            a29 = fma(vec4<f32>(subgroupBroadcast(s29, 1u)), wv, a29);
            a30 = fma(vec4<f32>(subgroupBroadcast(s30, 1u)), wv, a30);
            a31 = fma(vec4<f32>(subgroupBroadcast(s31, 1u)), wv, a31);
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
            a8 = fma(vec4<f32>(subgroupBroadcast(s8, 2u)), wv, a8);
            a9 = fma(vec4<f32>(subgroupBroadcast(s9, 2u)), wv, a9);
            a10 = fma(vec4<f32>(subgroupBroadcast(s10, 2u)), wv, a10);
            a11 = fma(vec4<f32>(subgroupBroadcast(s11, 2u)), wv, a11);
            a12 = fma(vec4<f32>(subgroupBroadcast(s12, 2u)), wv, a12);
            a13 = fma(vec4<f32>(subgroupBroadcast(s13, 2u)), wv, a13);
            a14 = fma(vec4<f32>(subgroupBroadcast(s14, 2u)), wv, a14);
            a15 = fma(vec4<f32>(subgroupBroadcast(s15, 2u)), wv, a15);
            a16 = fma(vec4<f32>(subgroupBroadcast(s16, 2u)), wv, a16);
            a17 = fma(vec4<f32>(subgroupBroadcast(s17, 2u)), wv, a17);
            a18 = fma(vec4<f32>(subgroupBroadcast(s18, 2u)), wv, a18);
            a19 = fma(vec4<f32>(subgroupBroadcast(s19, 2u)), wv, a19);
            a20 = fma(vec4<f32>(subgroupBroadcast(s20, 2u)), wv, a20);
            a21 = fma(vec4<f32>(subgroupBroadcast(s21, 2u)), wv, a21);
            a22 = fma(vec4<f32>(subgroupBroadcast(s22, 2u)), wv, a22);
            a23 = fma(vec4<f32>(subgroupBroadcast(s23, 2u)), wv, a23);
            a24 = fma(vec4<f32>(subgroupBroadcast(s24, 2u)), wv, a24);
            a25 = fma(vec4<f32>(subgroupBroadcast(s25, 2u)), wv, a25);
            a26 = fma(vec4<f32>(subgroupBroadcast(s26, 2u)), wv, a26);
            a27 = fma(vec4<f32>(subgroupBroadcast(s27, 2u)), wv, a27);
            a28 = fma(vec4<f32>(subgroupBroadcast(s28, 2u)), wv, a28);
            a29 = fma(vec4<f32>(subgroupBroadcast(s29, 2u)), wv, a29);
            a30 = fma(vec4<f32>(subgroupBroadcast(s30, 2u)), wv, a30);
            a31 = fma(vec4<f32>(subgroupBroadcast(s31, 2u)), wv, a31);
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
            a8 = fma(vec4<f32>(subgroupBroadcast(s8, 3u)), wv, a8);
            a9 = fma(vec4<f32>(subgroupBroadcast(s9, 3u)), wv, a9);
            a10 = fma(vec4<f32>(subgroupBroadcast(s10, 3u)), wv, a10);
            a11 = fma(vec4<f32>(subgroupBroadcast(s11, 3u)), wv, a11);
            a12 = fma(vec4<f32>(subgroupBroadcast(s12, 3u)), wv, a12);
            a13 = fma(vec4<f32>(subgroupBroadcast(s13, 3u)), wv, a13);
            a14 = fma(vec4<f32>(subgroupBroadcast(s14, 3u)), wv, a14);
            a15 = fma(vec4<f32>(subgroupBroadcast(s15, 3u)), wv, a15);
            a16 = fma(vec4<f32>(subgroupBroadcast(s16, 3u)), wv, a16);
            a17 = fma(vec4<f32>(subgroupBroadcast(s17, 3u)), wv, a17);
            a18 = fma(vec4<f32>(subgroupBroadcast(s18, 3u)), wv, a18);
            a19 = fma(vec4<f32>(subgroupBroadcast(s19, 3u)), wv, a19);
            a20 = fma(vec4<f32>(subgroupBroadcast(s20, 3u)), wv, a20);
            a21 = fma(vec4<f32>(subgroupBroadcast(s21, 3u)), wv, a21);
            a22 = fma(vec4<f32>(subgroupBroadcast(s22, 3u)), wv, a22);
            a23 = fma(vec4<f32>(subgroupBroadcast(s23, 3u)), wv, a23);
            a24 = fma(vec4<f32>(subgroupBroadcast(s24, 3u)), wv, a24);
            a25 = fma(vec4<f32>(subgroupBroadcast(s25, 3u)), wv, a25);
            a26 = fma(vec4<f32>(subgroupBroadcast(s26, 3u)), wv, a26);
            a27 = fma(vec4<f32>(subgroupBroadcast(s27, 3u)), wv, a27);
            a28 = fma(vec4<f32>(subgroupBroadcast(s28, 3u)), wv, a28);
            a29 = fma(vec4<f32>(subgroupBroadcast(s29, 3u)), wv, a29);
            a30 = fma(vec4<f32>(subgroupBroadcast(s30, 3u)), wv, a30);
            a31 = fma(vec4<f32>(subgroupBroadcast(s31, 3u)), wv, a31);
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
            a8 = fma(vec4<f32>(subgroupBroadcast(s8, 4u)), wv, a8);
            a9 = fma(vec4<f32>(subgroupBroadcast(s9, 4u)), wv, a9);
            a10 = fma(vec4<f32>(subgroupBroadcast(s10, 4u)), wv, a10);
            a11 = fma(vec4<f32>(subgroupBroadcast(s11, 4u)), wv, a11);
            a12 = fma(vec4<f32>(subgroupBroadcast(s12, 4u)), wv, a12);
            a13 = fma(vec4<f32>(subgroupBroadcast(s13, 4u)), wv, a13);
            a14 = fma(vec4<f32>(subgroupBroadcast(s14, 4u)), wv, a14);
            a15 = fma(vec4<f32>(subgroupBroadcast(s15, 4u)), wv, a15);
            a16 = fma(vec4<f32>(subgroupBroadcast(s16, 4u)), wv, a16);
            a17 = fma(vec4<f32>(subgroupBroadcast(s17, 4u)), wv, a17);
            a18 = fma(vec4<f32>(subgroupBroadcast(s18, 4u)), wv, a18);
            a19 = fma(vec4<f32>(subgroupBroadcast(s19, 4u)), wv, a19);
            a20 = fma(vec4<f32>(subgroupBroadcast(s20, 4u)), wv, a20);
            a21 = fma(vec4<f32>(subgroupBroadcast(s21, 4u)), wv, a21);
            a22 = fma(vec4<f32>(subgroupBroadcast(s22, 4u)), wv, a22);
            a23 = fma(vec4<f32>(subgroupBroadcast(s23, 4u)), wv, a23);
            a24 = fma(vec4<f32>(subgroupBroadcast(s24, 4u)), wv, a24);
            a25 = fma(vec4<f32>(subgroupBroadcast(s25, 4u)), wv, a25);
            a26 = fma(vec4<f32>(subgroupBroadcast(s26, 4u)), wv, a26);
            a27 = fma(vec4<f32>(subgroupBroadcast(s27, 4u)), wv, a27);
            a28 = fma(vec4<f32>(subgroupBroadcast(s28, 4u)), wv, a28);
            a29 = fma(vec4<f32>(subgroupBroadcast(s29, 4u)), wv, a29);
            a30 = fma(vec4<f32>(subgroupBroadcast(s30, 4u)), wv, a30);
            a31 = fma(vec4<f32>(subgroupBroadcast(s31, 4u)), wv, a31);
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
            a8 = fma(vec4<f32>(subgroupBroadcast(s8, 5u)), wv, a8);
            a9 = fma(vec4<f32>(subgroupBroadcast(s9, 5u)), wv, a9);
            a10 = fma(vec4<f32>(subgroupBroadcast(s10, 5u)), wv, a10);
            a11 = fma(vec4<f32>(subgroupBroadcast(s11, 5u)), wv, a11);
            a12 = fma(vec4<f32>(subgroupBroadcast(s12, 5u)), wv, a12);
            a13 = fma(vec4<f32>(subgroupBroadcast(s13, 5u)), wv, a13);
            a14 = fma(vec4<f32>(subgroupBroadcast(s14, 5u)), wv, a14);
            a15 = fma(vec4<f32>(subgroupBroadcast(s15, 5u)), wv, a15);
            a16 = fma(vec4<f32>(subgroupBroadcast(s16, 5u)), wv, a16);
            a17 = fma(vec4<f32>(subgroupBroadcast(s17, 5u)), wv, a17);
            a18 = fma(vec4<f32>(subgroupBroadcast(s18, 5u)), wv, a18);
            a19 = fma(vec4<f32>(subgroupBroadcast(s19, 5u)), wv, a19);
            a20 = fma(vec4<f32>(subgroupBroadcast(s20, 5u)), wv, a20);
            a21 = fma(vec4<f32>(subgroupBroadcast(s21, 5u)), wv, a21);
            a22 = fma(vec4<f32>(subgroupBroadcast(s22, 5u)), wv, a22);
            a23 = fma(vec4<f32>(subgroupBroadcast(s23, 5u)), wv, a23);
            a24 = fma(vec4<f32>(subgroupBroadcast(s24, 5u)), wv, a24);
            a25 = fma(vec4<f32>(subgroupBroadcast(s25, 5u)), wv, a25);
            a26 = fma(vec4<f32>(subgroupBroadcast(s26, 5u)), wv, a26);
            a27 = fma(vec4<f32>(subgroupBroadcast(s27, 5u)), wv, a27);
            a28 = fma(vec4<f32>(subgroupBroadcast(s28, 5u)), wv, a28);
            a29 = fma(vec4<f32>(subgroupBroadcast(s29, 5u)), wv, a29);
            a30 = fma(vec4<f32>(subgroupBroadcast(s30, 5u)), wv, a30);
            a31 = fma(vec4<f32>(subgroupBroadcast(s31, 5u)), wv, a31);
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
            a8 = fma(vec4<f32>(subgroupBroadcast(s8, 6u)), wv, a8);
            a9 = fma(vec4<f32>(subgroupBroadcast(s9, 6u)), wv, a9);
            a10 = fma(vec4<f32>(subgroupBroadcast(s10, 6u)), wv, a10);
            a11 = fma(vec4<f32>(subgroupBroadcast(s11, 6u)), wv, a11);
            a12 = fma(vec4<f32>(subgroupBroadcast(s12, 6u)), wv, a12);
            a13 = fma(vec4<f32>(subgroupBroadcast(s13, 6u)), wv, a13);
            a14 = fma(vec4<f32>(subgroupBroadcast(s14, 6u)), wv, a14);
            a15 = fma(vec4<f32>(subgroupBroadcast(s15, 6u)), wv, a15);
            a16 = fma(vec4<f32>(subgroupBroadcast(s16, 6u)), wv, a16);
            a17 = fma(vec4<f32>(subgroupBroadcast(s17, 6u)), wv, a17);
            a18 = fma(vec4<f32>(subgroupBroadcast(s18, 6u)), wv, a18);
            a19 = fma(vec4<f32>(subgroupBroadcast(s19, 6u)), wv, a19);
            a20 = fma(vec4<f32>(subgroupBroadcast(s20, 6u)), wv, a20);
            a21 = fma(vec4<f32>(subgroupBroadcast(s21, 6u)), wv, a21);
            a22 = fma(vec4<f32>(subgroupBroadcast(s22, 6u)), wv, a22);
            a23 = fma(vec4<f32>(subgroupBroadcast(s23, 6u)), wv, a23);
            a24 = fma(vec4<f32>(subgroupBroadcast(s24, 6u)), wv, a24);
            a25 = fma(vec4<f32>(subgroupBroadcast(s25, 6u)), wv, a25);
            a26 = fma(vec4<f32>(subgroupBroadcast(s26, 6u)), wv, a26);
            a27 = fma(vec4<f32>(subgroupBroadcast(s27, 6u)), wv, a27);
            a28 = fma(vec4<f32>(subgroupBroadcast(s28, 6u)), wv, a28);
            a29 = fma(vec4<f32>(subgroupBroadcast(s29, 6u)), wv, a29);
            a30 = fma(vec4<f32>(subgroupBroadcast(s30, 6u)), wv, a30);
            a31 = fma(vec4<f32>(subgroupBroadcast(s31, 6u)), wv, a31);
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
            a8 = fma(vec4<f32>(subgroupBroadcast(s8, 7u)), wv, a8);
            a9 = fma(vec4<f32>(subgroupBroadcast(s9, 7u)), wv, a9);
            a10 = fma(vec4<f32>(subgroupBroadcast(s10, 7u)), wv, a10);
            a11 = fma(vec4<f32>(subgroupBroadcast(s11, 7u)), wv, a11);
            a12 = fma(vec4<f32>(subgroupBroadcast(s12, 7u)), wv, a12);
            a13 = fma(vec4<f32>(subgroupBroadcast(s13, 7u)), wv, a13);
            a14 = fma(vec4<f32>(subgroupBroadcast(s14, 7u)), wv, a14);
            a15 = fma(vec4<f32>(subgroupBroadcast(s15, 7u)), wv, a15);
            a16 = fma(vec4<f32>(subgroupBroadcast(s16, 7u)), wv, a16);
            a17 = fma(vec4<f32>(subgroupBroadcast(s17, 7u)), wv, a17);
            a18 = fma(vec4<f32>(subgroupBroadcast(s18, 7u)), wv, a18);
            a19 = fma(vec4<f32>(subgroupBroadcast(s19, 7u)), wv, a19);
            a20 = fma(vec4<f32>(subgroupBroadcast(s20, 7u)), wv, a20);
            a21 = fma(vec4<f32>(subgroupBroadcast(s21, 7u)), wv, a21);
            a22 = fma(vec4<f32>(subgroupBroadcast(s22, 7u)), wv, a22);
            a23 = fma(vec4<f32>(subgroupBroadcast(s23, 7u)), wv, a23);
            a24 = fma(vec4<f32>(subgroupBroadcast(s24, 7u)), wv, a24);
            a25 = fma(vec4<f32>(subgroupBroadcast(s25, 7u)), wv, a25);
            a26 = fma(vec4<f32>(subgroupBroadcast(s26, 7u)), wv, a26);
            a27 = fma(vec4<f32>(subgroupBroadcast(s27, 7u)), wv, a27);
            a28 = fma(vec4<f32>(subgroupBroadcast(s28, 7u)), wv, a28);
            a29 = fma(vec4<f32>(subgroupBroadcast(s29, 7u)), wv, a29);
            a30 = fma(vec4<f32>(subgroupBroadcast(s30, 7u)), wv, a30);
            a31 = fma(vec4<f32>(subgroupBroadcast(s31, 7u)), wv, a31);
        }
    }
    var b = vec4<f32>();
    if HAS_BIAS {
        b.x = bias[params.col0 + min(col_base + 0u, n_out - 1u)];
        b.y = bias[params.col0 + min(col_base + 1u, n_out - 1u)];
        b.z = bias[params.col0 + min(col_base + 2u, n_out - 1u)];
        b.w = bias[params.col0 + min(col_base + 3u, n_out - 1u)];
    }
    if row0 + 0u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 0u, col_base + 0u, a0.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 0u, col_base + 1u, a0.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 0u, col_base + 2u, a0.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 0u, col_base + 3u, a0.w + b.w); }
    }
    if row0 + 1u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 1u, col_base + 0u, a1.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 1u, col_base + 1u, a1.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 1u, col_base + 2u, a1.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 1u, col_base + 3u, a1.w + b.w); }
    }
    if row0 + 2u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 2u, col_base + 0u, a2.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 2u, col_base + 1u, a2.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 2u, col_base + 2u, a2.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 2u, col_base + 3u, a2.w + b.w); }
    }
    if row0 + 3u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 3u, col_base + 0u, a3.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 3u, col_base + 1u, a3.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 3u, col_base + 2u, a3.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 3u, col_base + 3u, a3.w + b.w); }
    }
    if row0 + 4u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 4u, col_base + 0u, a4.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 4u, col_base + 1u, a4.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 4u, col_base + 2u, a4.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 4u, col_base + 3u, a4.w + b.w); }
    }
    if row0 + 5u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 5u, col_base + 0u, a5.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 5u, col_base + 1u, a5.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 5u, col_base + 2u, a5.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 5u, col_base + 3u, a5.w + b.w); }
    }
    if row0 + 6u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 6u, col_base + 0u, a6.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 6u, col_base + 1u, a6.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 6u, col_base + 2u, a6.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 6u, col_base + 3u, a6.w + b.w); }
    }
    if row0 + 7u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 7u, col_base + 0u, a7.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 7u, col_base + 1u, a7.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 7u, col_base + 2u, a7.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 7u, col_base + 3u, a7.w + b.w); }
    }
    if row0 + 8u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 8u, col_base + 0u, a8.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 8u, col_base + 1u, a8.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 8u, col_base + 2u, a8.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 8u, col_base + 3u, a8.w + b.w); }
    }
    if row0 + 9u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 9u, col_base + 0u, a9.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 9u, col_base + 1u, a9.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 9u, col_base + 2u, a9.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 9u, col_base + 3u, a9.w + b.w); }
    }
    if row0 + 10u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 10u, col_base + 0u, a10.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 10u, col_base + 1u, a10.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 10u, col_base + 2u, a10.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 10u, col_base + 3u, a10.w + b.w); }
    }
    if row0 + 11u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 11u, col_base + 0u, a11.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 11u, col_base + 1u, a11.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 11u, col_base + 2u, a11.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 11u, col_base + 3u, a11.w + b.w); }
    }
    if row0 + 12u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 12u, col_base + 0u, a12.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 12u, col_base + 1u, a12.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 12u, col_base + 2u, a12.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 12u, col_base + 3u, a12.w + b.w); }
    }
    if row0 + 13u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 13u, col_base + 0u, a13.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 13u, col_base + 1u, a13.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 13u, col_base + 2u, a13.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 13u, col_base + 3u, a13.w + b.w); }
    }
    if row0 + 14u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 14u, col_base + 0u, a14.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 14u, col_base + 1u, a14.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 14u, col_base + 2u, a14.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 14u, col_base + 3u, a14.w + b.w); }
    }
    if row0 + 15u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 15u, col_base + 0u, a15.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 15u, col_base + 1u, a15.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 15u, col_base + 2u, a15.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 15u, col_base + 3u, a15.w + b.w); }
    }
    if row0 + 16u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 16u, col_base + 0u, a16.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 16u, col_base + 1u, a16.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 16u, col_base + 2u, a16.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 16u, col_base + 3u, a16.w + b.w); }
    }
    if row0 + 17u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 17u, col_base + 0u, a17.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 17u, col_base + 1u, a17.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 17u, col_base + 2u, a17.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 17u, col_base + 3u, a17.w + b.w); }
    }
    if row0 + 18u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 18u, col_base + 0u, a18.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 18u, col_base + 1u, a18.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 18u, col_base + 2u, a18.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 18u, col_base + 3u, a18.w + b.w); }
    }
    if row0 + 19u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 19u, col_base + 0u, a19.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 19u, col_base + 1u, a19.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 19u, col_base + 2u, a19.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 19u, col_base + 3u, a19.w + b.w); }
    }
    if row0 + 20u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 20u, col_base + 0u, a20.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 20u, col_base + 1u, a20.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 20u, col_base + 2u, a20.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 20u, col_base + 3u, a20.w + b.w); }
    }
    if row0 + 21u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 21u, col_base + 0u, a21.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 21u, col_base + 1u, a21.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 21u, col_base + 2u, a21.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 21u, col_base + 3u, a21.w + b.w); }
    }
    if row0 + 22u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 22u, col_base + 0u, a22.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 22u, col_base + 1u, a22.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 22u, col_base + 2u, a22.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 22u, col_base + 3u, a22.w + b.w); }
    }
    if row0 + 23u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 23u, col_base + 0u, a23.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 23u, col_base + 1u, a23.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 23u, col_base + 2u, a23.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 23u, col_base + 3u, a23.w + b.w); }
    }
    if row0 + 24u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 24u, col_base + 0u, a24.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 24u, col_base + 1u, a24.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 24u, col_base + 2u, a24.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 24u, col_base + 3u, a24.w + b.w); }
    }
    if row0 + 25u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 25u, col_base + 0u, a25.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 25u, col_base + 1u, a25.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 25u, col_base + 2u, a25.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 25u, col_base + 3u, a25.w + b.w); }
    }
    if row0 + 26u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 26u, col_base + 0u, a26.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 26u, col_base + 1u, a26.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 26u, col_base + 2u, a26.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 26u, col_base + 3u, a26.w + b.w); }
    }
    if row0 + 27u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 27u, col_base + 0u, a27.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 27u, col_base + 1u, a27.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 27u, col_base + 2u, a27.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 27u, col_base + 3u, a27.w + b.w); }
    }
    if row0 + 28u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 28u, col_base + 0u, a28.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 28u, col_base + 1u, a28.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 28u, col_base + 2u, a28.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 28u, col_base + 3u, a28.w + b.w); }
    }
    if row0 + 29u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 29u, col_base + 0u, a29.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 29u, col_base + 1u, a29.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 29u, col_base + 2u, a29.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 29u, col_base + 3u, a29.w + b.w); }
    }
    if row0 + 30u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 30u, col_base + 0u, a30.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 30u, col_base + 1u, a30.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 30u, col_base + 2u, a30.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 30u, col_base + 3u, a30.w + b.w); }
    }
    if row0 + 31u < params.tokens {
        if col_base + 0u < n_out { store(row0 + 31u, col_base + 0u, a31.x + b.x); }
        if col_base + 1u < n_out { store(row0 + 31u, col_base + 1u, a31.y + b.y); }
        if col_base + 2u < n_out { store(row0 + 31u, col_base + 2u, a31.z + b.z); }
        if col_base + 3u < n_out { store(row0 + 31u, col_base + 3u, a31.w + b.w); }
    }
}
