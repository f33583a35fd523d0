//! Why a kernel may be built without runtime bounds checks (`--unchecked`,
//! `ContextOptions::unchecked_kernels`): for each kernel whose spec says `bounds_proven`, the
//! largest index each of its accesses can reach, derived from the guards in its WGSL, is
//! below the length the host's plan gives that binding, for every block the tuner or a user
//! can name, every subgroup size, and ragged shapes planned under default and lowered limits.
//! If a shader's indexing changes, its formula here must change with it; tests/coopmat.rs
//! then runs the unchecked build on the GPU.
//!
//! `coopmat` (shaders/qkv_coopmat*.wgsl), with KS = params.w_stride (d_model rounded up to 8):
//! - X, W^T (`array<vec4<f16>>`): piece (gr, gk) is read only when gr < tokens (n_cols) and
//!   gk < KS, gk a multiple of 8: vec4s (gr·KS + gk)/4 and the next, at most
//!   ((rows-1)·KS + KS-8)/4 + 1.
//! - `tiles`: rows below BM + BN (p < the pieces of a step), columns below BK, at a base of 0
//!   or SLAB (two stages) or 0 (one); matrices load rows ar + FM·T - 1 < BM and BM + bc +
//!   FN·T - 1 < BM + BN (the subgroup index is clamped below SM·SN), columns kk + T - 1 < BK.
//! - `cs`: subgroup sgc < SM·SN, element e + 7 < T² (e a multiple of 8 below T²).
//! - Q, K, V: rows below the chunk's tokens, fused columns below the block's end, through the
//!   shared `out_index`; the bias below n_out (`bias_at`).
//! - Loops end: their bounds are uniforms and override constants. No workgroup memory is read
//!   before it is written: each step writes every row and every piece of BK it reads.

use qkv_wgpu::kernels::{CoopBlock, CoopParams, KernelSpec, OperandLayout, COOPMAT_MAX_PIECES};
use qkv_wgpu::plan::{ChunkOptions, ChunkPlan};
use qkv_wgpu::{ElementType, HeadSplit, KernelConfig, OutputLayout, QkvShape};

/// Elements of a storage buffer of `elems` elements of `e` as the projector allocates it
/// (whole 16-byte units).
fn buffer_elems(e: ElementType, elems: u64) -> u64 {
    let bytes = (e.buffer_bytes(elems)).div_ceil(16).max(1) * 16;
    bytes / e.size()
}

/// `out_index` of the shaders.
fn out_index(row: u64, c: u64, width: u64, head_dim: u64, seq: Option<u64>) -> u64 {
    match seq {
        None => row * width + c,
        Some(seq) => {
            let (b, s) = (row / seq, row % seq);
            let (h, d) = (c / head_dim, c % head_dim);
            ((b * (width / head_dim) + h) * seq + s) * head_dim + d
        }
    }
}

fn blocks(tile: u32) -> Vec<CoopBlock> {
    let d = CoopBlock::default_for(tile);
    let mut out = qkv_wgpu::tune::coopmat_blocks(tile, false);
    out.extend([
        CoopBlock { stages: 1, ..d },
        CoopBlock { bk: 16, ..d },
        CoopBlock {
            bm: 4 * tile,
            bn: d.wn,
            bk: 16,
            ..d
        },
        CoopBlock {
            bm: 16 * tile,
            bn: 8 * tile,
            wn: 2 * tile,
            bk: 64,
            stages: 1,
            ..d
        },
    ]);
    out
}

