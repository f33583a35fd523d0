// Utility, not a projection variant: measures the subgroup sizes the device runs a compute
// shader with. wgpu reports 4..64 for every Metal GPU whatever it really runs (Apple GPUs
// run 32 wide), so on Metal the context measures the minimum before trusting the subgroup
// kernels, which need subgroups of at least 8.
//
// Shape contract: sizes [2] of u32, set by the host to [0xffffffff, 0]; afterwards sizes[0]
// is the smallest and sizes[1] the largest subgroup_size any invocation saw.
// Dispatch: (g, 1, 1) workgroups of WG for any g >= 1.

// Subgroup builtins need the device's SUBGROUP feature (see qkv_subgroup.wgsl on `enable`).

// Invocations per workgroup; the host sets it within the device's limits.
override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> sizes: array<atomic<u32>>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(subgroup_size) size: u32) {
    atomicMin(&sizes[0], size);
    atomicMax(&sizes[1], size);
}
