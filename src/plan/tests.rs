//! The plan's unit tests: chunk sizes and column blocks against lowered limits.

use super::*;
use crate::element::ElementType;
use crate::kernels::{Kernel, KernelConfig, KernelSpec};

fn limits(binding: u64, groups: u32, tex: u32) -> wgpu::Limits {
    wgpu::Limits {
        max_storage_buffer_binding_size: binding,
        max_buffer_size: 1 << 40,
        max_compute_workgroups_per_dimension: groups,
        max_texture_dimension_2d: tex,
        ..wgpu::Limits::default()
    }
}

/// The default configuration of `kernel` (every variant but `coopmat` has one).
fn spec(kernel: Kernel) -> KernelSpec {
    KernelSpec::try_from(kernel).unwrap()
}

fn shape(tokens: u32, d: u32, q: u32, kv: u32) -> QkvShape {
    QkvShape::new(tokens, d, q, kv, false).unwrap()
}

#[test]
fn chunks_cover_every_row_once() {
    let s = shape(1000, 8, 8, 8);
    for chunk in [1, 7, 250, 999, 1000] {
        let opts = ChunkOptions {
            chunk_tokens: Some(chunk),
            ..Default::default()
        };
        let p = plan(
            &limits(1 << 20, 65535, 8192),
            &s,
            &spec(Kernel::Naive),
            OutputLayout::Tokens,
            &opts,
        )
        .unwrap();
        let mut next = 0;
        for i in 0..p.chunks() {
            let r = p.chunk(i);
            assert_eq!(r.start, next);
            assert!(!r.is_empty() && r.len() as u32 <= chunk);
            next = r.end;
        }
        assert_eq!(next, 1000);
    }
}

#[test]
fn binding_limit_bounds_chunks_and_splits_columns() {
    // 4 KiB bindings: X rows of 64 f32 = 256 B -> 16 rows; Q of 100 columns -> 10 rows.
    let s = shape(95, 64, 100, 30);
    let p = plan(
        &limits(4096, 65535, 8192),
        &s,
        &spec(Kernel::Naive),
        OutputLayout::Tokens,
        &ChunkOptions::default(),
    )
    .unwrap();
    assert_eq!(p.chunk_tokens, 10);
    // W is 64 x 160 f32 = 40 KiB: blocks of at most 4096 / 256 = 16 columns.
    assert!(p.col_blocks.len() >= 10);
    let mut next = 0;
    for &(c0, n) in &p.col_blocks {
        assert_eq!(c0, next);
        assert!(n <= 16 && n > 0);
        next += n;
    }
    assert_eq!(next, 160);
}

#[test]
fn column_blocks_fall_on_heads_where_a_block_holds_one() {
    // 4 KiB bindings over d_model 8: at most 128 columns a block. 160 columns in two even
    // blocks would be 80 + 80, cutting heads of 32; on heads they are 96 + 64.
    let s = shape(40, 8, 96, 32);
    let lim = limits(4096, 65535, 8192);
    let blocktile = spec(Kernel::Blocktile);
    let on = |m: u32| {
        let opts = ChunkOptions {
            col_multiple: m,
            ..Default::default()
        };
        plan(&lim, &s, &blocktile, OutputLayout::Tokens, &opts)
            .unwrap()
            .col_blocks
    };
    assert_eq!(on(1), vec![(0, 80), (80, 80)]);
    assert_eq!(on(32), vec![(0, 96), (96, 64)]);
    // Heads of 24: blocks on 24 (lcm with 4) of at most 120 columns: 96 + 64, still 24's
    // multiples but the last.
    assert_eq!(on(24), vec![(0, 96), (96, 64)]);
    // Heads of 256 fit no block of 128: blocks on 4, as without.
    assert_eq!(on(256), on(1));
}

