// `qkv peak`: the f32 FMA rate this adapter reaches through WGSL. Each invocation runs
// eight independent chains of vec4 FMAs (32 FMAs, 64 flops per iteration), ITERS long, on
// registers only: enough independent work to hide the FMA latency, no memory traffic.
// a = a * M + C converges to 1 (M < 1), so no value overflows or turns subnormal.
//
// Contract: `data` holds at least 2 words and data[0] is never equal to the bits of the
// result (the host leaves it 0; the sum of eight chains near 1 is not 0): the store below
// never runs, but the compiler cannot know that, so it cannot drop the chains.
// Dispatch: any number of workgroups of WG invocations; flops = 64 x ITERS x invocations.

override WG: u32 = 256u;
override ITERS: u32 = 1024u;
const M: f32 = 0.9999;
const C: f32 = 1e-4;

@group(0) @binding(0) var<storage, read_write> data: array<u32>;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32) {
    let s = f32(lid) * 1e-4;
    var a0 = vec4<f32>(s, s + 0.1, s + 0.2, s + 0.3);
    var a1 = a0 + 0.01;
    var a2 = a0 + 0.02;
    var a3 = a0 + 0.03;
    var a4 = a0 + 0.04;
    var a5 = a0 + 0.05;
    var a6 = a0 + 0.06;
    var a7 = a0 + 0.07;
    let m = vec4<f32>(M);
    let c = vec4<f32>(C);
    for (var i = 0u; i < ITERS; i++) {
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);
    }
    let v = (a0 + a1) + (a2 + a3) + (a4 + a5) + (a6 + a7);
    let bits = bitcast<u32>(v.x + v.y + v.z + v.w);
    if bits == data[0] {
        sink[lid] = bits;
    }
}
