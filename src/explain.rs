//! The worked example, computed on the GPU: x = (2, 3) times W = [[1, 10], [0, -1]] gives
//! y = (2, 17); then the same x under three different matrices gives three different vectors,
//! which is all Q, K and V are.

use crate::context::GpuContext;
use crate::error::Result;
use crate::kernels::Kernel;
use crate::projector::Projector;
use crate::weights::{FusedWeights, Projection};
use std::fmt::Write;

/// The token row of the example.
pub const X: [f32; 2] = [2.0, 3.0];
/// The classic matrix: x . W = (2*1 + 3*0, 2*10 + 3*(-1)) = (2, 17).
pub const W: [[f32; 2]; 2] = [[1.0, 10.0], [0.0, -1.0]];
/// Three different maps for the second part: Wq is W; Wk swaps the components; Wv scales them.
pub const W_QKV: [(&str, [[f32; 2]; 2]); 3] = [
    ("Wq", W),
    ("Wk", [[0.0, 1.0], [1.0, 0.0]]),
    ("Wv", [[0.5, 0.0], [0.0, 2.0]]),
];

/// What the GPU computed for the example.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Part 1: q, k and v with Wq = Wk = Wv = W (all three must be (2, 17)).
    pub same: [[f32; 2]; 3],
    /// Part 2: q, k and v under the three matrices of [`W_QKV`].
    pub different: [[f32; 2]; 3],
    /// The kernel that ran.
    pub kernel: Kernel,
}

fn flat(m: &[[f32; 2]; 2]) -> Vec<f32> {
    m.iter().flatten().copied().collect()
}

async fn project(
    ctx: &GpuContext,
    kernel: Kernel,
    mats: [&[[f32; 2]; 2]; 3],
) -> Result<[[f32; 2]; 3]> {
    let [wq, wk, wv] = mats.map(flat);
    fn p(w: &[f32]) -> Projection<'_> {
        Projection {
            w,
            width: 2,
            bias: None,
        }
    }
    let weights = FusedWeights::fuse(2, p(&wq), p(&wk), p(&wv))?;
    let mut projector = Projector::new(ctx, weights.shape(1)?, kernel)?;
    projector.set_weights(&weights)?;
    let out = projector.run_async(&X).await?;
    Ok([
        [out.q[0], out.q[1]],
        [out.k[0], out.k[1]],
        [out.v[0], out.v[1]],
    ])
}

/// Runs both parts of the example on the GPU with `kernel`.
#[cfg(not(target_arch = "wasm32"))]
pub fn explain(ctx: &GpuContext, kernel: Kernel) -> Result<Explanation> {
    pollster::block_on(explain_async(ctx, kernel))
}

/// As [`explain`], as a future.
pub async fn explain_async(ctx: &GpuContext, kernel: Kernel) -> Result<Explanation> {
    Ok(Explanation {
        same: project(ctx, kernel, [&W, &W, &W]).await?,
        different: project(ctx, kernel, W_QKV.each_ref().map(|(_, m)| m)).await?,
        kernel,
    })
}

/// A number as a person writes it: integers without a fraction, negatives in parentheses
/// when they follow an operator.
fn num(v: f32) -> String {
    if v.fract() == 0.0 && v.abs() < 1e7 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn factor(v: f32) -> String {
    if v < 0.0 {
        format!("({})", num(v))
    } else {
        num(v)
    }
}

/// "y_j = x_0·W[0][j] + x_1·W[1][j] = <gpu value>" for each component.
fn sums(name: &str, m: &[[f32; 2]; 2], gpu: &[f32; 2], out: &mut String) {
    for j in 0..2 {
        let _ = writeln!(
            out,
            "    {name}_{j} = {}·{} + {}·{} = {}",
            num(X[0]),
            factor(m[0][j]),
            num(X[1]),
            factor(m[1][j]),
            num(gpu[j])
        );
    }
}

fn matrix(m: &[[f32; 2]; 2]) -> String {
    format!(
        "[[{}, {}], [{}, {}]]",
        num(m[0][0]),
        num(m[0][1]),
        num(m[1][0]),
        num(m[1][1])
    )
}

impl Explanation {
    /// The text `qkv explain` prints.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let x = format!("({}, {})", num(X[0]), num(X[1]));
        let _ = writeln!(
            s,
            "One token's embedding row x = {x}, one weight matrix W = {} (rows: inputs, \
             columns: outputs).\ny = x·W: each output is the dot product of x with one column \
             of W.\nComputed on the GPU (kernel {}):",
            matrix(&W),
            self.kernel
        );
        sums("y", &W, &self.same[0], &mut s);
        let _ = writeln!(
            s,
            "    y = ({}, {})\n",
            num(self.same[0][0]),
            num(self.same[0][1])
        );
        let _ = writeln!(
            s,
            "Self-attention applies three such maps to every row. With Wq = Wk = Wv = W they \
             agree:\n    q = ({}, {}), k = ({}, {}), v = ({}, {})\n",
            num(self.same[0][0]),
            num(self.same[0][1]),
            num(self.same[1][0]),
            num(self.same[1][1]),
            num(self.same[2][0]),
            num(self.same[2][1]),
        );
        let _ = writeln!(
            s,
            "With three different matrices, the same x = {x} gives three different vectors:"
        );
        for ((name, m), gpu) in W_QKV.iter().zip(&self.different) {
            let short = &name[1..2];
            let _ = writeln!(s, "  {name} = {}:", matrix(m));
            sums(short, m, gpu, &mut s);
            let _ = writeln!(s, "    {short} = ({}, {})", num(gpu[0]), num(gpu[1]));
        }
        let _ = write!(
            s,
            "\nq is what the token looks for, k is what it offers to be matched on, v is what it \
             passes on once matched. qkv-wgpu computes all three for every row of X in one GEMM \
             over [Wq | Wk | Wv] and one dispatch."
        );
        s
    }
}