fn check(spec: &KernelSpec, plan: &ChunkPlan, sgs: u32) {
    let Some(CoopParams { tile, block: b, .. }) = CoopParams::of(&spec.config) else {
        panic!("not coopmat: {spec}");
    };
    assert_eq!(spec.operands, OperandLayout::KMajor);
    let what = format!("{spec} on {:?}, subgroups of {sgs}", plan);
    let shape = plan.shape;
    let (t, fm, fn_) = (tile as u64, 4u64, (b.wn / tile) as u64);
    let (sm, sn) = ((b.bm / b.wm) as u64, (b.bn / b.wn) as u64);
    let (bm, bn, bk) = (sm * fm * t, sn * fn_ * t, b.bk as u64);
    assert_eq!((bm, bn), (b.bm as u64, b.bn as u64), "{what}");
    let xs = bk + 8;
    let slab = (bm + bn) * xs;
    let stages = b.stages as u64;
    let tiles_len = stages * slab;
    let ks = spec.x_stride(shape.d_model) as u64;
    assert!(ks >= shape.d_model as u64 && ks.is_multiple_of(8), "{what}");
    let f16 = ElementType::F16;
    // The shader's X and W are arrays of vec4<f16>, whatever the run's type.
    assert_eq!((spec.types.x, spec.types.w), (f16, f16), "{what}");
    let rows = plan.chunk_tokens as u64;
    // X: the chunk buffer, read by the chunk's rows (any chunk has at most chunk_tokens).
    let x_vec4s = buffer_elems(f16, rows * ks) / 4;
    assert!(((rows - 1) * ks + ks - 8) / 4 + 1 < x_vec4s, "X: {what}");
    for &(c0, n) in &plan.col_blocks {
        let n = n as u64;
        assert_eq!(spec.w_len(shape.d_model, n as u32), n * ks);
        let w_vec4s = buffer_elems(f16, n * ks) / 4;
        assert!(((n - 1) * ks + ks - 8) / 4 + 1 < w_vec4s, "W: {what}");
        // Outputs: every (row, column) the epilogue writes.
        let (seq, q_hd, kv_hd) = match plan.layout {
            OutputLayout::Tokens => (None, shape.q_width, shape.kv_width),
            OutputLayout::Heads(h) => (
                Some(h.seq_len as u64),
                h.q_head_dim(&shape),
                h.kv_head_dim(&shape),
            ),
        };
        let (qw, kvw) = (shape.q_width as u64, shape.kv_width as u64);
        let elem = spec.types.out;
        for col in [c0 as u64, c0 as u64 + n - 1] {
            for row in [0, rows - 1] {
                let (len, i) = if col < qw {
                    (rows * qw, out_index(row, col, qw, q_hd as u64, seq))
                } else if col < qw + kvw {
                    (rows * kvw, out_index(row, col - qw, kvw, kv_hd as u64, seq))
                } else {
                    (
                        rows * kvw,
                        out_index(row, col - qw - kvw, kvw, kv_hd as u64, seq),
                    )
                };
                assert!(i < buffer_elems(elem, len), "output: {what}");
            }
            assert!(col < shape.n_out() as u64, "bias: {what}");
        }
    }
    // Pieces: within what the shader holds (the host refuses a block that needs more: below).
    let wg = sm * sn * sgs as u64;
    let (xp, wp) = ((bm * bk / 8).div_ceil(wg), (bn * bk / 8).div_ceil(wg));
    assert!(xp.max(wp) <= COOPMAT_MAX_PIECES as u64, "pieces: {what}");
    // tiles: stores and matrix loads.
    let base = if stages == 2 { slab } else { 0 };
    assert!(
        base + (bm + bn - 1) * xs + (bk - 8) + 7 < tiles_len,
        "stores: {what}"
    );
    let ar = (sm - 1) * fm * t;
    let bc = (sn - 1) * fn_ * t;
    let a_last = base + (ar + fm * t - 1) * xs + (bk - t) + (t - 1);
    let b_last = base + (bm + bc + fn_ * t - 1) * xs + (bk - t) + (t - 1);
    assert!(ar + fm * t <= bm && bm + bc + fn_ * t <= bm + bn, "{what}");
    assert!(a_last < tiles_len && b_last < tiles_len, "loads: {what}");
    // cs: the epilogue.
    let cs_len = sm * sn * t * t;
    assert!(
        (sm * sn - 1) * t * t + (t * t - 8) + 7 < cs_len,
        "cs: {what}"
    );
    // Every row and column a matrix reads is one a step writes.
    assert!(
        xp * wg >= bm * bk / 8 && wp * wg >= bn * bk / 8,
        "coverage: {what}"
    );
}

#[test]
fn coopmat_stays_in_bounds_for_every_block_subgroup_size_and_shape() {
    let limits = [
        wgpu::Limits {
            max_storage_buffer_binding_size: 1 << 30,
            max_buffer_size: 1 << 30,
            max_compute_workgroups_per_dimension: 65535,
            ..wgpu::Limits::default()
        },
        wgpu::Limits {
            max_storage_buffer_binding_size: 4 * 1024,
            max_compute_workgroups_per_dimension: 16,
            ..wgpu::Limits::default()
        },
    ];
    let shapes = [
        (1, 1, 1, 1, false),
        (77, 45, 24, 10, true),
        (130, 37, 33, 17, true),
        (1000, 768, 768, 768, true),
        (513, 4096, 4096, 1024, false),
        (15, 19, 24, 6, true),
    ];
    let mut checked = 0;
    for tile in [8, 16] {
        for f32_acc in [true, false] {
            for block in blocks(tile) {
                let config = KernelConfig::coopmat(tile, f32_acc, block);
                for element in ElementType::ALL {
                    let spec = KernelSpec::new(config)
                        .and_then(|s| s.with_element(element))
                        .unwrap();
                    assert!(spec.bounds_proven, "{spec}");
                    for &(t, d, q, kv, bias) in &shapes {
                        let shape = QkvShape::new(t, d, q, kv, bias).unwrap();
                        let mut layouts = vec![OutputLayout::Tokens];
                        if (t, q, kv) == (15, 24, 6) {
                            layouts.push(OutputLayout::Heads(
                                HeadSplit::new(&shape, 5, 4, 1).unwrap(),
                            ));
                        }
                        for l in &limits {
                            for &layout in &layouts {
                                let Ok(plan) = ChunkPlan::new(
                                    l,
                                    &shape,
                                    &spec,
                                    layout,
                                    &ChunkOptions::default(),
                                ) else {
                                    continue;
                                };
                                for sgs in [4, 8, 16, 32, 64] {
                                    let mut s = summary_with_coop();
                                    s.subgroup_size = (sgs, sgs);
                                    s.cooperative_matrix =
                                        vec![qkv_wgpu::adapter::CoopMatrix::f16_inputs(
                                            tile, f32_acc,
                                        )];
                                    s.max_compute_workgroup_storage_size = 1 << 20;
                                    if spec.unsupported_on(&s).is_some() {
                                        // Refused: too many invocations or pieces.
                                        continue;
                                    }
                                    check(&spec, &plan, sgs);
                                    checked += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn only_proven_kernels_are_marked() {
    for k in qkv_wgpu::Kernel::ALL {
        let spec =
            KernelSpec::new(KernelConfig::from(k).for_adapter(&summary_with_coop())).unwrap();
        assert_eq!(
            spec.bounds_proven,
            k == qkv_wgpu::Kernel::Coopmat,
            "{k}: give it a bounds test here before marking it"
        );
    }
}

fn summary_with_coop() -> qkv_wgpu::AdapterSummary {
    qkv_wgpu::AdapterSummary {
        max_compute_workgroup_storage_size: 49152,
        ..qkv_wgpu::AdapterSummary::described_gpu(&[(16, true)])
    }
}
