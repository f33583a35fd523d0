//! The shape of one fused Q/K/V projection and the arithmetic on it (sizes, FLOPs), checked
//! for zero dimensions and overflow before anything is allocated.

use crate::error::{Error, Result};
use serde::Serialize;

/// One projection: X [tokens, d_model] times the fused W [d_model, q_width + 2 * kv_width].
///
/// `kv_width` may be smaller than `q_width` (grouped-query attention: fewer K/V heads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct QkvShape {
    /// Rows of X: tokens in the batch (batch x sequence, flattened).
    pub tokens: u32,
    /// Columns of X, rows of every weight matrix.
    pub d_model: u32,
    /// Columns of Wq, and of Q.
    pub q_width: u32,
    /// Columns of Wk and Wv, and of K and V.
    pub kv_width: u32,
    /// Whether a bias [n_out] is added.
    pub bias: bool,
}

impl QkvShape {
    /// Builds a shape and checks it: every dimension non-zero, every element count and byte
    /// size representable (u64 bytes, u32 element indices as the shaders use).
    pub fn new(tokens: u32, d_model: u32, q_width: u32, kv_width: u32, bias: bool) -> Result<Self> {
        let shape = Self {
            tokens,
            d_model,
            q_width,
            kv_width,
            bias,
        };
        shape.check()?;
        Ok(shape)
    }

    fn check(&self) -> Result<()> {
        for (name, value) in [
            ("tokens", self.tokens),
            ("d_model", self.d_model),
            ("q_width", self.q_width),
            ("kv_width", self.kv_width),
        ] {
            if value == 0 {
                return Err(Error::Shape(format!("{name} must be at least 1, got 0")));
            }
        }
        let n_out = self.q_width as u64 + 2 * self.kv_width as u64;
        if n_out > u32::MAX as u64 {
            return Err(Error::Shape(format!(
                "q_width + 2 * kv_width = {n_out} overflows a 32-bit column index"
            )));
        }
        // The shaders index with u32. X, Q, K and V are bound one token chunk at a time (the
        // plan keeps each chunk under 2^32 elements); W is bound whole or in column blocks.
        let (rows, cols) = (self.d_model as u64, n_out);
        let elems = rows * cols;
        if elems > u32::MAX as u64 {
            return Err(Error::Shape(format!(
                "W would have {rows} x {cols} = {elems} elements, more than a 32-bit index can \
                 address"
            )));
        }
        Ok(())
    }

    /// Columns of the fused weight matrix: q_width + 2 * kv_width.
    pub fn n_out(&self) -> u32 {
        // Cannot overflow: checked in `new`.
        self.q_width + 2 * self.kv_width
    }

    /// Elements of X.
    pub fn x_len(&self) -> usize {
        self.tokens as usize * self.d_model as usize
    }

    /// Elements of the fused W.
    pub fn w_len(&self) -> usize {
        self.d_model as usize * self.n_out() as usize
    }

    /// Elements of Q.
    pub fn q_len(&self) -> usize {
        self.tokens as usize * self.q_width as usize
    }

    /// Elements of K (and of V).
    pub fn kv_len(&self) -> usize {
        self.tokens as usize * self.kv_width as usize
    }

    /// Floating-point operations of one projection: 2 * tokens * d_model * n_out (one multiply
    /// and one add per term), plus tokens * n_out adds for the bias.
    pub fn flops(&self) -> f64 {
        let mn = self.tokens as f64 * self.n_out() as f64;
        2.0 * mn * self.d_model as f64 + if self.bias { mn } else { 0.0 }
    }

    /// GFLOP/s for one projection that took `seconds`.
    pub fn gflops(&self, seconds: f64) -> f64 {
        if seconds > 0.0 {
            self.flops() / seconds / 1e9
        } else {
            f64::NAN
        }
    }
}

impl std::fmt::Display for QkvShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "X [{t}, {d}] x W [{d}, {q}+{kv}+{kv}]{b} -> Q [{t}, {q}], K [{t}, {kv}], V [{t}, {kv}]",
            t = self.tokens,
            d = self.d_model,
            q = self.q_width,
            kv = self.kv_width,
            b = if self.bias { " + bias" } else { "" },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_dimensions_are_rejected_by_name() {
        let err = QkvShape::new(0, 4, 4, 4, false).unwrap_err().to_string();
        assert!(err.contains("tokens"), "{err}");
        let err = QkvShape::new(4, 4, 4, 0, false).unwrap_err().to_string();
        assert!(err.contains("kv_width"), "{err}");
    }

    #[test]
    fn overflowing_shapes_are_rejected() {
        assert!(QkvShape::new(u32::MAX, u32::MAX, 1, 1, false).is_err());
        assert!(QkvShape::new(1, 1, u32::MAX, u32::MAX, false).is_err());
        // W is bound whole or in column blocks, each indexed with u32.
        assert!(QkvShape::new(1, 70_000, 70_000, 1, false).is_err());
        // X, Q, K, V are bound one chunk at a time: a huge batch is fine.
        assert!(QkvShape::new(70_000, 70_000, 1, 1, false).is_ok());
    }

    #[test]
    fn flops_count_multiply_add_and_bias() {
        let s = QkvShape::new(2, 3, 4, 1, false).unwrap();
        assert_eq!(s.n_out(), 6);
        assert_eq!(s.flops(), 2.0 * 2.0 * 3.0 * 6.0);
        let s = QkvShape::new(2, 3, 4, 1, true).unwrap();
        assert_eq!(s.flops(), 2.0 * 2.0 * 3.0 * 6.0 + 12.0);
    }
}
