//! W kept in a checkpoint's formats on the GPU and dequantized in the kernel (issue #34): the
//! decode kernel and the tiled prefill kernel in every block format and in the element
//! types stored beside them, Q, K and V each in its own format, in every run type, checked
//! against the f64 reference of the weights dequantized exactly as ggml does (the kernels
//! read the same values, so the tolerance is that of f32 accumulation plus the outputs'
//! rounding, unchanged). Outputs are filled with NaN before each dispatch, so an element
//! never written fails.

mod common;

use common::{assert_pass, ctx};
use qkv_wgpu::quant::{BlockFormat, WeightType};
use qkv_wgpu::{
    random_inputs, reference, ChunkOptions, ElementType, FusedWeights, HeadSplit, Kernel,
    KernelConfig, KernelSpec, OutputLayout, Projector, QkvReport, QkvShape, Tolerance,
};

/// The kernels that read W in its formats: decode in its three row counts, its four column
/// counts per invocation and splits that leave lanes without a unit, with W as a buffer and
/// as texels, blocktile's 128 x 128 tile, and subgroup-texture's 32 rows of 4 columns per
/// invocation (8 invocations: 32 columns a workgroup, which no width here fills evenly).
fn block_kernels() -> Vec<KernelConfig> {
    vec![
        KernelConfig::new(Kernel::SubgroupTexture, &[8]),
        KernelConfig::new(Kernel::Decode, &[8, 8, 8, 2]),
        KernelConfig::new(Kernel::Decode, &[4, 16, 1, 4]),
        KernelConfig::new(Kernel::Decode, &[3, 2, 4, 1]),
        KernelConfig::new(Kernel::Decode, &[16, 2, 8, 8]),
        KernelConfig::new(Kernel::Decode, &[4, 16, 1, 4, 1]),
        KernelConfig::new(Kernel::Decode, &[16, 2, 8, 8, 1]),
        KernelConfig::new(Kernel::Blocktile, &[]),
    ]
}

/// Seeded inputs with W stored as `types`, through `config` in `element` laid out as
/// `layout`, checked against the reference of the rounded X and the dequantized W.
fn check_stored(
    shape: QkvShape,
    types: [WeightType; 3],
    (config, element, layout): (KernelConfig, ElementType, OutputLayout),
    seed: u64,
) -> QkvReport {
    let (mut x, w) = random_inputs(&shape, seed);
    let w = w.quantized(types).expect("quantize");
    assert_eq!(w.w_formats(), Some(types), "kept in blocks");
    let spec = KernelSpec::resolve(config, element, &ctx().summary)
        .and_then(|s| s.with_w_formats(types))
        .unwrap_or_else(|e| panic!("{config}: {e}"));
    let tol = Tolerance::for_kernel(shape.d_model, &spec);
    let mut p = Projector::with_spec(ctx(), shape, spec, layout, &ChunkOptions::default())
        .unwrap_or_else(|e| panic!("{config} on {shape}: {e}"));
    p.set_weights(&w).unwrap();
    let out = p.run(&x).unwrap();
    element.round_slice(&mut x);
    let r = reference(&shape, &x, &w.rounded(element));
    let r = match layout {
        OutputLayout::Tokens => r,
        OutputLayout::Heads(h) => r.map(
            |m| layout.arrange(m, shape.tokens, shape.q_width, h.heads),
            |m| layout.arrange(m, shape.tokens, shape.kv_width, h.kv_heads),
        ),
    };
    QkvReport::new(
        (&out.q, &out.k, &out.v),
        &r,
        shape.q_width,
        shape.kv_width,
        tol,
    )
}

fn tokens(config: KernelConfig) -> (KernelConfig, ElementType, OutputLayout) {
    (config, ElementType::F32, OutputLayout::Tokens)
}

#[test]
fn every_block_format_is_read_exactly_by_decode_and_prefill() {
    // Ragged everywhere but d_model (whole blocks): 1, 5 and 9 tokens against 1, 4 and 8
    // rows per workgroup, widths no workgroup's columns divide, with and without bias; two
    // super-blocks of 256 for the K-quants.
    for (i, format) in BlockFormat::ALL.into_iter().enumerate() {
        let d = if format.block_elems() == 256 { 512 } else { 96 };
        for (t, q, kv, bias) in [(1, 20, 12, true), (5, 36, 4, false), (9, 8, 8, true)] {
            let shape = QkvShape::new(t, d, q, kv, bias).unwrap();
            for config in block_kernels() {
                let report = check_stored(
                    shape,
                    [WeightType::Blocks(format); 3],
                    tokens(config),
                    100 + i as u64,
                );
                assert_pass(&report, &format!("{config} over {format} on {shape}"));
            }
        }
    }
}

