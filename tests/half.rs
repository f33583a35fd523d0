//! Half precision: every kernel that reads f16 and bf16, in both types, against the f64
//! reference of the same rounded inputs the GPU reads, with the tolerance of f32 accumulation
//! plus the final rounding (`Tolerance::for_output`). Ragged shapes (odd widths put the two
//! halves of one 32-bit word in different rows, and the Q/K boundary inside a word of W),
//! bias on and off, both output layouts, chunks and column blocks under lowered limits, the
//! worked example exact, NaN poisoning, planted errors, and out-of-range inputs refused.

mod common;

use common::{assert_pass, ctx};
use qkv_wgpu::plan::ChunkOptions;
use qkv_wgpu::{
    random_inputs, reference, ContextOptions, ElementType, Error, FusedWeights, GpuContext,
    HeadSplit, Kernel, KernelConfig, OutputLayout, Projection, Projector, QkvReport, QkvShape,
    Tolerance,
};
use std::sync::OnceLock;

const HALF: [ElementType; 2] = [ElementType::F16, ElementType::Bf16];

/// Every variant that reads the half types.
fn typed_kernels() -> Vec<Kernel> {
    common::kernels()
        .into_iter()
        .filter(|k| k.reads(ElementType::Bf16).is_some())
        .filter(|&k| {
            KernelConfig::from(k)
                .unsupported_on(&ctx().summary)
                .is_none()
        })
        .collect()
}

/// Seeded inputs through `config` stored as `element`, laid out as `layout`, chunked as
/// `opts`, checked against the reference of the rounded inputs.
fn check_typed(
    ctx: &GpuContext,
    shape: QkvShape,
    config: KernelConfig,
    element: ElementType,
    (layout, opts): (OutputLayout, ChunkOptions),
    seed: u64,
) -> (QkvReport, Projector<'_>) {
    let (mut x, w) = random_inputs(&shape, seed);
    let mut p = Projector::typed(ctx, shape, config, element, layout, &opts)
        .unwrap_or_else(|e| panic!("{config} in {element} on {shape}: {e}"));
    p.set_weights(&w).unwrap();
    let out = p.run(&x).unwrap();
    element.round_slice(&mut x);
    let w = w.rounded(element);
    let r = reference(&shape, &x, &w);
    let r = match layout {
        OutputLayout::Tokens => r,
        OutputLayout::Heads(h) => r.map(
            |m| layout.arrange(m, shape.tokens, shape.q_width, h.heads),
            |m| layout.arrange(m, shape.tokens, shape.kv_width, h.kv_heads),
        ),
    };
    let tol = Tolerance::for_f32_accumulation(shape.d_model).for_output(element);
    let report = QkvReport::new(
        (&out.q, &out.k, &out.v),
        &r,
        shape.q_width,
        shape.kv_width,
        tol,
    );
    (report, p)
}

fn tokens_layout() -> (OutputLayout, ChunkOptions) {
    (OutputLayout::Tokens, ChunkOptions::default())
}

#[test]
fn ragged_shapes_pass_in_both_half_types_on_every_typed_kernel() {
    // Odd widths and d_model, tokens past every tile; a word of Q holds the end of one row
    // and the start of the next, and a word of W the last Wq column and the first Wk.
    let shapes = [
        (1, 1, 1, 1),
        (3, 5, 7, 3),
        (17, 33, 19, 5),
        (37, 29, 18, 7),
        (130, 67, 45, 13),
    ];
    for kernel in typed_kernels() {
        for element in HALF {
            for (i, &(t, d, q, kv)) in shapes.iter().enumerate() {
                // Bias on and off in turn: each kernel and type sees both, each shape both
                // across the two types.
                let bias = (i % 2 == 1) != (element == ElementType::Bf16);
                let shape = QkvShape::new(t, d, q, kv, bias).unwrap();
                let (report, _) = check_typed(
                    ctx(),
                    shape,
                    kernel.into(),
                    element,
                    tokens_layout(),
                    300 + i as u64,
                );
                assert_pass(&report, &format!("{kernel} in {element}, {shape}"));
            }
        }
    }
}

