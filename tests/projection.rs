//! GPU projections against the f64 CPU reference: the worked example, Wq = Wk = Wv, random
//! ragged shapes for every kernel (proptest), repeated runs on one projector, and the
//! errors a projector gives for misuse and for shapes past the device's limits.

mod common;

use common::{assert_pass, check, ctx, tolerance};
use proptest::prelude::*;
use qkv_wgpu::plan::ChunkOptions;
use qkv_wgpu::{
    explain, random_inputs, reference, ContextOptions, Error, FusedWeights, GpuContext, Kernel,
    KernelConfig, KernelTimer, OutputLayout, Projection, Projector, QkvReport, QkvShape,
};

#[test]
fn worked_example_is_exact_on_every_kernel() {
    for kernel in common::kernels() {
        let e = explain::explain(ctx(), kernel).unwrap();
        assert_eq!(e.same, [[2.0, 17.0]; 3], "kernel {kernel}");
        assert_eq!(
            e.different,
            [[2.0, 17.0], [3.0, 2.0], [1.0, 6.0]],
            "kernel {kernel}"
        );
        let text = e.render();
        assert!(text.contains("y_0 = 2·1 + 3·0 = 2"), "{text}");
        assert!(text.contains("y_1 = 2·10 + 3·(-1) = 17"), "{text}");
    }
}

#[test]
fn equal_weights_give_equal_q_k_v() {
    let (d, width, tokens) = (37u32, 19u32, 29u32);
    let shape = QkvShape::new(tokens, d, width, width, true).unwrap();
    let (x, random) = random_inputs(&shape, 5);
    let wq: Vec<f32> = random.w.as_f32().unwrap()[..(d * width) as usize].to_vec();
    let b: Vec<f32> = (0..width).map(|i| i as f32 * 0.25 - 2.0).collect();
    let p = Projection {
        w: &wq,
        width,
        bias: Some(&b),
    };
    let weights = FusedWeights::fuse(d, p, p, p).unwrap();
    for kernel in common::kernels() {
        let mut projector = Projector::new(ctx(), shape, kernel).unwrap();
        projector.set_weights(&weights).unwrap();
        let out = projector.run(&x).unwrap();
        // Same arithmetic in the same order for every column: bitwise equal, not just close.
        assert_eq!(out.q, out.k, "kernel {kernel}");
        assert_eq!(out.q, out.v, "kernel {kernel}");
        let r = reference(&shape, &x, &weights);
        let report = QkvReport::new(
            (&out.q, &out.k, &out.v),
            &r,
            width,
            width,
            tolerance(&shape),
        );
        assert_pass(&report, &format!("kernel {kernel}"));
    }
}

#[test]
fn ragged_and_edge_shapes_pass_on_every_kernel() {
    // Sizes around the 16-wide tiles: 1, 15, 16, 17, 33, and grouped K/V narrower than Q.
    let shapes = [
        (1, 1, 1, 1),
        (1, 17, 3, 1),
        (15, 16, 16, 16),
        (16, 15, 17, 5),
        (17, 33, 64, 16),
        (33, 1, 31, 2),
        (70, 100, 96, 32),
    ];
    for kernel in common::kernels() {
        for (i, &(t, d, q, kv)) in shapes.iter().enumerate() {
            for bias in [false, true] {
                let shape = QkvShape::new(t, d, q, kv, bias).unwrap();
                let report = check(shape, kernel, 100 + i as u64);
                assert_pass(&report, &format!("kernel {kernel}, {shape}"));
            }
        }
    }
}

#[test]
fn many_runs_on_one_projector_give_fresh_right_answers() {
    let shape = QkvShape::new(45, 40, 24, 8, true).unwrap();
    for kernel in common::kernels() {
        let mut projector = Projector::new(ctx(), shape, kernel).unwrap();
        let mut previous_q: Option<Vec<f32>> = None;
        for seed in 0..4u64 {
            // New X every run, and new weights on every other run.
            let (x, w) = random_inputs(&shape, 1000 + seed / 2 * 2);
            let (x, _) = if seed % 2 == 1 {
                random_inputs(&shape, 5000 + seed)
            } else {
                (x, w.clone())
            };
            projector.set_weights(&w).unwrap();
            let out = projector.run(&x).unwrap();
            let r = reference(&shape, &x, &w);
            let report = QkvReport::new(
                (&out.q, &out.k, &out.v),
                &r,
                shape.q_width,
                shape.kv_width,
                tolerance(&shape),
            );
            assert_pass(&report, &format!("kernel {kernel}, run {seed}"));
            assert_ne!(
                previous_q.as_ref(),
                Some(&out.q),
                "a run returned stale output"
            );
            previous_q = Some(out.q);
        }
    }
}

