// Part: W in any storage type, as vec4s of 32-bit words (rows padded to a multiple of 4
// columns, or transposed rows KS long): one vec4 holds 4 f32 elements or 8 half-typed ones.
// Provides `w` (binding 2), `w4_at`, and for W read along d_model (the decode kernel, W
// transposed) the interface w_blocks.wgsl also offers: UNIT_QUADS, `WUnit`, `w_unit` and
// `w_quad`. Expects params.wgsl (ELEM) and widen.wgsl.

@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;

// Elements 4j .. 4j + 3 of W: one vec4 of words for f32, half of one for the 16-bit types.
fn w4_at(j: u32) -> vec4<f32> {
    return quad(w[quad_word(j)], j);
}

// Vec4s of W per unit: a unit is one vec4 here.
const UNIT_QUADS: u32 = 1u;

// Unit `u` of transposed row `col`: the vec4 of elements 4 u .. 4 u + 3.
struct WUnit {
    j: u32,
}

fn w_unit(col: u32, u: u32) -> WUnit {
    return WUnit(col * (params.w_stride / 4u) + u);
}

// The unit's vec4 (i is always 0).
fn w_quad(unit: WUnit, i: u32) -> vec4<f32> {
    return w4_at(unit.j + i);
}
