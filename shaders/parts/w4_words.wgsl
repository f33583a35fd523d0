// Part: W in any storage type, as vec4s of 32-bit words (rows padded to a multiple of 4
// columns): one vec4 holds 4 f32 elements or 8 half-typed ones. Provides `w` (binding 2)
// and `w4_at`. Expects params.wgsl (ELEM) and widen.wgsl.

@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;

// Elements 4j .. 4j + 3 of W: one vec4 of words for f32, half of one for the 16-bit types.
fn w4_at(j: u32) -> vec4<f32> {
    return quad(w[quad_word(j)], j);
}