#[test]
fn decode_sums_every_column_for_every_row_count_and_split() {
    // One token and a few, d_model from 1 to past the splits, column counts that no
    // workgroup's columns divide (nor, with two columns per invocation, the invocations'); lanes with no k (split past d_model) add nothing.
    let shapes = [
        (1, 45, 24, 8, true),
        (3, 40, 20, 12, false),
        (9, 70, 16, 16, true),
        (4, 1, 8, 4, true),
    ];
    for (t, d, q, kv, bias) in shapes {
        let shape = QkvShape::new(t, d, q, kv, bias).unwrap();
        let configs: [&[u32]; 11] = [
            &[1, 1, 1, 1],
            &[3, 2, 4, 1],
            &[8, 8, 8, 4],
            &[4, 16, 1, 4],
            &[6, 4, 1, 2],
            &[64, 1, 8, 2],
            &[2, 128, 4, 2],
            &[16, 2, 8, 8],
            &[8, 1, 1, 8],
            // W as texels.
            &[3, 2, 4, 1, 1],
            &[8, 1, 1, 8, 1],
        ];
        for v in configs {
            let config = KernelConfig::new(Kernel::Decode, v);
            let report = check(shape, config, 70 + v[1] as u64);
            assert_pass(&report, &format!("{config} on {shape}"));
        }
    }
}

#[test]
fn split_k_sums_every_range_of_d_model_once() {
    // d_model 1, 15, 40 and 70 against ranges of 16-step multiples: more ranges than steps
    // (empty ranges), ragged last ranges, and a range per step; with and without bias.
    let shapes = [
        (5, 1, 8, 4, true),
        (33, 15, 20, 12, false),
        (130, 40, 36, 8, true),
        (17, 70, 16, 16, true),
    ];
    for (t, d, q, kv, bias) in shapes {
        let shape = QkvShape::new(t, d, q, kv, bias).unwrap();
        for splits in [1, 2, 3, 8, 16] {
            let config = KernelConfig::new(Kernel::Splitk, &[splits]);
            let report = check(shape, config, 40 + splits as u64);
            assert_pass(&report, &format!("{config} on {shape}"));
        }
    }
}

#[test]
fn steady_state_kernel_timing_covers_every_chunk_and_leaves_the_projector_usable() {
    // Chunks of 16 tokens over 37: two full chunks and a ragged one of 5, each timed pass
    // dispatching all three.
    let shape = QkvShape::new(37, 24, 20, 12, true).unwrap();
    let opts = ChunkOptions {
        chunk_tokens: Some(16),
        ..Default::default()
    };
    let (x, w) = random_inputs(&shape, 21);
    let r = reference(&shape, &x, &w);
    for kernel in [Kernel::Direct, Kernel::Blocktile] {
        let mut p =
            Projector::with_options(ctx(), shape, kernel, OutputLayout::Tokens, &opts).unwrap();
        assert_eq!(p.plan().chunks(), 3);
        let err = p.time_kernel(0, 2).unwrap_err();
        assert!(matches!(err, Error::Input(_)), "{err}");
        p.set_weights(&w).unwrap();
        let check_run = |p: &mut Projector, when: &str| {
            let out = p.run(&x).unwrap();
            let report = QkvReport::new(
                (&out.q, &out.k, &out.v),
                &r,
                shape.q_width,
                shape.kv_width,
                tolerance(&shape),
            );
            assert_pass(&report, &format!("kernel {kernel}, {when}"));
            out.timings.kernel
        };
        let in_run = check_run(&mut p, "before timing");
        let warmups = p.steady_warmups(in_run);
        if ctx().is_cpu() {
            assert_eq!(warmups, 0, "a CPU driver has no clocks to warm up");
        } else {
            assert!(warmups >= 3);
        }
        let times = p.time_kernel(1, 3).unwrap();
        assert_eq!(times.samples.len(), 3);
        assert_eq!(times.warmups, 1);
        assert!(times.samples.iter().all(|t| !t.is_zero()), "{times:?}");
        let (median, min, max) = times.spread();
        assert!(min <= median && median <= max);
        let expected = if ctx().has_timestamps() {
            KernelTimer::GpuTimestamp
        } else {
            KernelTimer::Host
        };
        assert_eq!(times.timer, expected);
        assert!(matches!(p.time_kernel(0, 0), Err(Error::Input(_))));
        // Timing rewrote the first buffer set's outputs; a run after it is still right.
        check_run(&mut p, "after timing");
    }
}

#[test]
fn poisoned_outputs_read_back_as_nan_and_fail_validation() {
    // What every run does first: an element the kernel never wrote must read NaN.
    let shape = QkvShape::new(9, 5, 7, 3, false).unwrap();
    let (x, w) = random_inputs(&shape, 3);
    let mut projector = Projector::new(ctx(), shape, Kernel::DEFAULT).unwrap();
    projector.set_weights(&w).unwrap();
    projector.run(&x).unwrap();
    projector.poison_outputs().unwrap();
    let [q, k, v] = projector.read_outputs().unwrap();
    assert!(q.iter().chain(&k).chain(&v).all(|e| e.is_nan()));
    let r = reference(&shape, &x, &w);
    let report = QkvReport::new((&q, &k, &v), &r, 7, 3, tolerance(&shape));
    assert!(!report.pass());
    assert_eq!(report.q.mismatches, q.len());
}

