//! The element types X, W and Q, K, V are stored in on the GPU: f32, f16 and bf16. Every
//! kernel accumulates in f32 whatever the storage type; only loads widen and stores round.
//!
//! Half types travel as 16-bit patterns packed two to a 32-bit word, element 2i in the low
//! half of word i (the little-endian order of a `u16` array), so every adapter runs them,
//! with or without `SHADER_F16`: the shaders widen and round with integer arithmetic (bf16 is
//! the high half of an f32; f16 is rebiased), exactly on load and to nearest even on store.
//! The host rounds inputs to nearest even (the `half` crate) before they are uploaded, and
//! the reference is computed from the same rounded values ([`ElementType::round`]).

use std::fmt;
use std::str::FromStr;

/// The storage type of X, W and Q, K, V. Accumulation is always f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum ElementType {
    /// 32-bit IEEE floats.
    #[default]
    F32,
    /// IEEE binary16: 11 significant bits, finite up to 65504.
    F16,
    /// bfloat16: the top half of an f32 (8 significant bits, f32's range).
    Bf16,
}

/// An input value the storage type cannot hold: finite, but past the type's largest finite
/// value once rounded (it would become an infinity).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutOfRange {
    /// Index of the first such value in the slice checked.
    pub index: usize,
    /// The value.
    pub value: f32,
    /// The type it does not fit.
    pub element: ElementType,
}

impl OutOfRange {
    /// The input error for this value at index `index` of rows of `width` elements starting
    /// at row `first_row` of matrix `what` ("X row 5, column 3: 70000 is outside ...").
    pub fn in_rows(&self, what: &str, first_row: u32, width: u32) -> crate::error::Error {
        let w = width.max(1) as usize;
        crate::error::Error::Input(format!(
            "{what} row {}, column {}: {self}",
            first_row as usize + self.index / w,
            self.index % w
        ))
    }
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is outside {}'s range (largest finite value {})",
            self.value,
            self.element,
            self.element.max_finite()
        )
    }
}

impl ElementType {
    /// Every type, in order.
    pub const ALL: [ElementType; 3] = [ElementType::F32, ElementType::F16, ElementType::Bf16];

