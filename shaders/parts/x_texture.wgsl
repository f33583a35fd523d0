// Part: X as a texture of 4 consecutive elements of a row per texel: rgba32uint holding f32
// bits, or rg32uint holding four f16 or bf16 (the host's `TextureLayout`). Provides `x`
// (binding 1) and `texel`, which widens a texel of X, or of W where W is such a texture too
// (w_texture.wgsl). Expects params.wgsl (ELEM) and widen.wgsl.

@group(0) @binding(1) var x: texture_2d<u32>;

// One texel widened to f32: rgba32uint holds 4 f32, rg32uint 4 half-typed elements.
fn texel(t: vec4<u32>) -> vec4<f32> {
    if ELEM == 0u {
        return bitcast<vec4<f32>>(t);
    }
    return widen4(t.xy);
}
