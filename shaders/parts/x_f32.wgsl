// Part: X as f32 (kernels that read only f32; the host never gives them another ELEM).
// Provides `x` (binding 1), indexed directly. Expects nothing.

@group(0) @binding(1) var<storage, read> x: array<f32>;