#[test]
fn decode_reads_each_word_of_x_and_w_once_in_half_types() {
    // Half-typed units are one vec4 of words (8 elements) of W and of X, read once and
    // used as two vec4s of elements: every row count and column count per invocation, on
    // d_model that ends mid-word and column counts the invocations do not divide.
    let configs: [&[u32]; 6] = [
        &[8, 8, 8, 4],
        &[6, 4, 1, 2],
        &[3, 2, 4, 1],
        &[4, 16, 1, 4],
        &[16, 2, 8, 8],
        &[16, 2, 8, 8, 1],
    ];
    let shapes = [(1, 45, 24, 8), (9, 70, 16, 13), (5, 3, 7, 3)];
    for v in configs {
        let config = KernelConfig::new(Kernel::Decode, v);
        for element in HALF {
            for (i, &(t, d, q, kv)) in shapes.iter().enumerate() {
                let shape = QkvShape::new(t, d, q, kv, i % 2 == 0).unwrap();
                let (report, _) = check_typed(
                    ctx(),
                    shape,
                    config,
                    element,
                    tokens_layout(),
                    340 + i as u64,
                );
                assert_pass(&report, &format!("{config} in {element}, {shape}"));
            }
        }
    }
}

#[test]
fn split_k_in_half_types_sums_every_range_once() {
    let shape = QkvShape::new(33, 45, 21, 11, true).unwrap();
    for element in HALF {
        for splits in [2, 3, 8] {
            let config = KernelConfig::new(Kernel::Splitk, &[splits]);
            let (report, _) = check_typed(ctx(), shape, config, element, tokens_layout(), 61);
            assert_pass(&report, &format!("{config} in {element}"));
        }
    }
}

#[test]
fn the_head_layout_is_right_in_half_types_with_odd_head_sizes() {
    // 3 sequences of 5 tokens; Q 3 heads of 3, K/V 1 head of 3: odd sizes everywhere, so
    // half-word neighbours belong to different heads and sequences.
    let shape = QkvShape::new(15, 23, 9, 3, true).unwrap();
    let heads = HeadSplit::new(&shape, 5, 3, 1).unwrap();
    for kernel in typed_kernels() {
        for element in HALF {
            let (report, _) = check_typed(
                ctx(),
                shape,
                kernel.into(),
                element,
                (OutputLayout::Heads(heads), ChunkOptions::default()),
                17,
            );
            assert_pass(&report, &format!("{kernel} in {element}, head layout"));
        }
    }
}

/// The adapter with 4 KiB bindings, 16 workgroups per dimension and 64-texel textures.
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
                    max_texture_dimension_2d: 64,
                    ..wgpu::Limits::default()
                }),
                ..Default::default()
            },
        )
        .expect("a context with lowered limits")
    })
}

#[test]
fn chunks_and_column_blocks_run_in_half_types_sized_by_two_bytes() {
    // X rows of 41 halves (82 B), Q rows of 77 (154 B): 26 tokens per 4 KiB binding in 16
    // bits, half as many in f32. W is 41 x 103 halves = 8,446 B > 4 KiB: column blocks.
    // 101 tokens: a ragged last chunk; odd widths put chunk and block edges inside words.
    let shape = QkvShape::new(101, 41, 77, 13, true).unwrap();
    for kernel in typed_kernels() {
        let f32_plan = qkv_wgpu::ChunkPlan::new(
            &small().limits(),
            &shape,
            &qkv_wgpu::KernelSpec::try_from(kernel).unwrap(),
            OutputLayout::Tokens,
            &ChunkOptions::default(),
        )
        .unwrap();
        for element in HALF {
            let (report, p) =
                check_typed(small(), shape, kernel.into(), element, tokens_layout(), 3);
            assert_pass(
                &report,
                &format!("{kernel} in {element}, plan {:?}", p.plan()),
            );
            assert!(p.plan().chunks() > 1, "{kernel}: not chunked");
            if !kernel.reads_textures() {
                assert!(p.plan().col_blocks.len() > 1, "{kernel}: W not split");
            }
            if kernel.binding() == qkv_wgpu::binding::BindingKind::Storage {
                // Twice the tokens (or close: whole tiles) per chunk as f32 on the same limit.
                // (Split-K's chunks are bound by its f32 partial sums, the same in every type.)
                assert!(
                    p.plan().chunk_tokens > f32_plan.chunk_tokens,
                    "{kernel}: {} tokens per chunk in {element}, {} in f32",
                    p.plan().chunk_tokens,
                    f32_plan.chunk_tokens
                );
            }
        }
    }
}

