// Part: cooperative matrices of 16 x 16 x 16, f16 inputs, f32 accumulator (the device's
// EXPERIMENTAL_COOPERATIVE_MATRIX with 16x16x16 f16 -> f32).
// Provides T, Acc (the accumulator's scalar type), MatA and MatB (the f16 inputs) and MatC (the
// accumulator), and the `enable` directives they need, so it comes first in the module.
// Expects nothing.

enable f16;
enable wgpu_cooperative_matrix;

const T: u32 = 16u;
alias Acc = f32;
alias MatA = coop_mat16x16<f16, A>;
alias MatB = coop_mat16x16<f16, B>;
alias MatC = coop_mat16x16<f32, C>;
