// Part: the epilogue of the kernels that keep, per invocation, rows of 4 adjacent output
// columns in vec4 registers (subgroup, texture, subgroup-texture). Provides `clamped_bias4`
// and `store_rows`. Expects params.wgsl and store.wgsl (`bias`, `store4`).

// The bias of columns col .. col + 3 (the last column's past n), zero without HAS_BIAS.
fn clamped_bias4(col: u32, n: u32) -> vec4<f32> {
    var b = vec4<f32>();
    if HAS_BIAS {
        b.x = bias[params.col0 + min(col + 0u, n - 1u)];
        b.y = bias[params.col0 + min(col + 1u, n - 1u)];
        b.z = bias[params.col0 + min(col + 2u, n - 1u)];
        b.w = bias[params.col0 + min(col + 3u, n - 1u)];
    }
    return b;
}

// Stores rows row0 .. row0 + 7 (those below the chunk's tokens) of columns col .. col + 3
// (those below n), each a_r + b. Written out: indexing an array of the accumulators by a loop
// counter would put them in memory.
fn store_rows(
    row0: u32,
    col: u32,
    n: u32,
    b: vec4<f32>,
    a0: vec4<f32>,
    a1: vec4<f32>,
    a2: vec4<f32>,
    a3: vec4<f32>,
    a4: vec4<f32>,
    a5: vec4<f32>,
    a6: vec4<f32>,
    a7: vec4<f32>,
) {
    if row0 + 0u < params.tokens {
        store4(row0 + 0u, col, a0 + b, n);
    }
    if row0 + 1u < params.tokens {
        store4(row0 + 1u, col, a1 + b, n);
    }
    if row0 + 2u < params.tokens {
        store4(row0 + 2u, col, a2 + b, n);
    }
    if row0 + 3u < params.tokens {
        store4(row0 + 3u, col, a3 + b, n);
    }
    if row0 + 4u < params.tokens {
        store4(row0 + 4u, col, a4 + b, n);
    }
    if row0 + 5u < params.tokens {
        store4(row0 + 5u, col, a5 + b, n);
    }
    if row0 + 6u < params.tokens {
        store4(row0 + 6u, col, a6 + b, n);
    }
    if row0 + 7u < params.tokens {
        store4(row0 + 7u, col, a7 + b, n);
    }
}
