// Part: the end of the 128 x 128 tile (tile128.wgsl) as `blocktile` and `splitk` store it:
// each invocation's block as it is, through the body's `emit`. Provides `finish_tile`.
// Expects tile128.wgsl (`emit_block`).

fn finish_tile(z: u32, tile_row: u32, tile_col: u32, lid: vec3<u32>, acc: array<vec4<f32>, 16>) {
    emit_block(z, tile_row + 4u * lid.y, tile_col + 4u * lid.x, acc);
}