#[test]
fn the_validator_catches_a_planted_error_in_real_gpu_output() {
    let shape = QkvShape::new(20, 24, 12, 4, true).unwrap();
    let (x, w) = random_inputs(&shape, 9);
    let mut projector = Projector::new(ctx(), shape, Kernel::DEFAULT).unwrap();
    projector.set_weights(&w).unwrap();
    let mut out = projector.run(&x).unwrap();
    let r = reference(&shape, &x, &w);
    let tol = tolerance(&shape);
    let clean = QkvReport::new((&out.q, &out.k, &out.v), &r, 12, 4, tol);
    assert_pass(&clean, "unmodified output");

    out.k[4 * 7 + 2] += 1e-2; // row 7, column 2 of K
    out.v[5] = f32::NAN; // row 1, column 1 of V: as if never written
    let bad = QkvReport::new((&out.q, &out.k, &out.v), &r, 12, 4, tol);
    assert!(!bad.pass());
    assert!(bad.q.pass);
    assert_eq!((bad.k.mismatches, bad.v.mismatches), (1, 1));
    let (mk, mv) = (bad.k.first_mismatches[0], bad.v.first_mismatches[0]);
    assert_eq!((mk.row, mk.col), (7, 2));
    assert_eq!((mv.row, mv.col), (1, 1));
    assert!(mv.gpu.is_nan());
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let shape = QkvShape::new(4, 3, 2, 2, true).unwrap();
    let (x, w) = random_inputs(&shape, 1);
    let mut p = Projector::new(ctx(), shape, Kernel::Naive).unwrap();
    assert!(
        matches!(p.run(&x), Err(Error::Input(_))),
        "run before weights"
    );
    let mut no_bias = w.clone();
    no_bias.bias = None;
    assert!(matches!(p.set_weights(&no_bias), Err(Error::Shape(_))));
    let other = QkvShape::new(4, 3, 3, 2, true).unwrap();
    let (_, wrong) = random_inputs(&other, 1);
    assert!(matches!(p.set_weights(&wrong), Err(Error::Shape(_))));
    p.set_weights(&w).unwrap();
    assert!(matches!(p.run(&x[..5]), Err(Error::Shape(_))), "short X");
}

#[test]
fn shapes_past_lowered_limits_are_clear_errors() {
    // Past a limit a batch is chunked (tests/chunking.rs); what cannot be chunked is an error:
    // here a device with 64 KiB bindings, where one row of X is 80,000 bytes.
    let adapter_ctx = ctx();
    let filter = || qkv_wgpu::AdapterFilter {
        name: Some(adapter_ctx.summary.name.clone()),
        ..qkv_wgpu::AdapterFilter::from_env().unwrap()
    };
    let small = GpuContext::with_options(
        &filter(),
        &ContextOptions {
            limits: Some(wgpu::Limits {
                max_storage_buffer_binding_size: 64 * 1024,
                max_texture_dimension_2d: 64,
                ..wgpu::Limits::default()
            }),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(small.limits().max_storage_buffer_binding_size, 64 * 1024);

    // Too few storage buffers for any kernel's bindings (the texture kernels bind four):
    // refused when the context is made.
    let err = GpuContext::with_options(
        &filter(),
        &ContextOptions {
            limits: Some(wgpu::Limits {
                max_storage_buffers_per_shader_stage: 3,
                ..wgpu::Limits::downlevel_defaults()
            }),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("max_storage_buffers_per_shader_stage"),
        "{err}"
    );

    let wide_row = QkvShape::new(4, 20_000, 8, 8, false).unwrap();
    let err = Projector::new(&small, wide_row, Kernel::Naive).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::DeviceLimit { .. }), "{msg}");
    assert!(msg.contains("max_storage_buffer_binding_size"), "{msg}");

    // The texture kernels hold W with one texel row per element of d_model: 320 > 64.
    let deep = QkvShape::new(4, 300, 8, 8, false).unwrap();
    let err = Projector::new(&small, deep, Kernel::Texture).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::DeviceLimit { .. }) && msg.contains("max_texture_dimension_2d"),
        "{msg}"
    );
    // The storage-buffer kernels are not bound by it.
    assert!(Projector::new(&small, deep, Kernel::Naive).is_ok());
}

fn kernel_strategy() -> impl Strategy<Value = Kernel> {
    prop::sample::select(common::kernels())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 40,
        // A failing shape is shrunk, but each case is a GPU run: keep shrinking bounded.
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_shapes_match_the_reference(
        tokens in 1u32..=300,
        d_model in 1u32..=257,
        q_width in 1u32..=300,
        kv_width in 1u32..=300,
        bias in any::<bool>(),
        kernel in kernel_strategy(),
        seed in any::<u64>(),
    ) {
        let shape = QkvShape::new(tokens, d_model, q_width, kv_width, bias).unwrap();
        let report = check(shape, kernel, seed);
        prop_assert!(
            report.pass(),
            "kernel {kernel}, {shape}, seed {seed}:\n  {}\n  {}\n  {}",
            report.q, report.k, report.v
        );
    }
}