#[test]
fn prefill_over_several_tiles_of_tokens_and_columns() {
    // subgroup-texture's 32-row tiles: 70 tokens are two whole ones and a ragged third; 102
    // + 2 x 38 = 178 columns are three workgroups of 16 x 4, the last one ragged, and an
    // invocation's four columns straddle Wq's end and Wk's start, each in its own format.
    use BlockFormat::*;
    let shape = QkvShape::new(70, 256, 102, 38, true).unwrap();
    let config = KernelConfig::new(Kernel::SubgroupTexture, &[16]);
    for (i, types) in [[Q4_0; 3], [Q8_0; 3], [Q4K, Q6K, Q5_1], [Q5K, Q4_1, Q5_0]]
        .into_iter()
        .enumerate()
    {
        let types = types.map(WeightType::Blocks);
        let report = check_stored(shape, types, tokens(config), 250 + i as u64);
        assert_pass(&report, &format!("{config} over {types:?} on {shape}"));
    }
}

#[test]
fn q_k_and_v_each_in_its_own_format_with_gqa_bias_and_the_head_layout() {
    // llama.cpp's mixes keep Wv in more bits than Wq and Wk; an element type may sit beside
    // blocks. GQA: 4 query heads of 8 over 2 key/value heads, in the head layout.
    use BlockFormat::*;
    let mixes =
        [[Q4K, Q6K, Q8_0], [Q5_0, Q4_1, Q5K], [Q4_0, Q5_1, Q6K]].map(|m| m.map(WeightType::Blocks));
    let with_elements = [
        WeightType::Blocks(Q4K),
        WeightType::Element(ElementType::F16),
        WeightType::Element(ElementType::F32),
    ];
    let shape = QkvShape::new(6, 256, 32, 16, true).unwrap();
    let heads = OutputLayout::Heads(HeadSplit::new(&shape, 3, 4, 2).unwrap());
    for (i, types) in mixes.into_iter().chain([with_elements]).enumerate() {
        for config in block_kernels() {
            for layout in [OutputLayout::Tokens, heads] {
                let report = check_stored(
                    shape,
                    types,
                    (config, ElementType::F32, layout),
                    200 + i as u64,
                );
                assert_pass(&report, &format!("{config} over {types:?} ({layout:?})"));
            }
        }
    }
}

#[test]
fn blocks_run_in_both_half_types() {
    // X and Q, K, V in f16 or bf16; W still read as stored, in f32.
    let shape = QkvShape::new(5, 256, 24, 8, true).unwrap();
    let types = [BlockFormat::Q4K, BlockFormat::Q8_0, BlockFormat::Q5_1].map(WeightType::Blocks);
    for element in [ElementType::F16, ElementType::Bf16] {
        for config in block_kernels() {
            let report = check_stored(shape, types, (config, element, OutputLayout::Tokens), 300);
            assert_pass(&report, &format!("{config} in {element}"));
        }
    }
}

#[test]
fn w_as_texels_wraps_rows_of_the_texture_anywhere_in_a_unit() {
    // W's bytes in a texture 4096 texels (64 KiB) wide: Q4_0's 18-byte units and Q6_K's
    // 210-byte blocks straddle its rows (224 rows of 576 and 840 bytes: 129 and 188 KB), and
    // a fused f32 W of 18.3 MB is written in two bands of rows, the second one partial.
    let config = KernelConfig::new(Kernel::Decode, &[16, 2, 8, 8, 1]);
    let q4_0 = [WeightType::Blocks(BlockFormat::Q4_0); 3];
    let q6_k = [WeightType::Blocks(BlockFormat::Q6K); 3];
    let prefill = KernelConfig::new(Kernel::SubgroupTexture, &[8]);
    for (types, d) in [(q4_0, 1024), (q6_k, 1024)] {
        let shape = QkvShape::new(3, d, 100, 62, true).unwrap();
        for config in [config, prefill] {
            let report = check_stored(shape, types, tokens(config), 400);
            assert_pass(&report, &format!("{config} over {types:?} on {shape}"));
        }
    }
    let shape = QkvShape::new(2, 2080, 2000, 100, true).unwrap();
    let (x, w) = random_inputs(&shape, 401);
    let mut p = Projector::new(ctx(), shape, config).unwrap();
    p.set_weights(&w).unwrap();
    let out = p.run(&x).unwrap();
    let tol = Tolerance::for_kernel(shape.d_model, p.spec());
    let r = reference(&shape, &x, &w);
    let report = QkvReport::new((&out.q, &out.k, &out.v), &r, 2000, 100, tol);
    assert_pass(&report, &format!("{config}, fused f32 W on {shape}"));
}

