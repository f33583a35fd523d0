// Part: X in any storage type, as 32-bit words (one f32, or two f16 or bf16, element 2i in
// the low half of word i). Provides `x` (binding 1) and `x_at`. Expects params.wgsl (ELEM)
// and widen.wgsl.

@group(0) @binding(1) var<storage, read> x: array<u32>;

// Element i of X.
fn x_at(i: u32) -> f32 {
    if ELEM == 0u {
        return bitcast<f32>(x[i]);
    }
    return widen(x[i >> 1u], (i & 1u) == 1u);
}
