//! The cooperative-matrix kernel, `coopmat`. Its lane (`scripts/coopmat_lane.sh`: Mesa 26's
//! lavapipe in a Debian sid root, `QKV_COOPMAT_LANE=1`) must offer cooperative matrices:
//! there every test fails, never skips, without them. Elsewhere (Debian 12's lavapipe has
//! none) they check that the kernel is refused by name, and run whatever the adapter offers.
//!
//! X and W are read as f16: the reference is computed from the inputs rounded to the run's
//! type and then to f16, as the GPU read them; the tolerance is the f32 accumulation's (the
//! f16 accumulator's, 2^13 wider, for `acc=16`) plus the final rounding to the output type.

mod common;

use common::{assert_pass, ctx};
use qkv_wgpu::kernels::{CoopBlock, CoopParams};
use qkv_wgpu::plan::ChunkOptions;
use qkv_wgpu::{
    random_inputs, reference, ContextOptions, ElementType, FusedWeights, GpuContext, HeadSplit,
    Kernel, KernelConfig, KernelSpec, OutputLayout, Projection, Projector, QkvReport, QkvShape,
    Tolerance,
};
use std::sync::OnceLock;

/// The `coopmat` configurations `ctx` runs, each tile and accumulator with a small block
/// (one subgroup of 4 x 2 matrices, steps of 16, two stages: the default blocks' 128-row
/// workgroups would spend the CPU driver's time on the padding of these small shapes; they
/// run in `every_block_...` and `the_worked_example_is_exact`); in the lane, at least one, or
/// the test fails.
fn configs(ctx: &GpuContext) -> Vec<KernelConfig> {
    let s = &ctx.summary;
    let all: Vec<KernelConfig> = [(8, true), (8, false), (16, true), (16, false)]
        .into_iter()
        .map(|(tile, f32_acc)| KernelConfig::coopmat(tile, f32_acc, small_block(tile)))
        .filter(|c| c.unsupported_on(s).is_none())
        .collect();
    if std::env::var_os("QKV_COOPMAT_LANE").is_some() {
        assert!(
            !all.is_empty(),
            "the cooperative-matrix lane needs an adapter with cooperative matrices \
             (VK_KHR_cooperative_matrix, Mesa >= 25's lavapipe); '{}' ({}) offers {:?}",
            s.name,
            s.driver,
            s.cooperative_matrix
        );
    } else if all.is_empty() {
        let why = KernelConfig::from(Kernel::Coopmat)
            .unsupported_on(s)
            .expect("refused");
        assert!(
            why.contains("cooperative matrices") || why.contains("SHADER_F16"),
            "{why}"
        );
        let shape = QkvShape::new(4, 8, 8, 8, false).unwrap();
        let err = match Projector::new(ctx, shape, Kernel::Coopmat) {
            Ok(_) => panic!("coopmat ran on '{}', which offers none", s.name),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("coopmat"), "{err}");
    }
    all
}

/// One subgroup of 4 x 2 `tile` x `tile` matrices, steps of 16, two stages. (On lavapipe a
/// pipeline of the 4 x 2 source compiles in about 20 s, of the 4 x 4 one in about 50 s:
/// Mesa expands every cooperative-matrix multiply into scalar code.)
fn small_block(tile: u32) -> CoopBlock {
    CoopBlock {
        bm: 4 * tile,
        bn: 2 * tile,
        wm: 4 * tile,
        wn: 2 * tile,
        bk: 16,
        stages: 2,
    }
}

/// `configs` with each tile's default block instead.
fn defaults(ctx: &GpuContext) -> Vec<KernelConfig> {
    configs(ctx)
        .into_iter()
        .map(|c| {
            let p = CoopParams::of(&c).unwrap();
            KernelConfig::coopmat(p.tile, p.f32_accumulator, CoopBlock::default_for(p.tile))
        })
        .collect()
}

/// Whether `config` accumulates in f32.
fn f32_accumulator(config: &KernelConfig) -> bool {
    CoopParams::of(config).is_some_and(|p| p.f32_accumulator)
}

/// The storage types a test runs `config` in: all three with an f32 accumulator, f16 with an
/// f16 one (the accumulator does not see the storage type).
fn elements_for(config: KernelConfig) -> &'static [ElementType] {
    if CoopParams::of(&config).unwrap().f32_accumulator {
        &ELEMENTS
    } else {
        &ELEMENTS[..1]
    }
}

