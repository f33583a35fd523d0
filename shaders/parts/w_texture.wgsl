// Part: the fused W as a texture of 4 consecutive elements of a row per texel, as X is in
// x_texture.wgsl (the host's `TextureLayout`; read with `texel`). Provides `w` (binding 2).
// Expects nothing.

@group(0) @binding(2) var w: texture_2d<u32>;