#[test]
fn the_worked_example_is_exact_in_both_half_types() {
    // x = (2, 3), W = [[1, 10], [0, -1]] -> (2, 17); Wk and Wv other matrices, so the three
    // outputs differ. Every value is exact in f16 and bf16, so the results must be exact.
    let shape = QkvShape::new(1, 2, 2, 2, false).unwrap();
    let x = [2.0f32, 3.0];
    let wq = [1.0f32, 10.0, 0.0, -1.0];
    let wk = [0.0f32, 1.0, 1.0, 0.0];
    let wv = [-1.0f32, 0.0, 1.0, 2.0];
    fn p(w: &[f32]) -> Projection<'_> {
        Projection {
            w,
            width: 2,
            bias: None,
        }
    }
    let weights = FusedWeights::fuse(2, p(&wq), p(&wk), p(&wv)).unwrap();
    for kernel in typed_kernels() {
        for element in HALF {
            let mut projector = Projector::typed(
                ctx(),
                shape,
                kernel,
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
                "{kernel} in {element}"
            );
        }
    }
}

#[test]
fn unwritten_and_wrong_elements_fail_in_half_types() {
    let shape = QkvShape::new(9, 5, 7, 3, true).unwrap();
    for element in HALF {
        let (report, mut p) = check_typed(
            ctx(),
            shape,
            Kernel::Naive.into(),
            element,
            tokens_layout(),
            3,
        );
        assert_pass(&report, &format!("naive in {element}"));
        // Poisoned outputs read back as NaN in every element, both halves of every word.
        p.poison_outputs().unwrap();
        let [q, k, v] = p.read_outputs().unwrap();
        assert_eq!((q.len(), k.len(), v.len()), (63, 27, 27));
        assert!(
            q.iter().chain(&k).chain(&v).all(|e| e.is_nan()),
            "{element}: a poisoned element is not NaN"
        );

        // A planted error of one f32 term's size, and an unwritten element, are caught.
        let (mut x, w) = random_inputs(&shape, 4);
        p.set_weights(&w).unwrap();
        let mut out = p.run(&x).unwrap();
        element.round_slice(&mut x);
        let w = w.rounded(element);
        let r = reference(&shape, &x, &w);
        let tol = Tolerance::for_f32_accumulation(shape.d_model).for_output(element);
        let clean = QkvReport::new((&out.q, &out.k, &out.v), &r, 7, 3, tol);
        assert_pass(&clean, &format!("{element}: unmodified output"));
        out.k[3 * 4 + 1] += 0.1; // row 4, column 1 of K
        out.q[13] = f32::NAN; // row 1, column 6 of Q: as if never written
        let bad = QkvReport::new((&out.q, &out.k, &out.v), &r, 7, 3, tol);
        assert_eq!(
            (bad.q.mismatches, bad.k.mismatches, bad.v.mismatches),
            (1, 1, 0)
        );
        let (mq, mk) = (bad.q.first_mismatches[0], bad.k.first_mismatches[0]);
        assert_eq!(((mq.row, mq.col), (mk.row, mk.col)), ((1, 6), (4, 1)));
    }
}

#[test]
fn the_reference_must_be_of_the_rounded_inputs() {
    // bf16 keeps 8 significant bits: against the reference of the unrounded inputs with the
    // f32 tolerance, its (correct) results fail. The check is tight enough to see that.
    let shape = QkvShape::new(40, 64, 24, 8, false).unwrap();
    let (x, w) = random_inputs(&shape, 8);
    let mut p = Projector::typed(
        ctx(),
        shape,
        Kernel::Naive,
        ElementType::Bf16,
        OutputLayout::Tokens,
        &ChunkOptions::default(),
    )
    .unwrap();
    p.set_weights(&w).unwrap();
    let out = p.run(&x).unwrap();
    let unrounded = reference(&shape, &x, &w);
    let f32_tol = Tolerance::for_f32_accumulation(shape.d_model);
    let report = QkvReport::new((&out.q, &out.k, &out.v), &unrounded, 24, 8, f32_tol);
    assert!(
        !report.pass(),
        "bf16 results passed the f32 check of unrounded inputs"
    );
}

