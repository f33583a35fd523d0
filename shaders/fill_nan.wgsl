// Utility, not a projection variant: writes a quiet NaN into every element of an output
// buffer before each projection dispatch, so that an element the kernel never writes fails
// validation instead of passing with a stale value. The word is the storage type's NaN:
// 0x7fc00000 for f32, a NaN in both halves for f16 (0x7e007e00) and bf16 (0x7fc07fc0).
//
// Shape contract: data [n] of 32-bit words, n = arrayLength(&data).
// Dispatch: (g, 1, 1) workgroups of WG for any g >= 1; a grid-stride loop covers the rest,
// so g can stay under the 65,535 per-dimension limit for any buffer size.

// Invocations per workgroup: the host sets min(256, the device's limits), so the shader runs
// on devices that allow fewer than 256 (GLES 3.1 guarantees 128).
override WG: u32 = 128u;
// The word written (the host sets the storage type's).
override NAN_WORD: u32 = 0x7fc00000u;

@group(0) @binding(0) var<storage, read_write> data: array<u32>;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let n = arrayLength(&data);
    let stride = groups.x * WG;
    for (var i = gid.x; i < n; i += stride) {
        data[i] = NAN_WORD;
    }
}