const ELEMENTS: [ElementType; 3] = [ElementType::F16, ElementType::F32, ElementType::Bf16];

/// Seeded inputs through `config` stored as `element`, checked against the reference of
/// the inputs as the GPU read them.
fn check_coop(
    ctx: &GpuContext,
    shape: QkvShape,
    config: KernelConfig,
    element: ElementType,
    (layout, opts): (OutputLayout, ChunkOptions),
    seed: u64,
) -> (QkvReport, Projector<'_>) {
    let (x, w) = random_inputs(&shape, seed);
    let mut p = Projector::typed(ctx, shape, config, element, layout, &opts)
        .unwrap_or_else(|e| panic!("{config} in {element} on {shape}: {e}"));
    p.set_weights(&w).unwrap();
    let out = p.run(&x).unwrap();
    let x: Vec<f32> = x
        .iter()
        .map(|&v| ElementType::F16.round(element.round(v)))
        .collect();
    let w = w.rounded_for(element, ElementType::F16);
    let r = reference(&shape, &x, &w);
    let r = match layout {
        OutputLayout::Tokens => r,
        OutputLayout::Heads(h) => r.map(
            |m| layout.arrange(m, shape.tokens, shape.q_width, h.heads),
            |m| layout.arrange(m, shape.tokens, shape.kv_width, h.kv_heads),
        ),
    };
    let tol = tolerance(&shape, config, element);
    let report = QkvReport::new(
        (&out.q, &out.k, &out.v),
        &r,
        shape.q_width,
        shape.kv_width,
        tol,
    );
    (report, p)
}

fn tolerance(shape: &QkvShape, config: KernelConfig, element: ElementType) -> Tolerance {
    let spec = KernelSpec::new(config)
        .and_then(|s| s.with_element(element))
        .unwrap();
    Tolerance::for_kernel(shape.d_model, &spec)
}

#[test]
fn ragged_shapes_with_and_without_bias_in_both_layouts_and_every_type() {
    for config in configs(ctx()) {
        // Tokens, d_model and widths off every tile (8, 16, 32, 64), odd widths and d_model.
        for (i, &(t, d, q, kv)) in [
            (1, 1, 1, 1),
            (77, 45, 24, 10),
            (130, 37, 33, 17),
            (65, 100, 40, 20),
        ]
        .iter()
        .enumerate()
        {
            for bias in [false, true] {
                let shape = QkvShape::new(t, d, q, kv, bias).unwrap();
                // Each (type, bias) is a pipeline of its own (seconds to compile on a CPU
                // driver): the f16 accumulator in f16 storage only.
                for &element in elements_for(config) {
                    let (r, _) = check_coop(
                        ctx(),
                        shape,
                        config,
                        element,
                        (OutputLayout::Tokens, ChunkOptions::default()),
                        10 + i as u64,
                    );
                    assert_pass(&r, &format!("{config} in {element} on {shape}"));
                }
            }
        }
        // The head layout: 3 sequences of 5 tokens, Q 4 heads of 6, K/V 1 head of 6.
        let shape = QkvShape::new(15, 19, 24, 6, true).unwrap();
        let heads = OutputLayout::Heads(HeadSplit::new(&shape, 5, 4, 1).unwrap());
        for &element in elements_for(config) {
            let (r, _) = check_coop(
                ctx(),
                shape,
                config,
                element,
                (heads, ChunkOptions::default()),
                5,
            );
            assert_pass(&r, &format!("{config} in {element}, head layout"));
        }
    }
}