#[test]
fn values_out_of_f16_range_are_refused_by_name() {
    let shape = QkvShape::new(3, 4, 2, 1, true).unwrap();
    let (mut x, mut w) = random_inputs(&shape, 2);
    let typed = |element| {
        Projector::typed(
            ctx(),
            shape,
            Kernel::Naive,
            element,
            OutputLayout::Tokens,
            &ChunkOptions::default(),
        )
        .unwrap()
    };
    let mut p = typed(ElementType::F16);
    // W [4, 4]: column 2 is Wk's first; 1e5 is past f16's 65504.
    w.w.as_f32_mut().unwrap()[4 + 2] = 1e5;
    let err = p.set_weights(&w).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Input(_)), "{msg}");
    assert!(
        msg.contains("Wk row 1, column 0") && msg.contains("100000"),
        "{msg}"
    );
    assert!(msg.contains("f16's range"), "{msg}");
    w.w.as_f32_mut().unwrap()[4 + 2] = 0.5;
    w.bias.as_mut().unwrap()[3] = -7e4;
    let msg = p.set_weights(&w).unwrap_err().to_string();
    assert!(msg.contains("bias of Wv, element 0"), "{msg}");
    w.bias.as_mut().unwrap()[3] = 0.5;
    p.set_weights(&w).unwrap();
    x[2 * 4 + 3] = 65520.0; // rounds to infinity in f16
    let msg = p.run(&x).unwrap_err().to_string();
    assert!(
        msg.contains("X row 2, column 3") && msg.contains("65520"),
        "{msg}"
    );
    // bf16 holds it; past bf16's range (f32::MAX rounds up to infinity) is refused.
    let mut b = typed(ElementType::Bf16);
    b.set_weights(&w).unwrap();
    assert!(b.run(&x).is_ok());
    x[0] = f32::MAX;
    let msg = b.run(&x).unwrap_err().to_string();
    assert!(
        msg.contains("X row 0, column 0") && msg.contains("bf16's range"),
        "{msg}"
    );
}

#[test]
fn f32_only_kernels_refuse_half_types_by_name() {
    for kernel in [
        Kernel::Tiled,
        Kernel::Regtile,
        Kernel::Direct,
        Kernel::Subgroup,
    ] {
        let err = Projector::typed(
            ctx(),
            QkvShape::new(2, 2, 2, 2, false).unwrap(),
            kernel,
            ElementType::F16,
            OutputLayout::Tokens,
            &ChunkOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("reads only f32") && err.contains("blocktile"),
            "{err}"
        );
    }
}