    /// The name on the command line and in reports (`f32`, `f16`, `bf16`).
    pub const fn name(self) -> &'static str {
        match self {
            ElementType::F32 => "f32",
            ElementType::F16 => "f16",
            ElementType::Bf16 => "bf16",
        }
    }

    /// Bytes per element.
    pub const fn size(self) -> u64 {
        match self {
            ElementType::F32 => 4,
            ElementType::F16 | ElementType::Bf16 => 2,
        }
    }

    /// Whether the type is 16 bits wide.
    pub const fn is_half(self) -> bool {
        !matches!(self, ElementType::F32)
    }

    /// The value of the shaders' `ELEM` override constant: 0 f32, 1 f16, 2 bf16.
    pub const fn shader_code(self) -> u32 {
        match self {
            ElementType::F32 => 0,
            ElementType::F16 => 1,
            ElementType::Bf16 => 2,
        }
    }

    /// Bytes of a buffer holding `elems` elements: whole 32-bit words, since the shaders
    /// address half types by word.
    pub const fn buffer_bytes(self, elems: u64) -> u64 {
        (elems * self.size()).div_ceil(4) * 4
    }

    /// The largest finite value.
    pub fn max_finite(self) -> f32 {
        match self {
            ElementType::F32 => f32::MAX,
            ElementType::F16 => half::f16::MAX.to_f32(),
            ElementType::Bf16 => half::bf16::MAX.to_f32(),
        }
    }

    /// The 32-bit word the outputs are filled with before a dispatch: NaN in every element
    /// of the word (a quiet NaN per half for the 16-bit types).
    pub const fn nan_word(self) -> u32 {
        match self {
            ElementType::F32 => 0x7fc0_0000,
            ElementType::F16 => 0x7e00_7e00,
            ElementType::Bf16 => 0x7fc0_7fc0,
        }
    }

    /// `v` rounded to nearest even in this type, as an f32 (exact: every f16 and bf16 value
    /// is an f32). What the GPU reads for an input value `v`.
    pub fn round(self, v: f32) -> f32 {
        match self {
            ElementType::F32 => v,
            ElementType::F16 => half::f16::from_f32(v).to_f32(),
            ElementType::Bf16 => half::bf16::from_f32(v).to_f32(),
        }
    }

    /// Rounds every element of `data` in place ([`round`](Self::round)).
    pub fn round_slice(self, data: &mut [f32]) {
        if self.is_half() {
            data.iter_mut().for_each(|v| *v = self.round(*v));
        }
    }

    /// The first finite value of `data` this type cannot hold (it would round to an
    /// infinity), if any. NaN and infinities are not range errors: they stay what they are.
    pub fn check_range(self, data: &[f32]) -> Option<OutOfRange> {
        self.check_range_of(data.iter().copied())
    }

    /// [`check_range`](Self::check_range) over values produced one by one (a half-typed
    /// matrix widened on the fly, with no f32 copy of it).
    pub fn check_range_of(self, values: impl Iterator<Item = f32>) -> Option<OutOfRange> {
        if !self.is_half() {
            return None;
        }
        values
            .enumerate()
            .find(|&(_, v)| v.is_finite() && self.round(v).is_infinite())
            .map(|(index, value)| OutOfRange {
                index,
                value,
                element: self,
            })
    }

    /// The f32 value of a 16-bit pattern of this type (f16, else bf16), exactly.
    pub fn widen_bits(self, bits: u16) -> f32 {
        match self {
            ElementType::F16 => half::f16::from_bits(bits).to_f32(),
            _ => half::bf16::from_bits(bits).to_f32(),
        }
    }

    /// Appends `data` in this type's bytes to `out`: f32 as they are, half types rounded to
    /// nearest even, two to a 32-bit word (element 2i in the low half of word i).
    pub fn encode(self, data: &[f32], out: &mut Vec<u8>) {
        use half::slice::HalfFloatSliceExt;
        match self {
            ElementType::F32 if cfg!(target_endian = "little") => {
                out.extend_from_slice(bytemuck::cast_slice(data))
            }
            ElementType::F32 => out.extend(data.iter().flat_map(|v| v.to_le_bytes())),
            ElementType::F16 => {
                let mut h = vec![half::f16::ZERO; data.len()];
                h.convert_from_f32_slice(data);
                extend_bits(out, h.reinterpret_cast());
            }
            ElementType::Bf16 => {
                let mut h = vec![half::bf16::ZERO; data.len()];
                h.convert_from_f32_slice(data);
                extend_bits(out, h.reinterpret_cast());
            }
        }
    }

    /// Widens `out.len()` elements of this type from `bytes` (as [`encode`](Self::encode)
    /// writes them) into f32, exactly.
    pub fn decode(self, bytes: &[u8], out: &mut [f32]) {
        let n = out.len();
        match self {
            ElementType::F32 => {
                out.copy_from_slice(bytemuck::cast_slice(&bytes[..n * 4]));
            }
            ElementType::F16 | ElementType::Bf16 => {
                use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
                let bytes = &bytes[..n * 2];
                // Aligned little-endian bits (a mapped GPU buffer) convert a slice at a time
                // (with the CPU's conversion instructions where it has them).
                match bytemuck::try_cast_slice::<u8, u16>(bytes) {
                    Ok(bits) if cfg!(target_endian = "little") => {
                        if self == ElementType::F16 {
                            bits.reinterpret_cast::<half::f16>()
                                .convert_to_f32_slice(out);
                        } else {
                            bits.reinterpret_cast::<half::bf16>()
                                .convert_to_f32_slice(out);
                        }
                    }
                    _ => {
                        for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                            *o = self.widen_bits(u16::from_le_bytes([b[0], b[1]]));
                        }
                    }
                }
            }
        }
    }

    /// The relative error of the kernels' final rounding of an f32 result to this type, to
    /// nearest even: 0 for f32 (the accumulator is the result); half a unit in the last
    /// place otherwise, 2^-11 for f16 (11 significant bits) and 2^-8 for bf16 (8).
    pub fn rounding_rel(self) -> f64 {
        match self {
            ElementType::F32 => 0.0,
            ElementType::F16 => (-11f64).exp2(),
            ElementType::Bf16 => (-8f64).exp2(),
        }
    }

    /// The absolute error of that rounding below the normal range: half of f16's subnormal
    /// spacing 2^-24 (bf16's is below any result that matters, as for f32).
    pub fn rounding_abs(self) -> f64 {
        match self {
            ElementType::F16 => (-25f64).exp2(),
            ElementType::F32 | ElementType::Bf16 => 0.0,
        }
    }
}

/// The type each operand of a run is stored in on the GPU: X, W, and the outputs Q, K, V. A
/// run is given one type (`--dtype`, Python's `dtype=`, the page's choice) and each kernel
/// variant says which operand types it reads that as
/// ([`VariantDef::reads`](crate::kernels::VariantDef::reads)): most read and store all
/// three in it; `coopmat` reads X and W as f16 whatever the run's type. The outputs are
/// always in the run's type. The host converts each input to its operand's type on upload
/// (rounded to the run's type first), and sizes each buffer by its operand's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OperandTypes {
    /// X [tokens, d_model] as the kernel reads it.
    pub x: ElementType,
    /// The fused W [d_model, n_out] as the kernel reads it.
    pub w: ElementType,
    /// Q, K and V as the kernel stores them: the run's type.
    pub out: ElementType,
}

impl OperandTypes {
    /// Every operand in `element`.
    pub const fn all(element: ElementType) -> Self {
        Self {
            x: element,
            w: element,
            out: element,
        }
    }

