// Part: W's bytes as an rgba32uint texture (binding kinds `Texels` and `TexturedTexels`):
// the bytes a storage buffer would hold, in order, W_TEXEL_ROW texels of 16 bytes a row
// (the host's `binding::W_TEXEL_ROW`, a power of two; tests/shaders.rs checks that the two
// agree). Provides `w` (binding 2) and `w_vec4`, as w_buffer.wgsl does. A CPU driver
// fetches a texel for all the SIMD lanes at once, where it runs a storage-buffer load as a
// loop over them (lavapipe): so W's loads cost a gather here, not a loop. Expects nothing.

@group(0) @binding(2) var w: texture_2d<u32>;

const W_TEXEL_ROW: u32 = 4096u;

// Vec4 i of W (bytes 16 i .. 16 i + 15).
fn w_vec4(i: u32) -> vec4<u32> {
    return textureLoad(w, vec2<u32>(i & (W_TEXEL_ROW - 1u), i / W_TEXEL_ROW), 0);
}
