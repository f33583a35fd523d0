// Variant 8, `splitk(splits=S)`: `blocktile` with d_model split into S ranges, for batches
// too small to fill a GPU. A batch of 64 GPT-2 tokens is 18 tiles of 128 x 128 for an H100's
// 132 compute units, each walking all 768 steps of d_model; with S ranges it is 18 S
// workgroups, each walking 768 / S. Each workgroup writes its tile's partial sums to
// `partial`; a second dispatch of the `reduce` entry point adds the S partial sums of every
// element, adds the bias and stores it. Same tile, staging, swizzle and prefetch as
// `blocktile`; the loads stop at the end of the workgroup's range.
// Runs in every storage type (ELEM): f32, and f16 or bf16 packed two to a 32-bit word,
// widened to f32 on load; it accumulates in f32 and rounds once, at the store.
// Its `main` is the tile it shares with `blocktile` (shaders/parts/tile128.wgsl, over range z
// of d_model here); composed with the parts (shaders/parts/) src/kernels/variants/splitk.rs
// names.
//
// Shape contract: as `blocktile`, plus
//   partial [SPLITS, tokens, n_cols] f32 scratch (binding 7), written and read only here
// Dispatch: `main` over (ceil(n_out / 128), ceil(tokens / 128), SPLITS) workgroups of 16 x 16,
// then `reduce` over up to ceil(tokens * n_out / REDUCE_WG) workgroups of REDUCE_WG (any
// number covers every element).

// Workgroups along z, each summing one range of d_model (tuned per adapter).
override SPLITS: u32 = 4u;

// Partial sums [SPLITS, tokens, n_cols], one slice per range of d_model.
@group(0) @binding(7) var<storage, read_write> partial: array<f32>;

// Range z of d_model: a multiple of BK, the last one shorter (empty past the end).
fn k_range(z: u32) -> vec2<u32> {
    let d = params.d_model;
    let per = (d + SPLITS * BK - 1u) / (SPLITS * BK) * BK;
    let k_begin = min(z * per, d);
    return vec2<u32>(k_begin, min(k_begin + per, d));
}

// The bias is added by `reduce`, once per element.
fn tile_bias(col: u32) -> vec4<f32> {
    return vec4<f32>();
}

// Writes the four partial sums of columns col .. col + 3 of `row` that exist (slice z).
fn emit(z: u32, row: u32, col: u32, value: vec4<f32>, b: vec4<f32>) {
    let n = params.n_cols;
    if row >= params.tokens {
        return;
    }
    let at = (z * params.tokens + row) * n + col;
    if col + 0u < n {
        partial[at + 0u] = value.x;
    }
    if col + 1u < n {
        partial[at + 1u] = value.y;
    }
    if col + 2u < n {
        partial[at + 2u] = value.z;
    }
    if col + 3u < n {
        partial[at + 3u] = value.w;
    }
}

// Second pass: each element of this W block's output is the sum of its SPLITS partial
// sums, plus the bias, stored like every kernel's. A grid-stride loop covers any size,
// with any workgroup size: the host sets REDUCE_WG to min(256, the device's limits).
override REDUCE_WG: u32 = 128u;

@compute @workgroup_size(REDUCE_WG, 1, 1)
fn reduce(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let n = params.n_cols;
    let total = params.tokens * n;
    for (var i = gid.x; i < total; i += groups.x * REDUCE_WG) {
        let row = i / n;
        let col = i - row * n;
        var sum = 0.0;
        for (var z = 0u; z < SPLITS; z++) {
            sum += partial[z * total + i];
        }
        if HAS_BIAS {
            sum += bias[params.col0 + col];
        }
        store(row, col, sum);
    }
}
