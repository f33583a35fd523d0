//! How Q, K and V are laid out in memory: token-major [tokens, width] (the default), or split
//! into attention heads as [batch, heads, seq, head_dim], the layout attention kernels read.
//! The projection kernel writes either layout directly; `arrange` does the same on the CPU
//! for validation.

use crate::error::{Error, Result};
use crate::shape::QkvShape;

/// The split of a projection's outputs into attention heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeadSplit {
    /// Tokens per sequence; tokens = batch x seq_len.
    pub seq_len: u32,
    /// Query heads; q_width = heads x q_head_dim.
    pub heads: u32,
    /// Key/value heads; kv_width = kv_heads x kv_head_dim.
    pub kv_heads: u32,
}

/// Where each output element goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OutputLayout {
    /// Row-major [tokens, width].
    #[default]
    Tokens,
    /// [batch, heads, seq_len, head_dim] for Q and [batch, kv_heads, seq_len, head_dim] for K
    /// and V.
    Heads(HeadSplit),
}

impl HeadSplit {
    /// The split of `heads` query heads over sequences of `seq_len`, with `kv_heads` where
    /// given, else as many as K's width holds at Q's head size (multi-head attention where
    /// the widths are equal); then checked as [`new`](Self::new) checks.
    pub fn with_default_kv(
        shape: &QkvShape,
        seq_len: u32,
        heads: u32,
        kv_heads: Option<u32>,
    ) -> Result<Self> {
        if heads == 0 || !shape.q_width.is_multiple_of(heads) {
            return Err(Error::Shape(format!(
                "q_width {} is not divisible by `heads` {heads}",
                shape.q_width
            )));
        }
        let head_dim = shape.q_width / heads;
        let kv_heads = match kv_heads {
            Some(kv) => kv,
            None if shape.kv_width.is_multiple_of(head_dim) => shape.kv_width / head_dim,
            None => {
                return Err(Error::Shape(format!(
                    "kv_width {} is not a multiple of Q's head size {head_dim}; give `kv_heads`",
                    shape.kv_width
                )))
            }
        };
        Self::new(shape, seq_len, heads, kv_heads)
    }

    /// Checks the split against `shape`: every division exact, nothing zero, and a split an
    /// attention layer can use: Q's heads the same size as K's and V's (q·k is taken per
    /// head), and the query heads an exact multiple of the key/value heads (each K/V head
    /// serves a group of query heads: multi-head, grouped-query or multi-query attention).
    pub fn new(shape: &QkvShape, seq_len: u32, heads: u32, kv_heads: u32) -> Result<Self> {
        if seq_len == 0 || heads == 0 || kv_heads == 0 {
            return Err(Error::Shape(
                "sequence length, heads and kv_heads must all be at least 1".into(),
            ));
        }
        if !shape.tokens.is_multiple_of(seq_len) {
            return Err(Error::Shape(format!(
                "{} tokens do not split into sequences of {seq_len}",
                shape.tokens
            )));
        }
        if !shape.q_width.is_multiple_of(heads) {
            return Err(Error::Shape(format!(
                "q_width {} is not divisible by {heads} heads",
                shape.q_width
            )));
        }
        if !shape.kv_width.is_multiple_of(kv_heads) {
            return Err(Error::Shape(format!(
                "kv_width {} is not divisible by {kv_heads} kv_heads",
                shape.kv_width
            )));
        }
        let (q_dim, kv_dim) = (shape.q_width / heads, shape.kv_width / kv_heads);
        if q_dim != kv_dim {
            return Err(Error::Shape(format!(
                "{heads} query heads of {q_dim} (q_width {}) and {kv_heads} key/value heads of \
                 {kv_dim} (kv_width {}): attention needs one head size for Q, K and V",
                shape.q_width, shape.kv_width
            )));
        }
        if !heads.is_multiple_of(kv_heads) {
            return Err(Error::Shape(format!(
                "{heads} query heads do not split into groups over {kv_heads} key/value heads; \
                 the query heads must be a multiple of the key/value heads"
            )));
        }
        Ok(Self {
            seq_len,
            heads,
            kv_heads,
        })
    }

    /// Sequences in the batch.
    pub fn batch(&self, shape: &QkvShape) -> u32 {
        shape.tokens / self.seq_len
    }

    /// Width of one query head.
    pub fn q_head_dim(&self, shape: &QkvShape) -> u32 {
        shape.q_width / self.heads
    }

    /// Width of one key/value head.
    pub fn kv_head_dim(&self, shape: &QkvShape) -> u32 {
        shape.kv_width / self.kv_heads
    }
}

impl OutputLayout {
    /// The dimensions of Q (`kv` false) or of K and V (`kv` true) in this layout.
    /// `batch_seq` is Some((batch, seq)) when X came as [batch, seq, d_model].
    pub fn dims(&self, shape: &QkvShape, kv: bool, batch_seq: Option<(u32, u32)>) -> Vec<u64> {
        let width = if kv { shape.kv_width } else { shape.q_width };
        match self {
            OutputLayout::Tokens => match batch_seq {
                Some((b, s)) => vec![b as u64, s as u64, width as u64],
                None => vec![shape.tokens as u64, width as u64],
            },
            OutputLayout::Heads(h) => {
                let (heads, dim) = if kv {
                    (h.kv_heads, h.kv_head_dim(shape))
                } else {
                    (h.heads, h.q_head_dim(shape))
                };
                vec![
                    h.batch(shape) as u64,
                    heads as u64,
                    h.seq_len as u64,
                    dim as u64,
                ]
            }
        }
    }

