//! The fast CPU baseline `run` and `bench` compare the GPU with: an f32 GEMM through
//! `matrixmultiply` on every core, timed on at most the first 16384 tokens of the batch (it
//! holds X and Q, K, V in memory) and scaled to the whole batch.

use crate::text::ms;
use qkv_wgpu::{random_x_rows, spread, FusedWeights, QkvShape};
use std::time::Instant;

/// The most tokens the baseline runs on.
const MAX_TOKENS: u32 = 16384;

/// The baseline's time for one batch.
#[derive(Debug, Clone, Copy)]
pub struct CpuBaseline {
    /// The same, scaled to the whole batch.
    pub ms: f64,
    /// Tokens it ran on (the batch's first ones).
    pub tokens: u32,
    /// GFLOP/s on those tokens.
    pub gflops: f64,
}

impl CpuBaseline {
    /// Times `repeats` runs after one warm-up on the seeded X of `shape` (its first
    /// [`MAX_TOKENS`] tokens) and `weights`.
    pub fn measure(shape: &QkvShape, seed: u64, weights: &FusedWeights, repeats: u32) -> Self {
        let sub = QkvShape {
            tokens: shape.tokens.min(MAX_TOKENS),
            ..*shape
        };
        let mut x = vec![0f32; sub.x_len()];
        random_x_rows(sub.d_model, seed, 0..sub.tokens, &mut x);
        let mut out = vec![0f32; sub.tokens as usize * sub.n_out() as usize];
        qkv_wgpu::cpu::fused_gemm(&sub, &x, weights, &mut out);
        let times: Vec<f64> = (0..repeats)
            .map(|_| {
                let start = Instant::now();
                qkv_wgpu::cpu::fused_gemm(&sub, &x, weights, &mut out);
                ms(start.elapsed())
            })
            .collect();
        let measured_ms = spread(&times).0;
        Self {
            ms: measured_ms * shape.tokens as f64 / sub.tokens as f64,
            tokens: sub.tokens,
            gflops: sub.gflops(measured_ms / 1e3),
        }
    }
}
