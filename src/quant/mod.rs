//! Quantized weights: llama.cpp's block formats (ggml's `block_q8_0`, `block_q4_K`, ...), the
//! weights most people who run an LLM on their own GPU hold.
//!
//! A row of a quantized matrix is whole blocks of 32 (the `_0`/`_1` formats) or 256 elements
//! (the K-quants); each block holds small integers and one or more f16 scales. The value of
//! element i is what ggml's `dequantize_row_*` computes for it, in f32
//! ([`BlockFormat::dequantize`]); every product in those formulas is exact in f32 (an f16
//! scale of 11 significant bits times integers of at most 13 bits), so the only rounding is
//! the one addition of the formats with a minimum (`d * q + m`, `d1 * q - m1`), and a kernel
//! that computes the same expression reads the same f32 value whether or not its compiler
//! fuses the multiply and the add. The reference of a quantized run is the f64 product of X
//! and those values.
//!
//! [`BlockFormat::quantize`] is ggml's reference quantizer of each format
//! (`quantize_row_*_ref`, the one `llama-quantize` uses without an importance matrix), so a
//! matrix quantized here is the matrix llama.cpp would have written.

mod dequantize;
mod matrix;
mod quantize;
#[cfg(test)]
mod tests;

pub use matrix::StoredMatrix;

use crate::element::ElementType;
use std::fmt;
use std::str::FromStr;

/// A quantized block format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockFormat {
    /// 32 int8 and an f16 scale: 8.5 bits per weight.
    Q8_0,
    /// 32 4-bit values centred on 8 and an f16 scale: 4.5 bits.
    Q4_0,
    /// 32 4-bit values, an f16 scale and an f16 minimum: 5 bits.
    Q4_1,
    /// Q4_0 with a fifth bit per value: 5.5 bits.
    Q5_0,
    /// Q4_1 with a fifth bit per value: 6 bits.
    Q5_1,
    /// 256 4-bit values in 8 sub-blocks of 32, each with a 6-bit scale and minimum under two
    /// f16 super-scales: 4.5 bits.
    Q4K,
    /// Q4_K with a fifth bit per value: 5.5 bits.
    Q5K,
    /// 256 6-bit values in 16 sub-blocks of 16 with int8 scales under one f16: 6.5625 bits.
    Q6K,
}

impl BlockFormat {
    /// Every format, in the order of `--weight-type`'s list.
    pub const ALL: [BlockFormat; 8] = [
        BlockFormat::Q8_0,
        BlockFormat::Q4_0,
        BlockFormat::Q4_1,
        BlockFormat::Q5_0,
        BlockFormat::Q5_1,
        BlockFormat::Q4K,
        BlockFormat::Q5K,
        BlockFormat::Q6K,
    ];