#[test]
fn a_kernel_that_cannot_read_blocks_is_refused_by_name_and_so_are_mismatched_weights() {
    let types = [WeightType::Blocks(BlockFormat::Q8_0); 3];
    let e = KernelSpec::try_from(Kernel::Tiled)
        .unwrap()
        .with_w_formats(types)
        .unwrap_err();
    assert!(e.contains("decode") && e.contains("blocktile"), "{e}");
    // A projector made for blocks refuses fused weights, and the other way round.
    let shape = QkvShape::new(2, 64, 8, 8, false).unwrap();
    let (_, w) = random_inputs(&shape, 1);
    let spec = KernelSpec::try_from(Kernel::Decode)
        .unwrap()
        .with_w_formats(types)
        .unwrap();
    let mut p = Projector::with_spec(
        ctx(),
        shape,
        spec,
        OutputLayout::Tokens,
        &ChunkOptions::default(),
    )
    .unwrap();
    let e = p.set_weights(&w).unwrap_err().to_string();
    assert!(e.contains("q8_0") && e.contains("fused"), "{e}");
    let mut fused = Projector::new(ctx(), shape, Kernel::Decode).unwrap();
    let e = fused
        .set_weights(&w.quantized(types).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("q8_0"), "{e}");
}

#[test]
fn a_d_model_that_is_not_whole_blocks_is_refused_by_name() {
    let shape = QkvShape::new(1, 100, 8, 8, false).unwrap();
    let (_, w) = random_inputs(&shape, 2);
    for format in BlockFormat::ALL {
        let e = w
            .quantized([WeightType::Blocks(format); 3])
            .unwrap_err()
            .to_string();
        let n = format.block_elems().to_string();
        assert!(
            e.contains(format.name()) && e.contains(&format!("multiple of {n}")),
            "{e}"
        );
    }
}

#[test]
fn element_typed_parts_alone_are_fused_as_before() {
    // Wq f16, Wk and Wv f16: a fused f16 W, read by every kernel; a mix of f16 and f32 is
    // widened to f32, exactly.
    let shape = QkvShape::new(3, 40, 8, 4, true).unwrap();
    let (_, w) = random_inputs(&shape, 3);
    let f16 = WeightType::Element(ElementType::F16);
    let all = w.quantized([f16; 3]).unwrap();
    assert!(all.stored.is_none());
    assert_eq!(all.w.element(), ElementType::F16);
    let mixed = w
        .quantized([f16, WeightType::Element(ElementType::F32), f16])
        .unwrap();
    assert!(mixed.stored.is_none());
    assert_eq!(mixed.w.element(), ElementType::F32);
    // Wk's columns (8 .. 12 of 16) are the f32 values as given, the others rounded to f16.
    let (given, halves): (Vec<f32>, Vec<f32>) = (w.w.values().collect(), all.w.values().collect());
    for (i, v) in mixed.w.values().enumerate() {
        let want = if (8..12).contains(&(i % 16)) {
            given[i]
        } else {
            halves[i]
        };
        assert_eq!(v, want, "element {i}");
    }
}

#[test]
fn weights_whose_blocks_decode_to_non_finite_values_are_refused() {
    // A Q8_0 block whose f16 scale is infinite.
    let shape = QkvShape::new(1, 32, 4, 4, false).unwrap();
    let (_, w) = random_inputs(&shape, 4);
    let q = w
        .quantized([WeightType::Blocks(BlockFormat::Q8_0); 3])
        .unwrap();
    let mut parts = (*q.stored.clone().unwrap()).clone();
    parts[1].bytes[34..36].copy_from_slice(&0x7c00u16.to_le_bytes());
    let e = FusedWeights::from_stored(parts, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Wk") && e.contains("output feature 1"), "{e}");
}
