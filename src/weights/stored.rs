//! Weights kept as a checkpoint stores them ([`FusedWeights::stored`]): Wq, Wk and Wv each
//! a [`StoredMatrix`] in its own format, where any is a block format; made from a GGUF
//! layer's matrices or quantized from fused weights (`--weight-type`), and dequantized
//! exactly for the reference.

use super::{FusedWeights, WeightData};
use crate::error::{Error, Result};
use crate::quant::{StoredMatrix, WeightType};
use crate::shape::QkvShape;
use std::sync::Arc;

impl FusedWeights {
    /// Weights kept as a checkpoint stores them: Wq `[q_width, d_model]`, Wk and Wv
    /// `[kv_width, d_model]` (a row per output feature), each in its own format, and their
    /// fused bias. Where all three are in element types they are fused as
    /// [`fuse`](Self::fuse) does (kept in a half type where all three share it, else
    /// widened to f32, exactly); otherwise they stay in their blocks ([`stored`](Self::stored)).
    /// Every value must be finite (a block's scale may not be): the error names the first
    /// that is not.
    pub fn from_stored(parts: [StoredMatrix; 3], bias: Option<Vec<f32>>) -> Result<Self> {
        let types = parts.each_ref().map(|p| p.ty);
        let kept = Self::kept(parts, bias)?;
        if types.iter().any(|t| t.blocks().is_some()) {
            return Ok(kept);
        }
        // Element types only: the fused matrix, in the half type all three share, else f32.
        let mut fused = kept.dequantized();
        if let [WeightType::Element(e), ..] = types {
            if e.is_half() && types.iter().all(|t| *t == types[0]) {
                fused.w = fused.w.to_element(e);
            }
        }
        Ok(fused)
    }

    /// The parts kept as stored, whatever their types, after checking their shapes, the
    /// bias's length and that every value is finite.
    fn kept(parts: [StoredMatrix; 3], bias: Option<Vec<f32>>) -> Result<Self> {
        let d_model = parts[0].cols;
        for (name, p) in ["Wq", "Wk", "Wv"].into_iter().zip(&parts) {
            if p.cols != d_model {
                return Err(Error::Shape(format!(
                    "{name} has rows of {} elements but Wq has {d_model}; all three read d_model",
                    p.cols
                )));
            }
        }
        let (q_width, kv_width) = (parts[0].rows, parts[1].rows);
        if parts[2].rows != kv_width {
            return Err(Error::Shape(format!(
                "Wk has {kv_width} rows but Wv has {}; K and V must have the same width",
                parts[2].rows
            )));
        }
        let shape = QkvShape::new(1, d_model, q_width, kv_width, bias.is_some())?;
        if let Some(b) = &bias {
            if b.len() != shape.n_out() as usize {
                return Err(Error::Shape(format!(
                    "the bias has {} elements; it needs {}",
                    b.len(),
                    shape.n_out()
                )));
            }
        }
        let mut row = vec![0f32; d_model as usize];
        for (name, p) in ["Wq", "Wk", "Wv"].into_iter().zip(&parts) {
            for r in 0..p.rows {
                p.row_values(r, &mut row);
                if let Some(c) = row.iter().position(|v| !v.is_finite()) {
                    return Err(Error::Input(format!(
                        "{name} (stored {}) output feature {r}, element {c} is {}: the \
                         weights must be finite",
                        p.ty, row[c]
                    )));
                }
            }
        }
        Ok(Self {
            d_model,
            q_width,
            kv_width,
            w: WeightData::F32(Vec::new()),
            bias,
            stored: Some(Arc::new(parts)),
        })
    }

    /// These weights with W stored as `types` (Wq's, Wk's, Wv's): each part's columns as
    /// rows, quantized by ggml's reference quantizers (or rounded to an element type); the
    /// bias as it is. What `--weight-type` gives the GPU. An error where d_model is not
    /// whole blocks of a format, naming it.
    pub fn quantized(&self, types: [WeightType; 3]) -> Result<Self> {
        Self::from_stored(self.parts_as(types)?, self.bias.clone())
    }

    /// As [`quantized`](Self::quantized), kept as stored whatever the types (element types
    /// too): the kernels that read W in its formats hold it so on the GPU, an f16 W beside
    /// an f32 run in its two bytes. They read units of 32 elements: d_model must be a
    /// multiple of 32 (of 256 for the K-quants).
    pub fn stored_as(&self, types: [WeightType; 3]) -> Result<Self> {
        let parts = self.parts_as(types)?;
        if !self.d_model.is_multiple_of(32) {
            return Err(Error::Input(format!(
                "W kept as {} is read in units of 32 elements: d_model {} is not a multiple of \
                 32",
                WeightType::parts_name(types),
                self.d_model
            )));
        }
        Self::kept(parts, self.bias.clone())
    }

    /// Wq, Wk and Wv as `[width, d_model]` rows stored as `types`.
    fn parts_as(&self, types: [WeightType; 3]) -> Result<[StoredMatrix; 3]> {
        // A fused W is read where it lies; a stored one dequantized first.
        let dequantized;
        let source = match self.stored {
            Some(_) => {
                dequantized = self.dequantized();
                &dequantized
            }
            None => self,
        };
        let values = match &source.w {
            WeightData::F32(w) => std::borrow::Cow::Borrowed(w),
            half => std::borrow::Cow::Owned(half.values().collect::<Vec<f32>>()),
        };
        let (d, n) = (self.d_model as usize, self.n_out() as usize);
        let widths = [self.q_width, self.kv_width, self.kv_width];
        let mut col0 = 0usize;
        let mut parts = Vec::with_capacity(3);
        for ((name, ty), width) in ["Wq", "Wk", "Wv"].into_iter().zip(types).zip(widths) {
            let width = width as usize;
            let mut rows = Vec::with_capacity(width * d);
            for c in col0..col0 + width {
                rows.extend((0..d).map(|k| values[k * n + c]));
            }
            parts.push(StoredMatrix::quantize(
                ty,
                width as u32,
                self.d_model,
                &rows,
                name,
            )?);
            col0 += width;
        }
        Ok(parts.try_into().expect("three parts"))
    }

    /// Wq's, Wk's and Wv's formats where W is kept as stored.
    pub fn w_formats(&self) -> Option<[WeightType; 3]> {
        self.stored.as_ref().map(|p| p.each_ref().map(|m| m.ty))
    }

    /// Bytes of W as the GPU holds it (fused: its elements; stored: each part's bytes).
    pub fn w_bytes(&self) -> u64 {
        match &self.stored {
            Some(parts) => parts.iter().map(|p| p.bytes.len() as u64).sum(),
            None => self.w.len() as u64 * self.w.element().size(),
        }
    }

    /// The same weights with W fused in f32 [d_model, n_out] (a stored W dequantized exactly
    /// as the kernels read it): what the reference and the CPU path compute from. Fused
    /// weights are returned as they are.
    pub fn dequantized(&self) -> Self {
        let Some(parts) = &self.stored else {
            return self.clone();
        };
        let (d, n) = (self.d_model as usize, self.n_out() as usize);
        let mut w = vec![0f32; d * n];
        let mut row = vec![0f32; d];
        let mut col = 0usize;
        for p in parts.iter() {
            for r in 0..p.rows {
                p.row_values(r, &mut row);
                for (k, v) in row.iter().enumerate() {
                    w[k * n + col] = *v;
                }
                col += 1;
            }
        }
        Self {
            w: WeightData::F32(w),
            stored: None,
            bias: self.bias.clone(),
            ..*self
        }
    }
}