    /// The name on the command line and in reports (`q4_k`).
    pub const fn name(self) -> &'static str {
        match self {
            BlockFormat::Q8_0 => "q8_0",
            BlockFormat::Q4_0 => "q4_0",
            BlockFormat::Q4_1 => "q4_1",
            BlockFormat::Q5_0 => "q5_0",
            BlockFormat::Q5_1 => "q5_1",
            BlockFormat::Q4K => "q4_k",
            BlockFormat::Q5K => "q5_k",
            BlockFormat::Q6K => "q6_k",
        }
    }

    /// The format's number among ggml's types (`enum ggml_type`), as a GGUF file names it.
    pub const fn ggml_type(self) -> u32 {
        match self {
            BlockFormat::Q4_0 => 2,
            BlockFormat::Q4_1 => 3,
            BlockFormat::Q5_0 => 6,
            BlockFormat::Q5_1 => 7,
            BlockFormat::Q8_0 => 8,
            BlockFormat::Q4K => 12,
            BlockFormat::Q5K => 13,
            BlockFormat::Q6K => 14,
        }
    }

    /// The format of ggml's type number `ty`, if it is one of these.
    pub fn of_ggml_type(ty: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.ggml_type() == ty)
    }

    /// Elements per block: 32, or 256 for the K-quants.
    pub const fn block_elems(self) -> u32 {
        match self {
            BlockFormat::Q4K | BlockFormat::Q5K | BlockFormat::Q6K => 256,
            _ => 32,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> u32 {
        match self {
            BlockFormat::Q8_0 => 34,
            BlockFormat::Q4_0 => 18,
            BlockFormat::Q4_1 => 20,
            BlockFormat::Q5_0 => 22,
            BlockFormat::Q5_1 => 24,
            BlockFormat::Q4K => 144,
            BlockFormat::Q5K => 176,
            BlockFormat::Q6K => 210,
        }
    }

    /// Bits per weight.
    pub fn bits(self) -> f64 {
        self.block_bytes() as f64 * 8.0 / self.block_elems() as f64
    }

    /// Bytes of a row of `elems` elements (a multiple of the block), or None when the row is
    /// not whole blocks.
    pub fn row_bytes(self, elems: u64) -> Option<u64> {
        let per = self.block_elems() as u64;
        elems
            .is_multiple_of(per)
            .then(|| elems / per * self.block_bytes() as u64)
    }

    /// The value of the kernels' format code (`FMT_Q`, `FMT_K`, `FMT_V`): the ggml number.
    pub const fn shader_code(self) -> u32 {
        self.ggml_type()
    }

    /// Decodes whole blocks: `out.len()` elements (a multiple of the block) from `bytes`,
    /// exactly as ggml's `dequantize_row_*` does.
    ///
    /// # Panics
    /// When `out` is not whole blocks or `bytes` is shorter than they take (the callers size
    /// both from the format).
    pub fn dequantize(self, bytes: &[u8], out: &mut [f32]) {
        dequantize::row(self, bytes, out)
    }

    /// Appends `src` (a multiple of the block, finite) quantized by ggml's reference
    /// quantizer of this format to `out`.
    ///
    /// # Panics
    /// When `src` is not whole blocks.
    pub fn quantize(self, src: &[f32], out: &mut Vec<u8>) {
        quantize::row(self, src, out)
    }
}

impl fmt::Display for BlockFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How W is stored on the GPU: in an element type (f32, f16, bf16) or in blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WeightType {
    /// Elements of a storage type.
    Element(ElementType),
    /// Quantized blocks.
    Blocks(BlockFormat),
}

impl WeightType {
    /// The name (`f16`, `q4_k`).
    pub const fn name(self) -> &'static str {
        match self {
            WeightType::Element(e) => e.name(),
            WeightType::Blocks(b) => b.name(),
        }
    }

    /// The block format, if quantized.
    pub const fn blocks(self) -> Option<BlockFormat> {
        match self {
            WeightType::Blocks(b) => Some(b),
            WeightType::Element(_) => None,
        }
    }

    /// ggml's number for the type (`enum ggml_type`): the value of the kernels' format
    /// constants (`FMT_Q`, `FMT_K`, `FMT_V`).
    pub const fn ggml_type(self) -> u32 {
        match self {
            WeightType::Element(ElementType::F32) => 0,
            WeightType::Element(ElementType::F16) => 1,
            WeightType::Element(ElementType::Bf16) => 30,
            WeightType::Blocks(b) => b.ggml_type(),
        }
    }

    /// Bytes of a row of `elems` elements, or None where the row is not whole blocks.
    pub fn row_bytes(self, elems: u64) -> Option<u64> {
        match self {
            WeightType::Element(e) => elems.checked_mul(e.size()),
            WeightType::Blocks(b) => b.row_bytes(elems),
        }
    }

    /// Wq's, Wk's and Wv's types from `--weight-type`'s value: one name for all three
    /// (`q4_0`), or three separated by commas (`q4_k,q4_k,q6_k`, in Q, K, V order).
    pub fn parse_parts(s: &str) -> Result<[WeightType; 3], String> {
        let parts: Vec<&str> = s.split(',').collect();
        match parts.as_slice() {
            [one] => Ok([one.parse::<WeightType>()?; 3]),
            [q, k, v] => Ok([q.parse()?, k.parse()?, v.parse()?]),
            _ => Err(format!(
                "'{s}': give one weight type for Wq, Wk and Wv, or three separated by commas \
                 (Q, K, V); known: {}",
                WeightType::names()
            )),
        }
    }

    /// The formats a kernel of a run in `run` reads W in for Wq, Wk and Wv stored as
    /// `types` (`--weight-type`): None where all three are `run` itself (W is fused in it, as
    /// without the option), else all three ([`crate::FusedWeights::stored_as`]).
    pub fn stored_formats(types: [WeightType; 3], run: ElementType) -> Option<[WeightType; 3]> {
        (types != [WeightType::Element(run); 3]).then_some(types)
    }

    /// `--weight-type`'s value for Wq's, Wk's and Wv's types: one name where they agree.
    pub fn parts_name(types: [WeightType; 3]) -> String {
        if types[1..].iter().all(|t| *t == types[0]) {
            types[0].name().to_string()
        } else {
            types.map(|t| t.name()).join(",")
        }
    }

    /// Every name `--weight-type` takes, for errors and `--help`.
    pub fn names() -> String {
        let mut all: Vec<&str> = ElementType::ALL.iter().map(|e| e.name()).collect();
        all.extend(BlockFormat::ALL.iter().map(|b| b.name()));
        all.join(", ")
    }

    /// The weight type of ggml's type number `ty`, if qkv-wgpu reads it.
    pub fn of_ggml_type(ty: u32) -> Option<Self> {
        match ty {
            0 => Some(WeightType::Element(ElementType::F32)),
            1 => Some(WeightType::Element(ElementType::F16)),
            30 => Some(WeightType::Element(ElementType::Bf16)),
            _ => BlockFormat::of_ggml_type(ty).map(WeightType::Blocks),
        }
    }
}

impl fmt::Display for WeightType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WeightType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        if let Some(e) = ElementType::ALL.into_iter().find(|e| e.name() == t) {
            return Ok(WeightType::Element(e));
        }
        BlockFormat::ALL
            .into_iter()
            .find(|b| b.name() == t)
            .map(WeightType::Blocks)
            .ok_or_else(|| format!("unknown weight type '{s}'; known: {}", WeightType::names()))
    }
}
