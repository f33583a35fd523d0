// Part: W in any storage type, as vec4s of 32-bit words (rows padded to a multiple of 4
// columns, or transposed rows KS long): one vec4 holds 4 f32 elements or 8 half-typed ones.
// Provides `w4_at`, and for W read along d_model (the decode kernel, W transposed) the
// interface w_blocks.wgsl also offers: UNIT_QUADS, `WCol`, `w_col`, `WUnit`, `w_unit` and
// `w_quad`. Expects params.wgsl (ELEM), widen.wgsl and W's vec4s (`w_vec4`: w_buffer.wgsl or
// w_texels.wgsl).

// Elements 4j .. 4j + 3 of W: one vec4 of words for f32, half of one for the 16-bit types.
fn w4_at(j: u32) -> vec4<f32> {
    return quad(w_vec4(quad_word(j)), j);
}

// Vec4s of elements per unit: a unit is one vec4 of words here, read once: 4 f32 elements or
// 8 half-typed ones.
override UNIT_QUADS: u32 = select(2u, 1u, ELEM == 0u);

// Unit `u` of a transposed row: its vec4 of words.
struct WUnit {
    words: vec4<u32>,
}

// Where transposed row `col` lies: its first unit (found once, before the loop over them).
struct WCol {
    first: u32,
}

fn w_col(col: u32) -> WCol {
    return WCol(col * (params.w_stride / 4u) / UNIT_QUADS);
}

fn w_unit(wc: WCol, u: u32) -> WUnit {
    return WUnit(w_vec4(wc.first + u));
}

// Elements 4 i .. 4 i + 3 of the unit (i < UNIT_QUADS), widened.
fn w_quad(unit: WUnit, i: u32) -> vec4<f32> {
    return quad(unit.words, i);
}
