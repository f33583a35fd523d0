//! QK-norm and RoPE fused into `blocktile`'s store (`shaders/parts/tile_rope_norm.wgsl`):
//! where every head lies inside one 128 x 128 tile the projector runs no second pass, and Q
//! and K pass the same check as the pass's (tests/epilogue.rs): against the f64 reference
//! with the epilogue applied, within the kernel's tolerance plus the epilogue's. Tiles of Q,
//! K and V heads together and of V alone, rows past the last token, partial rotary
//! dimensions, both pair layouts, Gemma's 1 + w, given positions, every storage type, the
//! head layout, chunks and column blocks on heads, W in blocks; and where a head would
//! straddle a tile (or the norm spans the width, or the caller asks for Q and K in f32), the
//! pass takes over.

mod common;

use common::assert_pass;
use common::epilogue::{each_step_alone, heads_of, qwen3, rope, small, weights, Run};
use qkv_wgpu::epilogue::{Epilogue, Heads, NormScope, Positions, QkNorm, RopePairs, RopeScaling};
use qkv_wgpu::plan::ChunkOptions;
use qkv_wgpu::quant::{BlockFormat, WeightType};
use qkv_wgpu::{ElementType, HeadSplit, Kernel, OutputLayout, QkvShape};

/// `heads` query heads and `kv_heads` KV heads of `size` over d_model 45, `tokens` tokens of
/// one sequence. Heads of 32: with 2 + 1, one tile holds Q's, K's and V's heads (64 + 32 +
/// 32 columns); with 3 + 1, the first tile Q's and K's and the second V's alone (32 of its
/// 128 columns).
fn heads_of_size(size: u32, tokens: u32, heads: u32, kv_heads: u32) -> (QkvShape, Heads) {
    let shape = QkvShape::new(tokens, 45, heads * size, kv_heads * size, true).unwrap();
    (shape, heads_of(heads, kv_heads, size, tokens))
}

fn heads_of_32(tokens: u32, heads: u32, kv_heads: u32) -> (QkvShape, Heads) {
    heads_of_size(32, tokens, heads, kv_heads)
}

fn fused(shape: QkvShape) -> Run<'static> {
    Run {
        fused: Some(true),
        ..Run::new(shape, Kernel::Blocktile)
    }
}

/// Gemma's norm (1 + w) and adjacent pairs with Llama 3's scaling over heads of `size`, at
/// given positions.
fn gemma_like(size: u32, tokens: u32) -> Epilogue {
    Epilogue {
        qk_norm: Some(QkNorm {
            scope: NormScope::PerHead,
            eps: 1e-6,
            q_weight: weights(size, 5),
            k_weight: weights(size, 6),
            plus_one: true,
        }),
        rope: Some(qkv_wgpu::epilogue::Rope {
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 64.0,
            },
            theta: 500_000.0,
            ..rope(size, RopePairs::Adjacent)
        }),
        positions: Positions::Given((0..tokens).map(|t| (t * 7919 + 3) % 100_003).collect()),
    }
}

#[test]
fn blocktile_normalizes_and_rotates_in_its_store_where_heads_fit_its_tile() {
    // Heads of 32 in a tile of Q, K and V, and in tiles of Q and K and of V alone; 150
    // tokens: a second row of tiles, most of its strips past the last token. Heads of 64
    // (K's and V's in one tile) and of 128 (a tile each), the models' sizes. Heads of 8: 512
    // (row, head) places a strip, two per invocation, those past the tile's 48 columns
    // skipped.
    let cases = [
        (32, 77, 2, 1),
        (32, 150, 3, 1),
        (64, 40, 2, 1),
        (128, 33, 2, 1),
        (8, 45, 4, 1),
    ];
    for (size, tokens, heads, kv_heads) in cases {
        let (shape, h) = heads_of_size(size, tokens, heads, kv_heads);
        let what = format!("{heads} + {kv_heads} heads of {size}, {tokens} tokens");
        // Qwen3's: per-head norm, rotate-half over 3/4 of each head, from an offset.
        let ep = qwen3(size, size / 4 * 3, Positions::Offset(1000));
        assert_pass(&fused(shape).check(&ep, h), &format!("Qwen3's, {what}"));
        let g = gemma_like(size, tokens);
        assert_pass(&fused(shape).check(&g, h), &format!("Gemma-like, {what}"));
        for ep in each_step_alone(&ep) {
            assert_pass(&fused(shape).check(&ep, h), &format!("{ep:?}, {what}"));
        }
    }
}

