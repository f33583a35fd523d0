// Part: W as f32, one element per column (kernels that read only f32). Provides `w`
// (binding 2), indexed directly. Expects nothing.

@group(0) @binding(2) var<storage, read> w: array<f32>;