#[test]
fn each_operand_is_counted_in_its_own_type() {
    // coopmat in f32 reads X and W as f16 (2 bytes) and stores Q, K, V in f32 (4).
    let coop = KernelSpec::new("coopmat(tile=16)".parse().unwrap()).unwrap();
    assert_eq!(coop.types.out.size(), 4);
    assert_eq!((coop.types.x.size(), coop.types.w.size()), (2, 2));
    // 32 KiB bindings, d_model 64: W rows (transposed) of 64 f16 = 128 B -> 256 columns
    // a block, three blocks for n_out 768 (f32 would need six); Q of 256 f32 columns =
    // 1 KiB -> 32 tokens (X's rows of 128 B would allow 256).
    let s = shape(1000, 64, 256, 256);
    let lim = limits(32768, 65535, 8192);
    let p = plan(&lim, &s, &coop, OutputLayout::Tokens, &Default::default()).unwrap();
    assert_eq!(p.col_blocks, vec![(0, 256), (256, 256), (512, 256)]);
    assert_eq!(p.chunk_tokens, 32);
    let f16 = coop.clone().with_element(ElementType::F16).unwrap();
    let p = plan(&lim, &s, &f16, OutputLayout::Tokens, &Default::default()).unwrap();
    assert_eq!((p.col_blocks.len(), p.chunk_tokens), (3, 64));
    // The host budget: a token's X in f16 and its 768 outputs in f32, 3200 bytes (3328
    // were X counted in f32): ten tokens in 32000 bytes.
    let opts = ChunkOptions {
        max_chunk_bytes: 32000,
        streaming: false,
        ..Default::default()
    };
    let p = plan(&lim, &s, &coop, OutputLayout::Tokens, &opts).unwrap();
    assert_eq!(p.chunk_tokens, 10, "{}", p.chunk_reason);
}

#[test]
fn a_chunk_that_does_not_fit_is_refused_not_shrunk() {
    let s = shape(95, 64, 100, 30);
    let opts = ChunkOptions {
        chunk_tokens: Some(11),
        ..Default::default()
    };
    let err = plan(
        &limits(4096, 65535, 8192),
        &s,
        &spec(Kernel::Naive),
        OutputLayout::Tokens,
        &opts,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`chunk_tokens` 11") && err.contains("at most 10"),
        "{err}"
    );
}

#[test]
fn a_chunk_of_zero_tokens_is_refused_and_none_is_automatic() {
    let zero = ChunkOptions {
        chunk_tokens: Some(0),
        ..Default::default()
    };
    let said = "invalid input: `chunk_tokens` must be at least 1";
    assert_eq!(zero.check().unwrap_err().to_string(), said);
    let s = shape(95, 64, 100, 30);
    let planned = |opts: &ChunkOptions| {
        let limits = limits(1 << 20, 65535, 8192);
        plan(
            &limits,
            &s,
            &spec(Kernel::Naive),
            OutputLayout::Tokens,
            opts,
        )
    };
    // The plan refuses it in the same words; None picks the size that fits.
    assert_eq!(planned(&zero).unwrap_err().to_string(), said);
    assert!(ChunkOptions::default().check().is_ok());
    assert_eq!(planned(&ChunkOptions::default()).unwrap().chunk_tokens, 95);
}

#[test]
fn one_row_past_the_limit_is_a_device_limit_error() {
    let s = shape(4, 2048, 8, 8);
    let err = plan(
        &limits(4096, 65535, 8192),
        &s,
        &spec(Kernel::Naive),
        OutputLayout::Tokens,
        &ChunkOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::DeviceLimit { .. }), "{err}");
}

#[test]
fn split_k_partial_sums_bound_chunks_and_splits_fit_the_dispatch() {
    // 64 KiB bindings; Q of 100 columns: 163 rows. Partial sums of 8 x 160 columns: 12.
    let s = shape(300, 16, 100, 30);
    let splitk = |n: u32| KernelSpec::new(KernelConfig::new(Kernel::Splitk, &[n])).unwrap();
    let p = plan(
        &limits(1 << 16, 65535, 8192),
        &s,
        &splitk(8),
        OutputLayout::Tokens,
        &ChunkOptions::default(),
    )
    .unwrap();
    assert_eq!(p.chunk_tokens, 12);
    assert!(
        p.chunk_reason.contains("partial sums"),
        "{}",
        p.chunk_reason
    );
    let err = plan(
        &limits(1 << 16, 4, 8192),
        &s,
        &splitk(8),
        OutputLayout::Tokens,
        &ChunkOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("d_model ranges"), "{err}");
}

#[test]
fn texture_kernels_chunk_by_texture_rows() {
    let s = shape(300, 8, 8, 8);
    let p = plan(
        &limits(1 << 20, 65535, 64),
        &s,
        &spec(Kernel::Texture),
        OutputLayout::Tokens,
        &ChunkOptions::default(),
    )
    .unwrap();
    assert_eq!(p.chunk_tokens, 64);
    assert_eq!(p.chunks(), 5);
}