    /// Whether X or W is read in a 16-bit type (then the precision cost of rounding them
    /// is worth reporting).
    pub const fn reads_half(self) -> bool {
        self.x.is_half() || self.w.is_half()
    }
}

impl fmt::Display for OperandTypes {
    /// `f32` where all three are one type, else `x f16, w f16, out f32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::all(self.out) {
            return self.out.fmt(f);
        }
        write!(f, "x {}, w {}, out {}", self.x, self.w, self.out)
    }
}

/// Appends 16-bit patterns to `out` in little-endian order.
fn extend_bits(out: &mut Vec<u8>, bits: &[u16]) {
    if cfg!(target_endian = "little") {
        out.extend_from_slice(bytemuck::cast_slice(bits));
    } else {
        out.extend(bits.iter().flat_map(|b| b.to_le_bytes()));
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for ElementType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl FromStr for ElementType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        ElementType::ALL
            .into_iter()
            .find(|e| e.name() == t)
            .ok_or_else(|| format!("unknown element type '{s}'; known: f32, f16, bf16"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operand_types_name_the_run_and_print_apart_only_when_apart() {
        let f32s = OperandTypes::all(ElementType::F32);
        assert_eq!(f32s.to_string(), "f32");
        let coop = OperandTypes {
            x: ElementType::F16,
            w: ElementType::F16,
            ..f32s
        };
        assert_eq!(coop.to_string(), "x f16, w f16, out f32");
        assert!(coop.reads_half() && !f32s.reads_half());
    }

    #[test]
    fn names_parse_and_sizes_are_right() {
        for e in ElementType::ALL {
            assert_eq!(e.name().parse::<ElementType>(), Ok(e));
        }
        assert_eq!("BF16".parse::<ElementType>(), Ok(ElementType::Bf16));
        assert!("f8".parse::<ElementType>().unwrap_err().contains("bf16"));
        assert_eq!(ElementType::F16.buffer_bytes(3), 8);
        assert_eq!(ElementType::F32.buffer_bytes(3), 12);
    }

    #[test]
    fn encode_then_decode_is_round() {
        // Ties and near-ties of both types, subnormals, signs.
        let data = [
            1.0f32,
            -2.5,
            1.0 + 1.0 / 2048.0,
            1.0 + 3.0 / 2048.0,
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
            3.0e-7,
            -65504.0,
            0.1,
        ];
        for e in ElementType::ALL {
            let mut bytes = Vec::new();
            e.encode(&data, &mut bytes);
            assert_eq!(bytes.len() as u64, data.len() as u64 * e.size());
            let mut back = vec![0f32; data.len()];
            e.decode(&bytes, &mut back);
            for (&d, &b) in data.iter().zip(&back) {
                assert_eq!(b.to_bits(), e.round(d).to_bits(), "{e}: {d}");
            }
        }
        // The unaligned path gives the same.
        for e in [ElementType::F16, ElementType::Bf16] {
            let mut bytes = vec![0u8];
            e.encode(&data, &mut bytes);
            let mut back = vec![0f32; data.len()];
            e.decode(&bytes[1..], &mut back);
            let rounded: Vec<f32> = data.iter().map(|&d| e.round(d)).collect();
            assert_eq!(back, rounded, "{e}, unaligned");
        }
        // Round to nearest even at a tie: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
        assert_eq!(ElementType::F16.round(1.0 + 1.0 / 2048.0), 1.0);
        assert_eq!(
            ElementType::F16.round(1.0 + 3.0 / 2048.0),
            1.0 + 4.0 / 2048.0
        );
        assert_eq!(ElementType::Bf16.round(1.0 + 1.0 / 256.0), 1.0);
        // Element 2i is the low half of word i.
        let mut bytes = Vec::new();
        ElementType::F16.encode(&[1.0, 2.0], &mut bytes);
        let word = u32::from_le_bytes(bytes[..4].try_into().unwrap());
        assert_eq!(word, 0x4000_3c00);
    }

    #[test]
    fn out_of_range_values_are_found_and_nan_is_not_one() {
        let data = [1.0, f32::NAN, f32::INFINITY, 65504.0, 65519.0, 70000.0];
        let e = ElementType::F16.check_range(&data).unwrap();
        assert_eq!((e.index, e.value), (5, 70000.0));
        assert!(e.to_string().contains("f16's range"), "{e}");
        assert_eq!(ElementType::F32.check_range(&data), None);
        assert_eq!(ElementType::Bf16.check_range(&data), None);
        assert!(ElementType::Bf16.check_range(&[f32::MAX]).is_some());
        assert_eq!(ElementType::F16.nan_word() & 0xffff, 0x7e00);
        assert!(half::f16::from_bits(0x7e00).is_nan() && half::bf16::from_bits(0x7fc0).is_nan());
    }
}
