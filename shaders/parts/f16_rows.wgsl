// Part: X [tokens, KS] and W transposed, [n_cols, KS], as f16 (the bytes of the host's 16-bit
// patterns), read 16 bytes (two vec4<f16>) at a time; the cooperative-matrix kernels'
// operands. Provides `x` (binding 1) and `w` (binding 2). Expects `enable f16;` at the top of
// the module (a cooperative-matrix type part, coop*.wgsl, first).

@group(0) @binding(1) var<storage, read> x: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f16>>;
