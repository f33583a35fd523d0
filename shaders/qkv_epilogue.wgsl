// Kernel: the epilogue pass after a projection kernel run with QK_SCRATCH (store.wgsl): what
// current models do to Q and K right after the projection (crate::epilogue), where the
// kernel could not do it in its own store (`blocktile` can: tile_rope_norm.wgsl). Each span
// goes through rope_norm.wgsl's `rope_norm_span`, which writes Q and K in the storage type
// and the run's layout. V is not touched. Expects params.wgsl, store.wgsl and rope_norm.wgsl
// (composed before this body).
//
// Shape contract: q_in [rows, q_width] and k_in [rows, kv_width], f32 (the kernel's sums, bias
// added), rows = params.tokens (this chunk's); Q and K as store.wgsl writes them; heads of
// HEAD_DIM elements; the chunk's token `row` is token epi.row0 + row of the batch.
// Dispatch: (g, 1, 1) workgroups of WG, any g >= 1: one invocation per span of a row, a span
// being a head, or with NORM = 2 the whole of Q or of K; a grid-stride loop covers the rest.
// An invocation walks its span alone (no workgroup memory, no barriers: on a CPU driver a
// barrier costs far more than the span's few hundred reads from cache).

// Invocations per workgroup.
override WG: u32 = 64u;

@group(0) @binding(9) var<storage, read> q_in: array<f32>;
@group(0) @binding(10) var<storage, read> k_in: array<f32>;

// Element `i` of the chunk's Q (is_k false) or K, as the projection left it.
fn epi_load(is_k: bool, i: u32) -> f32 {
    if is_k {
        return k_in[i];
    }
    return q_in[i];
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    var q_spans = params.q_width / HEAD_DIM;
    var k_spans = params.kv_width / HEAD_DIM;
    if NORM == 2u {
        q_spans = 1u;
        k_spans = 1u;
    }
    let per_row = q_spans + k_spans;
    let total = params.tokens * per_row;
    for (var s = gid.x; s < total; s += groups.x * WG) {
        let row = s / per_row;
        let j = s - row * per_row;
        let is_k = j >= q_spans;
        let width = select(params.q_width, params.kv_width, is_k);
        let first = select(j, j - q_spans, is_k) * select(HEAD_DIM, width, NORM == 2u);
        rope_norm_span(is_k, row, first, row * width + first);
    }
}
