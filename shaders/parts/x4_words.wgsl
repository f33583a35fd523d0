// Part: X in any storage type, as vec4s of 32-bit words (rows a multiple of 8 elements
// long: the transposed layout's KS): one vec4 holds 4 f32 elements or 8 half-typed ones.
// Provides `x` (binding 1) and `x_quad_words`. Expects params.wgsl (ELEM) and widen.wgsl
// (`quad_word`; `quad` widens what it returns).

@group(0) @binding(1) var<storage, read> x: array<vec4<u32>>;

// The vec4 of words that holds elements 4j .. 4j + 3 of X (in a half type, with 4 (j ^ 1)
// .. beside them): `quad(x_quad_words(j), j)` is the four elements.
fn x_quad_words(j: u32) -> vec4<u32> {
    return x[quad_word(j)];
}
