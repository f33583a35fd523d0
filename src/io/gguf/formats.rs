//! The ggml tensor types a GGUF file names (`enum ggml_type` in ggml's `ggml.h`), and the
//! block layout of each: how many elements one block holds and how many bytes it takes
//! (`ggml_type_traits`). A row of a tensor is whole blocks: its length is a multiple of the
//! block's elements. Only the formats qkv-wgpu reads are [`GgmlType::SUPPORTED`]; the others
//! are named, so a file that uses one is refused by name.

use std::fmt;

/// A ggml tensor type, by its number in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

/// (number, name, elements per block, bytes per block) of every type ggml defines that has a
/// fixed block layout; numbers not listed (removed or unknown) have none.
const TYPES: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
];

impl GgmlType {
    /// The formats qkv-wgpu reads W in.
    pub const SUPPORTED: [GgmlType; 11] = [
        GgmlType(0),
        GgmlType(1),
        GgmlType(30),
        GgmlType(8),
        GgmlType(2),
        GgmlType(3),
        GgmlType(6),
        GgmlType(7),
        GgmlType(12),
        GgmlType(13),
        GgmlType(14),
    ];

    fn entry(self) -> Option<&'static (u32, &'static str, u64, u64)> {
        TYPES.iter().find(|t| t.0 == self.0)
    }

    /// Its name as ggml writes it ("Q4_K"); None for a number ggml does not define.
    pub fn name(self) -> Option<&'static str> {
        self.entry().map(|t| t.1)
    }

    /// (elements, bytes) of one block; None for a number ggml does not define.
    pub fn block(self) -> Option<(u64, u64)> {
        self.entry().map(|t| (t.2, t.3))
    }

    /// Whether qkv-wgpu reads W in this format.
    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }

    /// The names of the supported formats, for errors.
    pub fn supported_names() -> String {
        let names: Vec<&str> = Self::SUPPORTED.iter().filter_map(|t| t.name()).collect();
        names.join(", ")
    }

    /// Bytes of a row of `elements`, or None when the row is not whole blocks, its size
    /// overflows, or the type is not defined.
    pub fn row_bytes(self, elements: u64) -> Option<u64> {
        let (per, bytes) = self.block()?;
        if !elements.is_multiple_of(per) {
            return None;
        }
        (elements / per).checked_mul(bytes)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "type {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_ggmls() {
        assert_eq!(GgmlType(8).block(), Some((32, 34)));
        assert_eq!(GgmlType(12).row_bytes(4096), Some(16 * 144));
        assert_eq!(GgmlType(2).row_bytes(33), None, "not whole blocks");
        assert_eq!(GgmlType(0).row_bytes(u64::MAX / 2), None, "overflows");
        assert_eq!(GgmlType(4).block(), None, "removed from ggml");
        assert_eq!(GgmlType(4).to_string(), "type 4");
        assert_eq!(
            GgmlType::supported_names(),
            "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K"
        );
        assert!(!GgmlType(10).is_supported() && GgmlType(14).is_supported());
    }

    #[test]
    fn the_weight_types_are_the_supported_ggml_types() {
        use crate::quant::{BlockFormat, WeightType};
        for f in BlockFormat::ALL {
            let t = GgmlType(f.ggml_type());
            assert_eq!(
                t.block(),
                Some((f.block_elems() as u64, f.block_bytes() as u64)),
                "{f}"
            );
            assert_eq!(t.name().unwrap().to_ascii_lowercase(), f.name());
        }
        for n in 0..64 {
            let t = GgmlType(n);
            assert_eq!(
                WeightType::of_ggml_type(n).is_some(),
                t.is_supported(),
                "{t}"
            );
        }
    }
}
