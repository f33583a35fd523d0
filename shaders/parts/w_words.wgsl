// Part: W in any storage type, as 32-bit words (as x_words.wgsl's X). Provides `w`
// (binding 2) and `w_at`. Expects params.wgsl (ELEM) and widen.wgsl.

@group(0) @binding(2) var<storage, read> w: array<u32>;

// Element i of W.
fn w_at(i: u32) -> f32 {
    if ELEM == 0u {
        return bitcast<f32>(w[i]);
    }
    return widen(w[i >> 1u], (i & 1u) == 1u);
}