#[test]
fn every_block_shape_fragment_grid_step_and_stage_count() {
    // The block's knobs are override constants of one source (the fragment grid picks the
    // source): each reshapes the staging, the piece loops and the epilogue. The accumulator
    // type changes none of that (the other tests run both with the default block). Blocks
    // this adapter refuses (workgroup memory, pieces per invocation) are named and skipped;
    // most must run.
    for config in defaults(ctx()).into_iter().filter(f32_accumulator) {
        let t = CoopParams::of(&config).unwrap().tile;
        let d = CoopBlock::default_for(t);
        // Both sources, one and two stages, steps of 16, 32 and 64, square and oblong
        // blocks, 4 to 8 subgroups (each a pipeline: seconds to compile on a CPU driver).
        let blocks = [
            d,
            CoopBlock {
                bm: 8 * t,
                bn: 8 * t,
                wn: 4 * t,
                stages: 2,
                ..d
            },
            CoopBlock {
                bm: 8 * t,
                bn: 8 * t,
                wn: 2 * t,
                bk: 64,
                stages: 1,
                ..d
            },
            CoopBlock { bk: 16, ..d },
        ];
        let (mut ran, mut refused) = (0, Vec::new());
        for block in blocks {
            let c = KernelConfig::coopmat(t, true, block);
            if let Some(why) = c.unsupported_on(&ctx().summary) {
                refused.push(why);
                continue;
            }
            ran += 1;
            for (i, &(tokens, d, q, kv, bias)) in [
                (130, 37, 33, 17, true),
                (65, 100, 40, 20, true),
                (3, 200, 8, 8, true),
            ]
            .iter()
            .enumerate()
            {
                let shape = QkvShape::new(tokens, d, q, kv, bias).unwrap();
                let (r, _) = check_coop(
                    ctx(),
                    shape,
                    c,
                    ElementType::F16,
                    (OutputLayout::Tokens, ChunkOptions::default()),
                    20 + i as u64,
                );
                assert_pass(&r, &format!("{c} on {shape}"));
            }
        }
        assert!(
            ran >= 3,
            "{config}: {ran} blocks ran; refused: {refused:#?}"
        );
        for why in &refused {
            assert!(
                why.contains("workgroup memory") || why.contains("pieces per invocation"),
                "{why}"
            );
        }
    }
}

#[test]
fn a_block_past_the_devices_workgroup_memory_is_refused_by_name() {
    let mut summary = ctx().summary.clone();
    for config in configs(ctx()).into_iter().chain(defaults(ctx())) {
        let p = CoopParams::of(&config).unwrap();
        let needs = p.block.workgroup_bytes(p.tile, p.f32_accumulator);
        summary.max_compute_workgroup_storage_size = needs - 1;
        let why = config.unsupported_on(&summary).expect("refused");
        assert!(
            why.contains("workgroup memory") && why.contains(&needs.to_string()),
            "{why}"
        );
        summary.max_compute_workgroup_storage_size = needs;
        assert_eq!(config.unsupported_on(&summary), None);
    }
}

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
                    max_storage_buffer_binding_size: 4 * 1024,
                    max_compute_workgroups_per_dimension: 16,
                    // The default blocks stage two steps (22.5 KiB for 8x8 matrices).
                    max_compute_workgroup_storage_size: 32 * 1024,
                    ..wgpu::Limits::default()
                }),
                ..Default::default()
            },
        )
        .expect("a context with lowered limits")
    })
}

#[test]
fn lowered_limits_chunk_tokens_and_split_columns() {
    // W 41 x 103 halves = 8,446 B > 4 KiB: column blocks; 101 tokens in several chunks.
    let shape = QkvShape::new(101, 41, 77, 13, true).unwrap();
    for config in configs(small()) {
        for element in ELEMENTS {
            let (r, p) = check_coop(
                small(),
                shape,
                config,
                element,
                (OutputLayout::Tokens, ChunkOptions::default()),
                3,
            );
            assert_pass(&r, &format!("{config} in {element}, plan {:?}", p.plan()));
            assert!(p.plan().chunks() > 1, "{config}: not chunked");
            assert!(p.plan().col_blocks.len() > 1, "{config}: W not split");
        }
    }
}

#[test]
fn the_worked_example_is_exact() {
    let shape = QkvShape::new(1, 2, 2, 2, false).unwrap();
    let x = [2.0f32, 3.0];
    let (wq, wk, wv) = (
        [1.0f32, 10.0, 0.0, -1.0],
        [0.0f32, 1.0, 1.0, 0.0],
        [-1.0f32, 0.0, 1.0, 2.0],
    );
    let p = |w| Projection {
        w,
        width: 2,
        bias: None,
    };
    let weights = FusedWeights::fuse(2, p(&wq), p(&wk), p(&wv)).unwrap();
    // Every type with the small blocks; the default blocks (a pipeline each, long to compile
    // on a CPU driver) in f16, the type the tuner runs them in.
    let runs = configs(ctx())
        .into_iter()
        .flat_map(|c| elements_for(c).iter().map(move |&e| (c, e)))
        .chain(defaults(ctx()).into_iter().map(|c| (c, ElementType::F16)));
    for (config, element) in runs {
        let mut projector = Projector::typed(
            ctx(),
            shape,
            config,
            element,
            OutputLayout::Tokens,
            &ChunkOptions::default(),
        )
        .unwrap();
        projector.set_weights(&weights).unwrap();
        let out = projector.run(&x).unwrap();
        assert_eq!(
            (out.q.as_slice(), out.k.as_slice(), out.v.as_slice()),
            (
                [2.0, 17.0].as_slice(),
                [3.0, 2.0].as_slice(),
                [1.0, 6.0].as_slice()
            ),
            "{config} in {element}"
        );
    }
}

