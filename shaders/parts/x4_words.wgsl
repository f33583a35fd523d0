// Part: X in any storage type, as vec4s of 32-bit words (rows a multiple of 8 elements
// long: the transposed layout's KS): one vec4 holds 4 f32 elements or 8 half-typed ones.
// Provides `x` (binding 1) and `x4_at`. Expects params.wgsl (ELEM) and widen.wgsl.

@group(0) @binding(1) var<storage, read> x: array<vec4<u32>>;

// Elements 4j .. 4j + 3 of X.
fn x4_at(j: u32) -> vec4<f32> {
    return quad(x[quad_word(j)], j);
}
