//! Batches split into token chunks and column blocks: small device limits requested on
//! purpose so that every split runs on small shapes on the software adapter, and every row is
//! compared with the CPU reference. Chunk boundaries: a ragged last chunk, chunks of one
//! token, a batch that is a multiple of the chunk; streamed and one-after-another runs.

mod common;

use common::{assert_pass, ctx, tolerance};
use qkv_wgpu::plan::ChunkOptions;
use qkv_wgpu::quant::{BlockFormat, WeightType};
use qkv_wgpu::{
    random_inputs, reference, ContextOptions, ElementType, GpuContext, HeadSplit, Kernel,
    KernelConfig, KernelSpec, OutputLayout, Projector, QkvReport, QkvShape,
};
use std::sync::OnceLock;

/// The adapter again, with 16 KiB bindings, 16 workgroups per dimension and 64-texel
/// textures.
fn small() -> &'static GpuContext {
    static SMALL: OnceLock<GpuContext> = OnceLock::new();
    SMALL.get_or_init(|| {
        GpuContext::with_options(
            &qkv_wgpu::AdapterFilter {
                name: Some(ctx().summary.name.clone()),
                ..qkv_wgpu::AdapterFilter::from_env().unwrap()
            },
            &ContextOptions {
                limits: Some(wgpu::Limits {
                    max_storage_buffer_binding_size: 16 * 1024,
                    max_compute_workgroups_per_dimension: 16,
                    max_texture_dimension_2d: 64,
                    ..wgpu::Limits::default()
                }),
                ..Default::default()
            },
        )
        .expect("a context with lowered limits")
    })
}

/// Runs `shape` through `config` on `ctx` chunked as `opts` says, checks every row against
/// the reference, and returns the projector's plan (chunk tokens, column blocks).
fn check_chunked(
    ctx: &GpuContext,
    shape: QkvShape,
    config: KernelConfig,
    opts: ChunkOptions,
    seed: u64,
) -> (u32, usize) {
    let (x, w) = random_inputs(&shape, seed);
    let mut p = Projector::with_options(ctx, shape, config, OutputLayout::Tokens, &opts)
        .unwrap_or_else(|e| panic!("{config} on {shape}: {e}"));
    p.set_weights(&w).unwrap();
    let out = p.run(&x).unwrap();
    assert_eq!(out.timings.chunks, p.plan().chunks());
    let r = reference(&shape, &x, &w);
    let report = QkvReport::new(
        (&out.q, &out.k, &out.v),
        &r,
        shape.q_width,
        shape.kv_width,
        tolerance(&shape),
    );
    assert_pass(
        &report,
        &format!("{config} on {shape}, plan {:?}", p.plan()),
    );
    (p.plan().chunk_tokens, p.plan().col_blocks.len())
}

#[test]
fn lowered_limits_chunk_tokens_and_split_columns_on_every_kernel() {
    // X rows of 40 f32 (160 B) and Q rows of 96 f32 (384 B): 42 tokens per 16 KiB chunk at
    // most; W is 40 x 160 f32 = 25,600 B > 16 KiB, so its columns are split in two. Textures
    // allow 64 rows per chunk. 203 tokens: a ragged last chunk everywhere.
    let shape = QkvShape::new(203, 40, 96, 32, true).unwrap();
    for kernel in common::kernels() {
        let config = KernelConfig::from(kernel);
        if config.unsupported_on(&small().summary).is_some() {
            continue;
        }
        let (chunk, blocks) = check_chunked(small(), shape, config, ChunkOptions::default(), 7);
        assert!(chunk < 203, "{kernel}: not chunked ({chunk})");
        if !kernel.reads_textures() {
            assert!(blocks >= 2, "{kernel}: W was not split ({blocks} blocks)");
        }
    }
}

#[test]
fn texture_kernels_split_columns_past_the_texture_width() {
    // 64-texel textures hold 256 columns of W; n_out = 160 + 2 x 64 = 288 needs two blocks.
    // Every column of both blocks, the bias included, must land where it belongs.
    let shape = QkvShape::new(50, 40, 160, 64, true).unwrap();
    for kernel in [Kernel::Texture, Kernel::SubgroupTexture] {
        let config = KernelConfig::from(kernel);
        if config.unsupported_on(&small().summary).is_some() {
            continue;
        }
        let (_, blocks) = check_chunked(small(), shape, config, ChunkOptions::default(), 9);
        assert!(blocks >= 2, "{kernel}: W was not split ({blocks} blocks)");
    }
}

#[test]
fn w_as_texels_splits_columns_past_the_texture_and_refuses_blocks_that_do_not_fit() {
    // 64-texel textures hold 1 KiB of W as texels: a transposed f32 W of 40-element rows
    // (160 B a column) takes 4 columns a block, so 160 + 2 x 32 columns need 56 blocks.
    let shape = QkvShape::new(3, 40, 160, 32, true).unwrap();
    let config: KernelConfig = "decode(texels=1)".parse().unwrap();
    let (_, blocks) = check_chunked(small(), shape, config, ChunkOptions::default(), 13);
    assert_eq!(blocks, 56, "{config}: W split by the texture's room");
    // W in blocks is kept whole: Q8_0's 224 rows of 68 bytes do not fit, and say why.
    let shape = QkvShape::new(3, 64, 160, 32, true).unwrap();
    let spec = KernelSpec::resolve(config, ElementType::F32, &small().summary)
        .and_then(|s| s.with_w_formats([WeightType::Blocks(BlockFormat::Q8_0); 3]))
        .unwrap();
    let opts = ChunkOptions::default();
    let e = Projector::with_spec(small(), shape, spec, OutputLayout::Tokens, &opts)
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("max_texture_dimension_2d") && e.contains("q8_0"),
        "{e}"
    );
}