#[test]
fn the_fused_store_rounds_once_in_both_half_types_and_lays_out_heads() {
    let ep = qwen3(32, 32, Positions::Offset(3));
    for element in [ElementType::F16, ElementType::Bf16] {
        // A tile of Q, K and V; then V's alone.
        for (heads, kv_heads) in [(2, 1), (3, 1)] {
            let (shape, h) = heads_of_32(77, heads, kv_heads);
            let mut run = fused(shape);
            run.element = element;
            assert_pass(
                &run.check(&ep, h),
                &format!("{element}, {heads} + {kv_heads}"),
            );
        }
    }
    let (shape, h) = heads_of_32(77, 3, 1);
    // 7 sequences of 11 tokens, in chunks of 3 sequences: positions restart each sequence.
    let h = Heads { seq: 11, ..h };
    let mut run = fused(shape);
    run.layout = OutputLayout::Heads(HeadSplit::new(&shape, 11, 3, 1).unwrap());
    run.opts = ChunkOptions {
        chunk_tokens: Some(33),
        ..Default::default()
    };
    assert_pass(&run.check(&ep, h), "head layout, chunks of 3 sequences");
}

#[test]
fn column_blocks_on_heads_and_w_in_blocks_keep_the_epilogue_fused() {
    // 4 KiB bindings: over d_model 8, at most 128 columns a block, and chunks of a few
    // tokens. W's 256 columns in blocks of 128; 160 in blocks of 96 and 64, on heads of 32
    // (even blocks would be 80 and 80).
    let ep = qwen3(32, 24, Positions::Offset(11));
    for (heads, kv_heads, blocks) in [(4, 2, [(0, 128), (128, 128)]), (3, 1, [(0, 96), (96, 64)])] {
        let shape = QkvShape::new(40, 8, heads * 32, kv_heads * 32, true).unwrap();
        let h = heads_of(heads, kv_heads, 32, 40);
        let mut run = fused(shape);
        run.ctx = small();
        let p = run.projector(&ep, h).unwrap();
        assert_eq!(p.plan().col_blocks, blocks);
        assert!(p.plan().chunks() > 1, "{:?}", p.plan());
        assert_pass(
            &run.check(&ep, h),
            &format!("column blocks {blocks:?} and chunks"),
        );
    }
    // Q8_0 and Q4_0 blocks along d_model: d_model 64, the kernel dequantizing as it stages.
    let (shape, h) = heads_of_32(77, 2, 1);
    let shape = QkvShape {
        d_model: 64,
        ..shape
    };
    for f in [BlockFormat::Q8_0, BlockFormat::Q4_0] {
        let mut run = fused(shape);
        run.w_formats = Some([WeightType::Blocks(f); 3]);
        let ep = qwen3(32, 32, Positions::Offset(5));
        assert_pass(&run.check(&ep, h), &format!("W in {f:?}"));
    }
}

#[test]
fn the_pass_takes_over_where_the_tile_cannot_hold_a_head_or_the_caller_asks() {
    let pass = |shape| Run {
        fused: Some(false),
        ..Run::new(shape, Kernel::Blocktile)
    };
    // The check passes, and the projector says why it runs a pass.
    let check = |run: &Run, ep: &Epilogue, h: Heads, why: &str| {
        let plan = run.projector(ep, h).unwrap().epilogue_plan().unwrap();
        assert!(plan.contains(why), "{plan}");
        assert_pass(&run.check(ep, h), why);
    };
    // Heads of 48 straddle the tile's 128 columns.
    let shape = QkvShape::new(40, 45, 96, 48, true).unwrap();
    let ep = qwen3(48, 48, Positions::Offset(2));
    let why = "heads of 48 straddle blocktile's tiles of 128 columns";
    check(&pass(shape), &ep, heads_of(2, 1, 48, 40), why);
    // A norm over the whole width needs the whole row.
    let (shape, h) = heads_of_32(40, 3, 1);
    let width = Epilogue {
        qk_norm: Some(QkNorm {
            scope: NormScope::Width,
            eps: 1e-5,
            q_weight: weights(96, 3),
            k_weight: weights(32, 4),
            plus_one: false,
        }),
        ..qwen3(32, 32, Positions::Offset(2))
    };
    check(&pass(shape), &width, h, "the norm spans the whole width");
    // Column blocks of 20 over d_model 45 (4 KiB bindings) cut heads of 32.
    let mut run = pass(shape);
    run.ctx = small();
    let ep = qwen3(32, 32, Positions::Offset(2));
    check(&run, &ep, h, "cut heads of 32");
    // Asked for the pass, to compare.
    let mut run = pass(shape);
    run.opts.qk_f32 = true;
    check(&run, &ep, h, "asked for");
    // And a kernel without a fused store.
    let run = Run {
        fused: Some(false),
        ..Run::new(shape, Kernel::Tiled)
    };
    check(&run, &ep, h, "kernel tiled has no store that applies it");
}
