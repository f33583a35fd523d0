// Part: W's bytes as a storage buffer of vec4s of 32-bit words. Provides `w` (binding 2) and
// `w_vec4`, through which w4_words.wgsl and w_blocks.wgsl read it (w_texels.wgsl offers the
// same through a texture). Expects nothing.

@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;

// Vec4 i of W (bytes 16 i .. 16 i + 15).
fn w_vec4(i: u32) -> vec4<u32> {
    return w[i];
}
