// `qkv peak`: device memory bandwidth, as a copy: dst = src, 16 bytes per load and per store,
// a grid-stride loop so that any number of workgroups covers the buffer. The buffers are far
// larger than any cache the host sizes them against; bytes moved = 2 x the copied bytes.
//
// Contract: `src` and `dst` hold at least N vec4<u32> each (N: the override, set by the host).
// Dispatch: (groups, 1, 1) workgroups of WG invocations.

override WG: u32 = 256u;
override N: u32 = 1u;

@group(0) @binding(0) var<storage, read_write> dst: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> src: array<vec4<u32>>;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let stride = groups.x * WG;
    for (var i = gid.x; i < N; i += stride) {
        dst[i] = src[i];
    }
}