    /// The (token row, column) of element `i` of an output `width` columns wide laid out
    /// this way (`heads` of `width / heads` for a head layout): the inverse of
    /// [`arrange`](Self::arrange), element by element.
    pub fn token_position(&self, i: usize, width: u32, heads: u32) -> (usize, usize) {
        let width = width as usize;
        match self {
            OutputLayout::Tokens => (i / width.max(1), i % width.max(1)),
            OutputLayout::Heads(h) => {
                let (seq, heads) = (h.seq_len as usize, heads as usize);
                let dim = width / heads.max(1);
                // [sequences, heads, seq, head_dim].
                let (d, s) = (i % dim, i / dim % seq);
                let (head, b) = (i / dim / seq % heads, i / dim / seq / heads);
                (b * seq + s, head * dim + d)
            }
        }
    }

    /// Rearranges a token-major [tokens, width] matrix split into `heads` heads into this
    /// layout (a copy for `Tokens`).
    pub fn arrange<T: Copy>(&self, data: &[T], tokens: u32, width: u32, heads: u32) -> Vec<T> {
        let OutputLayout::Heads(h) = self else {
            return data.to_vec();
        };
        let (tokens, width, seq) = (tokens as usize, width as usize, h.seq_len as usize);
        let heads = heads as usize;
        let dim = width / heads;
        let mut out = Vec::with_capacity(data.len());
        for b in 0..tokens / seq {
            for head in 0..heads {
                for s in 0..seq {
                    let row = (b * seq + s) * width + head * dim;
                    out.extend_from_slice(&data[row..row + dim]);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_splits_no_attention_layer_can_use_are_refused() {
        // Issue #11: --heads 2 --kv-heads 4, and unequal head sizes, were accepted.
        let shape = QkvShape::new(4, 8, 16, 16, false).unwrap();
        let e = HeadSplit::new(&shape, 4, 2, 4).unwrap_err().to_string();
        assert!(e.contains("one head size"), "{e}");
        let gqa = QkvShape::new(4, 8, 32, 16, false).unwrap();
        let e = HeadSplit::new(&gqa, 4, 8, 2).unwrap_err().to_string();
        assert!(e.contains("one head size"), "{e}");
        let odd = QkvShape::new(4, 8, 12, 8, false).unwrap();
        let e = HeadSplit::new(&odd, 4, 3, 2).unwrap_err().to_string();
        assert!(e.contains("multiple of the key/value heads"), "{e}");
        // Multi-head, grouped-query and multi-query splits are fine.
        assert!(HeadSplit::new(&shape, 4, 4, 4).is_ok());
        assert!(HeadSplit::new(&gqa, 4, 8, 4).is_ok());
        let mqa = QkvShape::new(4, 8, 32, 4, false).unwrap();
        assert!(HeadSplit::new(&mqa, 2, 8, 1).is_ok());
    }

    #[test]
    fn splits_must_divide_exactly() {
        // Q in 4 heads of 3, K/V in 2 heads of 3.
        let s = QkvShape::new(12, 8, 12, 6, false).unwrap();
        assert!(HeadSplit::new(&s, 4, 4, 2).is_ok());
        let e = HeadSplit::new(&s, 5, 4, 2).unwrap_err().to_string();
        assert!(e.contains("sequences of 5"), "{e}");
        let e = HeadSplit::new(&s, 4, 5, 2).unwrap_err().to_string();
        assert!(e.contains("not divisible by 5 heads"), "{e}");
        let e = HeadSplit::new(&s, 4, 4, 4).unwrap_err().to_string();
        assert!(e.contains("not divisible by 4 kv_heads"), "{e}");
    }

    #[test]
    fn arrange_moves_heads_before_sequence() {
        // 2 sequences of 2 tokens, width 4 in 2 heads of 2: element value = 100*token + col.
        let s = QkvShape::new(4, 1, 4, 4, false).unwrap();
        let layout = OutputLayout::Heads(HeadSplit::new(&s, 2, 2, 2).unwrap());
        let data: Vec<u32> = (0..4)
            .flat_map(|t| (0..4).map(move |c| 100 * t + c))
            .collect();
        let out = layout.arrange(&data, 4, 4, 2);
        #[rustfmt::skip]
        let expected = vec![
            0, 1, 100, 101,       2, 3, 102, 103,      // batch 0: head 0 (t0, t1), head 1
            200, 201, 300, 301,   202, 203, 302, 303,  // batch 1
        ];
        assert_eq!(out, expected);
        assert_eq!(layout.dims(&s, false, None), vec![2, 2, 2, 2]);
        assert_eq!(
            OutputLayout::Tokens.dims(&s, true, Some((2, 2))),
            vec![2, 2, 4]
        );
    }
}