#[test]
fn chunk_boundaries_are_exact() {
    let shape = QkvShape::new(96, 24, 20, 12, true).unwrap();
    for (chunk, streaming) in [(1, true), (1, false), (32, true), (48, false), (95, true)] {
        for kernel in [Kernel::Naive, Kernel::Direct, Kernel::Texture] {
            let opts = ChunkOptions {
                chunk_tokens: Some(chunk),
                streaming,
                ..Default::default()
            };
            let (got, _) = check_chunked(ctx(), shape, kernel.into(), opts, 11);
            assert_eq!(got, chunk);
        }
    }
}

#[test]
fn streamed_and_serial_runs_agree_bit_for_bit() {
    let shape = QkvShape::new(150, 33, 17, 9, false).unwrap();
    let (x, w) = random_inputs(&shape, 3);
    let mut outs = Vec::new();
    for streaming in [true, false] {
        let opts = ChunkOptions {
            chunk_tokens: Some(16),
            streaming,
            ..Default::default()
        };
        let mut p =
            Projector::with_options(ctx(), shape, Kernel::Direct, OutputLayout::Tokens, &opts)
                .unwrap();
        assert_eq!(p.streaming(), streaming);
        p.set_weights(&w).unwrap();
        let out = p.run(&x).unwrap();
        assert_eq!(out.timings.chunks, 10);
        assert_eq!(out.timings.streamed, streaming);
        outs.push(out);
    }
    assert_eq!(outs[0].q, outs[1].q);
    assert_eq!(outs[0].k, outs[1].k);
    assert_eq!(outs[0].v, outs[1].v);
}

#[test]
fn head_layout_chunks_hold_whole_sequences() {
    // 6 sequences of 10 tokens; chunks of 20 tokens = 2 sequences.
    let shape = QkvShape::new(60, 16, 16, 8, true).unwrap();
    let heads = HeadSplit::new(&shape, 10, 4, 2).unwrap();
    let (x, w) = random_inputs(&shape, 5);
    let opts = ChunkOptions {
        chunk_tokens: Some(20),
        ..Default::default()
    };
    let mut p = Projector::with_options(
        ctx(),
        shape,
        Kernel::Tiled,
        OutputLayout::Heads(heads),
        &opts,
    )
    .unwrap();
    p.set_weights(&w).unwrap();
    let out = p.run(&x).unwrap();
    let r = reference(&shape, &x, &w);
    let layout = OutputLayout::Heads(heads);
    let report = QkvReport::new(
        (&out.q, &out.k, &out.v),
        &r.map(
            |m| layout.arrange(m, shape.tokens, shape.q_width, heads.heads),
            |m| layout.arrange(m, shape.tokens, shape.kv_width, heads.kv_heads),
        ),
        shape.q_width,
        shape.kv_width,
        tolerance(&shape),
    );
    assert_pass(&report, "head layout in chunks of two sequences");

    // A chunk that would cut a sequence is refused, not rounded.
    let opts = ChunkOptions {
        chunk_tokens: Some(15),
        ..Default::default()
    };
    let err = Projector::with_options(ctx(), shape, Kernel::Tiled, layout, &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("multiple of the sequence length 10"), "{err}");
}

#[test]
fn the_sink_sees_every_row_once_in_order() {
    let shape = QkvShape::new(77, 8, 8, 4, false).unwrap();
    let (x, w) = random_inputs(&shape, 9);
    let opts = ChunkOptions {
        chunk_tokens: Some(10),
        ..Default::default()
    };
    let mut p =
        Projector::with_options(ctx(), shape, Kernel::Naive, OutputLayout::Tokens, &opts).unwrap();
    p.set_weights(&w).unwrap();
    let mut seen = Vec::new();
    let mut progress = Vec::new();
    let t = p
        .stream(
            |rows, mut dst| {
                dst.put_f32(0, &x[rows.start as usize * 8..rows.end as usize * 8])
                    .unwrap();
                Ok(())
            },
            |c| {
                assert_eq!(c.q.len(), c.rows.len() * 8);
                assert_eq!(c.k.len(), c.rows.len() * 4);
                seen.push((c.index, c.rows.clone()));
                Ok(())
            },
            |done| progress.push(done),
        )
        .unwrap();
    assert_eq!(t.chunks, 8);
    let expected: Vec<_> = (0..8u32)
        .map(|i| (i, i * 10..(i * 10 + 10).min(77)))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(progress.last(), Some(&77));

    // A sink error stops the run with that error, and the projector runs again afterwards.
    let err = p
        .stream(
            |_, mut dst| {
                let ones = vec![1.0; dst.len()];
                dst.put_f32(0, &ones).unwrap();
                Ok(())
            },
            |c| {
                if c.index == 3 {
                    Err(qkv_wgpu::Error::Input("disk full".into()))
                } else {
                    Ok(())
                }
            },
            |_| {},
        )
        .unwrap_err();
    assert!(err.to_string().contains("disk full"));
    let out = p.run(&x).unwrap();
    assert!(out.q.iter().all(|v| v.is_finite()));
}