#[test]
fn unwritten_and_wrong_elements_fail() {
    let shape = QkvShape::new(9, 5, 7, 3, true).unwrap();
    for config in configs(ctx()) {
        let (report, mut p) = check_coop(
            ctx(),
            shape,
            config,
            ElementType::F16,
            (OutputLayout::Tokens, ChunkOptions::default()),
            3,
        );
        assert_pass(&report, &config.to_string());
        p.poison_outputs().unwrap();
        let [q, k, v] = p.read_outputs().unwrap();
        assert!(
            q.iter().chain(&k).chain(&v).all(|e| e.is_nan()),
            "{config}: not NaN"
        );
        let (x, w) = random_inputs(&shape, 4);
        p.set_weights(&w).unwrap();
        let mut out = p.run(&x).unwrap();
        let x: Vec<f32> = x.iter().map(|&v| ElementType::F16.round(v)).collect();
        let w = w.rounded(ElementType::F16);
        let r = reference(&shape, &x, &w);
        let tol = tolerance(&shape, config, ElementType::F16);
        assert_pass(
            &QkvReport::new((&out.q, &out.k, &out.v), &r, 7, 3, tol),
            "clean",
        );
        out.k[3 * 4 + 1] += 0.5;
        out.q[13] = f32::NAN;
        let bad = QkvReport::new((&out.q, &out.k, &out.v), &r, 7, 3, tol);
        assert_eq!(
            (bad.q.mismatches, bad.k.mismatches, bad.v.mismatches),
            (1, 1, 0),
            "{config}"
        );
    }
}

#[test]
fn inputs_past_f16s_range_are_refused_by_name() {
    let shape = QkvShape::new(3, 4, 4, 4, false).unwrap();
    for config in configs(ctx()) {
        let (mut x, w) = random_inputs(&shape, 1);
        x[6] = 70000.0; // row 1, column 2
        let mut p = Projector::typed(
            ctx(),
            shape,
            config,
            ElementType::F32,
            OutputLayout::Tokens,
            &ChunkOptions::default(),
        )
        .unwrap();
        p.set_weights(&w).unwrap();
        let err = p.run(&x).unwrap_err().to_string();
        assert!(
            err.contains("X row 1, column 2") && err.contains("f16"),
            "{err}"
        );
        let mut big = w.clone();
        big.w.as_f32_mut().unwrap()[5] = 1e6;
        let err = p.set_weights(&big).unwrap_err().to_string();
        assert!(err.contains("f16"), "{err}");
        // 65500 fits f16, but a bf16 run rounds it to 65536 first: refused there only.
        let mut edge = w.clone();
        edge.w.as_f32_mut().unwrap()[5] = 65500.0;
        let layout = (OutputLayout::Tokens, ChunkOptions::default());
        let mut b =
            Projector::typed(ctx(), shape, config, ElementType::Bf16, layout.0, &layout.1).unwrap();
        let err = b.set_weights(&edge).unwrap_err().to_string();
        assert!(
            err.contains("65536") && err.contains("f16's range"),
            "{err}"
        );
        let mut h =
            Projector::typed(ctx(), shape, config, ElementType::F16, layout.0, &layout.1).unwrap();
        h.set_weights(&edge).unwrap();
    }
}

