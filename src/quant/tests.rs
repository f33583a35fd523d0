use super::*;
use rand::{Rng, SeedableRng};

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn round_trip(format: BlockFormat, x: &[f32]) -> Vec<f32> {
    let mut bytes = Vec::new();
    format.quantize(x, &mut bytes);
    assert_eq!(
        bytes.len() as u64,
        format.row_bytes(x.len() as u64).unwrap()
    );
    let mut back = vec![f32::NAN; x.len()];
    format.dequantize(&bytes, &mut back);
    back
}

#[test]
fn names_blocks_and_ggml_numbers_agree() {
    for f in BlockFormat::ALL {
        assert_eq!(BlockFormat::of_ggml_type(f.ggml_type()), Some(f));
        assert_eq!(f.name().parse::<WeightType>(), Ok(WeightType::Blocks(f)));
    }
    assert_eq!(BlockFormat::Q4K.bits(), 4.5);
    assert_eq!(BlockFormat::Q6K.row_bytes(4096), Some(16 * 210));
    assert_eq!(BlockFormat::Q4_0.row_bytes(48), None);
    assert_eq!(
        "F16".parse::<WeightType>(),
        Ok(WeightType::Element(ElementType::F16))
    );
    let err = "q3_k".parse::<WeightType>().unwrap_err();
    assert!(
        err.contains("q3_k") && err.contains("q6_k") && err.contains("bf16"),
        "{err}"
    );
}

#[test]
fn hand_made_blocks_decode_as_ggml_defines() {
    // Q8_0: d = 0.5, q = 0, 1, ..., -1 at the end.
    let mut b = half::f16::from_f32(0.5).to_bits().to_le_bytes().to_vec();
    b.extend((0..32).map(|j| if j == 31 { 0xff } else { j as u8 }));
    let mut y = [0f32; 32];
    BlockFormat::Q8_0.dequantize(&b, &mut y);
    assert_eq!((y[0], y[3], y[30], y[31]), (0.0, 1.5, 15.0, -0.5));

    // Q4_0: d = 2; byte j = 0x9F: low nibble 15 -> element j = (15 - 8) * 2 = 14, high
    // nibble 9 -> element j + 16 = 2.
    let mut b = half::f16::from_f32(2.0).to_bits().to_le_bytes().to_vec();
    b.extend([0x9f; 16]);
    BlockFormat::Q4_0.dequantize(&b, &mut y);
    assert_eq!((y[0], y[15], y[16], y[31]), (14.0, 14.0, 2.0, 2.0));

    // Q4_1: d = 1, m = -3: q * 1 - 3.
    let mut b = half::f16::from_f32(1.0).to_bits().to_le_bytes().to_vec();
    b.extend(half::f16::from_f32(-3.0).to_bits().to_le_bytes());
    b.extend([0x50; 16]);
    BlockFormat::Q4_1.dequantize(&b, &mut y);
    assert_eq!((y[0], y[16]), (-3.0, 2.0));

    // Q5_0: d = 1, the fifth bit set for element 0 and element 16 only: element 0 is
    // (0 | 16) - 16 = 0, element 1 is 0 - 16, element 16 is (0 | 16) - 16 = 0.
    let mut b = half::f16::from_f32(1.0).to_bits().to_le_bytes().to_vec();
    b.extend((1u32 | (1 << 16)).to_le_bytes());
    b.extend([0u8; 16]);
    BlockFormat::Q5_0.dequantize(&b, &mut y);
    assert_eq!((y[0], y[1], y[16], y[17]), (0.0, -16.0, 0.0, -16.0));

    // Q6_K: d = 1, scale of sub-block 0 = 2, of sub-block 2 (elements 32..48) = -1; all
    // nibbles 0, all high pairs 2 (q = 32 - 32 = 0) except byte 0's: pair 0 = 3 (element 0:
    // 48 - 32 = 16) and pair 1 = 0 (element 32: 0 - 32).
    let mut b = vec![0u8; 210];
    b[128..192].fill(0b1010_1010);
    b[128] = 0b1010_1011 & !0b1100;
    b[192] = 2;
    b[194] = (-1i8) as u8;
    b[208..210].copy_from_slice(&half::f16::from_f32(1.0).to_bits().to_le_bytes());
    let mut y = [0f32; 256];
    BlockFormat::Q6K.dequantize(&b, &mut y);
    assert_eq!((y[0], y[1], y[32], y[33]), (32.0, 0.0, 32.0, 0.0));
}

#[test]
fn quantize_then_dequantize_is_close_for_every_format() {
    // The error of a round trip is at most about half a step of the block's scale; the
    // bound per format is the step of its bits over the range [-1, 1], with the margin of
    // the 6-bit sub-scales of the K-quants.
    let x = random(2048, 7);
    for (f, bound) in [
        (BlockFormat::Q8_0, 1.0 / 127.0),
        (BlockFormat::Q4_0, 1.0 / 8.0),
        (BlockFormat::Q4_1, 2.0 / 15.0),
        (BlockFormat::Q5_0, 1.0 / 16.0),
        (BlockFormat::Q5_1, 2.0 / 31.0),
        (BlockFormat::Q4K, 2.0 / 15.0),
        (BlockFormat::Q5K, 2.0 / 31.0),
        (BlockFormat::Q6K, 1.0 / 32.0),
    ] {
        let back = round_trip(f, &x);
        let worst = x
            .iter()
            .zip(&back)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // 5% over for the f16 rounding of the scales.
        assert!(worst <= bound * 1.05, "{f}: worst error {worst} > {bound}");
        // Quantizing what was dequantized gives it back exactly for the formats whose
        // values are a fixed grid of the block's scale (the scale is found again).
        if matches!(f, BlockFormat::Q8_0) {
            assert_eq!(round_trip(f, &back), back, "{f} is idempotent");
        }
    }
}

#[test]
fn zero_blocks_and_constant_blocks_quantize_without_nan() {
    for f in BlockFormat::ALL {
        let n = f.block_elems() as usize;
        for x in [vec![0f32; n], vec![0.25f32; n], vec![-3.0f32; n]] {
            let back = round_trip(f, &x);
            assert!(back.iter().all(|v| v.is_finite()), "{f}: {back:?}");
            if x[0] == 0.0 {
                assert!(back.iter().all(|&v| v == 0.0), "{f}: zeros stay zeros");
            }
        }
    }
}

#[test]
fn nearest_int_rounds_half_to_even() {
    // Through quantize: Q8_0 of a block whose largest magnitude is 127 has d = 1, and its
    // values round half away from zero (roundf), as ggml's Q8_0 does.
    let mut x = vec![0f32; 32];
    x[0] = 127.0;
    x[1] = 2.5;
    x[2] = -2.5;
    let back = round_trip(BlockFormat::Q8_0, &x);
    assert_eq!((back[1], back[2]), (3.0, -3.0));
}
