//! One matrix stored as a checkpoint holds it: rows of `cols` elements (a linear layer's
//! `[out, in]`, a row per output feature, along d_model), in any [`WeightType`]: f32, f16,
//! bf16 or a block format, its bytes kept as they are.

use super::{BlockFormat, WeightType};
use crate::element::ElementType;
use crate::error::{Error, Result};

/// A matrix of `rows` rows of `cols` elements in `ty`, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMatrix {
    /// The format.
    pub ty: WeightType,
    /// Rows: output features.
    pub rows: u32,
    /// Elements per row: d_model.
    pub cols: u32,
    /// The rows, one after another, each [`row_bytes`](Self::row_bytes) long.
    pub bytes: Vec<u8>,
}

impl StoredMatrix {
    /// Bytes of one row of `cols` elements of `ty`, or an error naming `what` when the row
    /// is not whole blocks of the format.
    pub fn row_bytes_of(ty: WeightType, cols: u32, what: &str) -> Result<u64> {
        match ty {
            WeightType::Element(e) => Ok(cols as u64 * e.size()),
            WeightType::Blocks(b) => b.row_bytes(cols as u64).ok_or_else(|| {
                Error::Input(format!(
                    "{what}: rows of {cols} elements are not whole {b} blocks of {}; {b} \
                     needs d_model to be a multiple of {}",
                    b.block_elems(),
                    b.block_elems()
                ))
            }),
        }
    }

    /// The matrix, after checking that `bytes` holds exactly `rows` rows of `cols` in `ty`
    /// (`what` names it in the error).
    pub fn new(ty: WeightType, rows: u32, cols: u32, bytes: Vec<u8>, what: &str) -> Result<Self> {
        let row = Self::row_bytes_of(ty, cols, what)?;
        let want = row.checked_mul(rows as u64);
        if want != Some(bytes.len() as u64) {
            return Err(Error::Input(format!(
                "{what}: {} bytes do not hold {rows} rows of {cols} {ty} elements ({} bytes)",
                bytes.len(),
                want.map_or("overflowing".into(), |w| w.to_string())
            )));
        }
        Ok(Self {
            ty,
            rows,
            cols,
            bytes,
        })
    }

    /// f32 rows `[rows, cols]` (row-major) quantized to `ty`: block formats by ggml's
    /// reference quantizers, element types rounded to nearest even. The values must be
    /// finite.
    pub fn quantize(
        ty: WeightType,
        rows: u32,
        cols: u32,
        data: &[f32],
        what: &str,
    ) -> Result<Self> {
        assert_eq!(data.len() as u64, rows as u64 * cols as u64, "{what}");
        let row = Self::row_bytes_of(ty, cols, what)?;
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Input(format!(
                "{what} row {}, column {}: {} cannot be quantized to {ty} (not finite)",
                i / cols.max(1) as usize,
                i % cols.max(1) as usize,
                data[i]
            )));
        }
        let mut bytes = Vec::with_capacity((row * rows as u64) as usize);
        match ty {
            WeightType::Element(e) => e.encode(data, &mut bytes),
            WeightType::Blocks(b) => b.quantize(data, &mut bytes),
        }
        Self::new(ty, rows, cols, bytes, what)
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> u64 {
        self.bytes.len() as u64 / self.rows.max(1) as u64
    }

    /// Row `r` as f32, exactly the values a kernel reads (ggml's dequantization; f16 and
    /// bf16 widened).
    pub fn row_values(&self, r: u32, out: &mut [f32]) {
        let n = self.row_bytes() as usize;
        let bytes = &self.bytes[r as usize * n..(r as usize + 1) * n];
        decode(self.ty, bytes, out);
    }

    /// The matrix with its rows in another order: row `r` of the result is row `from(r)`
    /// of this one (`from` a permutation of `0..rows`). Whole rows move, so any format.
    pub fn rows_from(&self, from: impl Fn(u32) -> u32) -> Self {
        let n = self.row_bytes() as usize;
        let mut bytes = Vec::with_capacity(self.bytes.len());
        for r in 0..self.rows {
            let s = from(r) as usize * n;
            bytes.extend_from_slice(&self.bytes[s..s + n]);
        }
        Self {
            bytes,
            ..self.clone()
        }
    }

    /// Every row as f32 `[rows, cols]`.
    pub fn values(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows as usize * self.cols as usize];
        decode(self.ty, &self.bytes, &mut out);
        out
    }
}

fn decode(ty: WeightType, bytes: &[u8], out: &mut [f32]) {
    match ty {
        WeightType::Element(e) => e.decode(bytes, out),
        WeightType::Blocks(b) => b.dequantize(bytes, out),
    }
}

impl From<BlockFormat> for WeightType {
    fn from(b: BlockFormat) -> Self {
        WeightType::Blocks(b)
    }
}

impl From<ElementType> for WeightType {
    fn from(e: ElementType) -> Self {
        WeightType::Element(e)
    }
}
