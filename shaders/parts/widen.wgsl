// Part: 16-bit storage types widened to f32 exactly. Provides `widen` (one element of a
// word), `widen4` (four elements of two words), `f16_bits4` (four f16 patterns, whatever
// ELEM), `quad_word` and `quad` (four elements of an array of vec4 words) and NATIVE_F16.
// Expects params.wgsl (ELEM).

// The half-typed element of 32-bit word `word` (the high half when `high`), widened to f32
// exactly, by integer arithmetic (no capability needed): see `widen4`.
fn widen(word: u32, high: bool) -> f32 {
    let h = select(word & 0xffffu, word >> 16u, high);
    return widen4(vec2<u32>(h, 0u)).x;
}

// Whether f16 is widened by the hardware's conversion (`unpack2x16float`, one instruction
// per pair on GPUs with native f16), set by the host where the device has f16 and its
// conversions; else by the integer arithmetic below, which every adapter runs. On a device
// without the conversions (wgpu's DownlevelFlags::SHADER_F16_IN_F32) the host builds the
// module with the `unpack2x16float` expression below replaced by NaN
// (`kernels::F16_UNPACK`), so that it validates; NATIVE_F16 is false there.
override NATIVE_F16: bool = false;

// Four consecutive half-typed elements held in two words, widened to f32 exactly. bf16 is
// the top half of an f32: a shift or a mask. f16: the hardware's conversion (NATIVE_F16), or
// integer arithmetic (`f16_bits4`).
fn widen4(words: vec2<u32>) -> vec4<f32> {
    if ELEM == 2u {
        return bitcast<vec4<f32>>(vec4<u32>(
            words.x << 16u,
            words.x & 0xffff0000u,
            words.y << 16u,
            words.y & 0xffff0000u,
        ));
    }
    if NATIVE_F16 {
        return vec4<f32>(unpack2x16float(words.x), unpack2x16float(words.y));
    }
    let h = vec4<u32>(
        words.x & 0xffffu,
        words.x >> 16u,
        words.y & 0xffffu,
        words.y >> 16u,
    );
    if ELEM != 1u {
        return bitcast<vec4<f32>>(h << vec4<u32>(16u));
    }
    return f16_bits4(h);
}

// Four f16 bit patterns (the low 16 bits of each lane) widened to f32 exactly by integer
// arithmetic, on every adapter: normal values rebias the exponent (127 - 15 = 112);
// subnormals are m x 2^-24 (a normal f32, so no flush to zero); infinities and NaN keep
// their payload.
fn f16_bits4(h: vec4<u32>) -> vec4<f32> {
    let sign = (h & vec4<u32>(0x8000u)) << vec4<u32>(16u);
    let e = (h >> vec4<u32>(10u)) & vec4<u32>(0x1fu);
    let m = h & vec4<u32>(0x3ffu);
    let normal = ((h & vec4<u32>(0x7fffu)) << vec4<u32>(13u)) + vec4<u32>(0x38000000u);
    let sub = bitcast<vec4<u32>>(vec4<f32>(m) * 5.9604644775390625e-8);
    let special = vec4<u32>(0x7f800000u) | (m << vec4<u32>(13u));
    let bits = select(select(normal, sub, e == vec4<u32>(0u)), special, e == vec4<u32>(31u));
    return bitcast<vec4<f32>>(sign | bits);
}

// The vec4 of words that holds elements 4j .. 4j + 3 of an array read as vec4s: vec4 j for
// f32, j / 2 for the 16-bit types (eight to a vec4).
fn quad_word(j: u32) -> u32 {
    return select(j >> 1u, j, ELEM == 0u);
}

// Elements 4j .. 4j + 3, from `words` = the vec4 at `quad_word(j)`, widened.
fn quad(words: vec4<u32>, j: u32) -> vec4<f32> {
    if ELEM == 0u {
        return bitcast<vec4<f32>>(words);
    }
    return widen4(select(words.xy, words.zw, (j & 1u) == 1u));
}