#[test]
fn the_tuner_tries_coopmat_for_f16_and_rechecks_a_cached_choice() {
    let offered = defaults(ctx());
    let f32_acc: Vec<_> = offered.iter().copied().filter(f32_accumulator).collect();
    let cands = qkv_wgpu::tune::candidates(ctx(), ElementType::F16, None);
    for c in &f32_acc {
        assert!(cands.contains(c), "{c} not among {cands:?}");
    }
    // Never for f32 or bf16 runs: it would round their inputs to f16.
    for e in [ElementType::F32, ElementType::Bf16] {
        assert!(!qkv_wgpu::tune::candidates(ctx(), e, None)
            .iter()
            .any(|c| c.kernel == Kernel::Coopmat));
    }
    if f32_acc.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = qkv_wgpu::tune::TuneOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        element: ElementType::F16,
        ..Default::default()
    };
    let shape = QkvShape::new(40, 24, 16, 8, true).unwrap();
    let choice = qkv_wgpu::tune::choose(ctx(), &shape, &opts).unwrap();
    for c in &f32_acc {
        let trial = choice.trials.iter().find(|t| t.config == c.to_string());
        let trial = trial.unwrap_or_else(|| panic!("{c} not tried: {:?}", choice.trials));
        assert_eq!(trial.status, "ok", "{c}: {trial:?}");
    }
    // The cached choice (whichever won) is re-checked: with a tolerance nothing meets, it is
    // discarded.
    let strict = qkv_wgpu::tune::TuneOptions {
        tolerance: Some(Tolerance::single(0.0, 0.0, 0.0)),
        ..opts
    };
    let err = qkv_wgpu::tune::choose(ctx(), &shape, &strict)
        .unwrap_err()
        .to_string();
    assert!(err.contains("the cached choice was discarded"), "{err}");
}

#[test]
fn the_unchecked_build_passes_the_same_checks() {
    // Built with create_shader_module_trusted and no runtime checks (tests/unchecked.rs says
    // why that is safe for coopmat): the same ragged shapes, chunks and column blocks pass.
    let unchecked = GpuContext::with_options(
        &qkv_wgpu::AdapterFilter {
            name: Some(ctx().summary.name.clone()),
            ..qkv_wgpu::AdapterFilter::from_env().unwrap()
        },
        &ContextOptions {
            unchecked_kernels: true,
            ..Default::default()
        },
    )
    .expect("a context");
    // Kernels without a bounds proof stay checked.
    let texture = KernelSpec::new("texture(wg=32)".parse().unwrap()).unwrap();
    assert!(!unchecked.runs_unchecked(&texture));
    let defaults_f32_acc = defaults(&unchecked).into_iter().filter(f32_accumulator);
    for config in configs(&unchecked).into_iter().chain(defaults_f32_acc) {
        let spec = KernelSpec::new(config).unwrap();
        assert!(unchecked.runs_unchecked(&spec) && !ctx().runs_unchecked(&spec));
        for (i, &(t, d, q, kv)) in [(130, 37, 33, 17), (1, 1, 1, 1)].iter().enumerate() {
            let shape = QkvShape::new(t, d, q, kv, true).unwrap();
            let (r, _) = check_coop(
                &unchecked,
                shape,
                config,
                ElementType::F16,
                (OutputLayout::Tokens, ChunkOptions::default()),
                30 + i as u64,
            );
            assert_pass(&r, &format!("unchecked {config} on {shape}"));
        }
    }
}

#[test]
fn the_pipeline_converts_and_pads_x_as_the_sequential_path_does() {
    // d_model 41: X's rows padded to 48 on the GPU; f32 and bf16 runs read f16, so the
    // pipeline's producer converts and pads each chunk into the mapped staging buffer.
    // 101 tokens in chunks of 16: 7 chunks, the last of 5.
    let shape = QkvShape::new(101, 41, 24, 8, true).unwrap();
    let (x, w) = random_inputs(&shape, 12);
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    for config in configs(ctx()).into_iter().take(1) {
        for element in ELEMENTS {
            let run = |streaming| {
                let opts = ChunkOptions {
                    chunk_tokens: Some(16),
                    streaming,
                    ..Default::default()
                };
                let mut p =
                    Projector::typed(ctx(), shape, config, element, OutputLayout::Tokens, &opts)
                        .unwrap();
                p.set_weights(&w).unwrap();
                p.run(&x).unwrap()
            };
            let (piped, sequential) = (run(true), run(false));
            let what = format!("{config} in {element}");
            assert!(piped.timings.threaded, "{what}");
            assert_eq!(bits(&piped.q), bits(&sequential.q), "{what}: Q");
            assert_eq!(bits(&piped.k), bits(&sequential.k), "{what}: K");
            assert_eq!(bits(&piped.v), bits(&sequential.v), "{what}: V");
        }
    }
}
