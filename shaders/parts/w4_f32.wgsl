// Part: W as vec4s of f32, four adjacent columns each (rows padded to a multiple of 4
// columns; kernels that read only f32). Provides `w` (binding 2), indexed directly. Expects
// nothing.

@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