#[test]
fn the_kernels_round_results_to_nearest_even_as_the_host_does() {
    // d_model 2, W = (1, 2^-11) in every column: row r's result is x0 + x1 * 2^-11, exact in
    // f32, chosen on the rounding boundaries of each type: ties (to even, both ways), just
    // past them, subnormal f16 results with ties, the overflow threshold (65520 is the
    // first f16 value to round to infinity), and their negatives. The GPU's rounded result
    // must equal the host's round-to-nearest-even of the same f32, bit for bit.
    let w_col = [1.0f32, (-11f32).exp2()];
    for element in HALF {
        let (ulp_bits, big) = match element {
            ElementType::F16 => (10, 65504.0f32),
            _ => (7, half::bf16::MAX.to_f32()),
        };
        let ulp = (-(ulp_bits as f32)).exp2();
        // (x0, x1): x1 * 2^-11 = half an ulp of 1 when x1 = 2^(11 - ulp_bits - 1).
        let half = (11.0 - ulp_bits as f32 - 1.0).exp2();
        let mut rows: Vec<[f32; 2]> = vec![
            [1.0, half],                         // tie, 1 is even: stays 1
            [1.0 + ulp, half],                   // tie, odd: rounds up to 1 + 2 ulp
            [1.0, half * 1.25],                  // past the tie: up
            [1.0 + ulp, half * 0.75],            // below the tie: down
            [3.0 + 3.0 * 2.0 * ulp, 2.0 * half], // tie above 2 (ulp 2x), odd: up
        ];
        if element == ElementType::F16 {
            let sub = (-24f32).exp2();
            rows.extend([
                [3.0 * sub, (-14f32).exp2()],    // 3.5 x 2^-24: tie, rounds to 4 x 2^-24
                [2.0 * sub, (-14f32).exp2()],    // 2.5 x 2^-24: tie, rounds to 2 x 2^-24
                [1023.0 * sub, (-13f32).exp2()], // 1024 x 2^-24: the smallest normal
                [big, 32768.0],                  // 65520: infinity
                [big, 32752.0],                  // 65519.99..: 65504
            ]);
        } else {
            rows.push([big, 1.0]);
        }
        let more: Vec<[f32; 2]> = rows.iter().map(|r| [-r[0], -r[1]]).collect();
        rows.extend(more);
        let tokens = rows.len() as u32;
        let shape = QkvShape::new(tokens, 2, 1, 1, false).unwrap();
        let x: Vec<f32> = rows.iter().flatten().copied().collect();
        assert!(
            x.iter().all(|&v| element.round(v) == v),
            "{element}: inputs must be exact"
        );
        let col = Projection {
            w: &w_col,
            width: 1,
            bias: None,
        };
        let weights = FusedWeights::fuse(2, col, col, col).unwrap();
        for kernel in typed_kernels() {
            let mut p = Projector::typed(
                ctx(),
                shape,
                kernel,
                element,
                OutputLayout::Tokens,
                &ChunkOptions::default(),
            )
            .unwrap();
            p.set_weights(&weights).unwrap();
            let out = p.run(&x).unwrap();
            for (r, row) in rows.iter().enumerate() {
                let exact = row[0] as f64 + row[1] as f64 * w_col[1] as f64;
                let acc = exact as f32;
                assert_eq!(acc as f64, exact, "row {r} is not exact in f32");
                let want = element.round(acc);
                for (name, got) in [("Q", out.q[r]), ("K", out.k[r]), ("V", out.v[r])] {
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{kernel} in {element}, {name} row {r}: {acc:e} rounded to {got:e}, \
                         expected {want:e}"
                    );
                }
            }
        }
    }
}

#[test]
fn f16_widened_by_the_hardware_and_by_integers_agree_bit_for_bit() {
    // This adapter has f16 and its conversions, so f16 kernels widen with
    // `unpack2x16float` (NATIVE_F16); a context told it lacks them builds the same kernels
    // with the integer widening. Both are exact, so every bit agrees, subnormal inputs
    // included (X scaled so that about one element in six is an f16 subnormal).
    assert!(
        ctx().summary.shader_f16 && ctx().summary.f16_unpack,
        "the test lane's lavapipe offers SHADER_F16 and its conversions"
    );
    let filter = qkv_wgpu::AdapterFilter::from_env().unwrap();
    let mut integer = qkv_wgpu::GpuContext::new(&filter).expect("an adapter");
    integer.summary.f16_unpack = false;
    let shape = QkvShape::new(67, 37, 19, 11, true).unwrap();
    let (mut x, w) = qkv_wgpu::random_inputs(&shape, 23);
    for v in x.iter_mut() {
        *v *= 3e-4; // f16's smallest normal is 6.1e-5
    }
    let subnormal = x
        .iter()
        .filter(|v| {
            let b = half::f16::from_f32(**v).to_bits() & 0x7fff;
            b != 0 && b < 0x0400
        })
        .count();
    assert!(subnormal > x.len() / 10, "{subnormal} subnormals");
    for kernel in typed_kernels() {
        let run = |c: &qkv_wgpu::GpuContext| {
            let opts = ChunkOptions {
                chunk_tokens: Some(32),
                ..Default::default()
            };
            let mut p = Projector::typed(
                c,
                shape,
                kernel,
                ElementType::F16,
                OutputLayout::Tokens,
                &opts,
            )
            .unwrap();
            p.set_weights(&w).unwrap();
            p.run(&x).unwrap()
        };
        let (native, integer) = (run(ctx()), run(&integer));
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&native.q), bits(&integer.q), "{kernel}: Q");
        assert_eq!(bits(&native.k), bits(&integer.k), "{kernel}: K");
        assert_eq!(bits(&native.v), bits(&integer.v), "{kernel}: V");
        assert!(native.q.iter().all(|v| v.is_finite()), "{kernel}");
    }
}
