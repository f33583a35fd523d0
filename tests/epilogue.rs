//! QK-norm and RoPE on the GPU (the epilogue pass after every kernel): Q and K against the
//! f64 reference of the same inputs with the norm and the rotation applied
//! (`Reference::with_epilogue`, magnitudes carried through), within the kernel's tolerance
//! plus the epilogue's (`Tolerance::with_epilogue`); V with the kernel's own. Every kernel,
//! both pair layouts, partial rotary dimensions, the norm per head and over the width,
//! Gemma's 1 + w, Llama 3's scaling, positions from an offset and given, the head layout,
//! chunks and column blocks, both half types; the check fails an epilogue left out or at
//! the wrong positions; bad settings are refused by name.

mod common;

use common::epilogue::{
    each_step_alone, heads_of, per_head_norm, qwen3, ragged, rope, small, supported, weights, Run,
};
use common::{assert_pass, ctx};
use qkv_wgpu::epilogue::{
    Epilogue, Heads, NormScope, Positions, QkNorm, Rope, RopePairs, RopeScaling,
};
use qkv_wgpu::plan::ChunkOptions;
use qkv_wgpu::{
    random_inputs, reference, ElementType, FusedWeights, HeadSplit, Kernel, OutputLayout,
    Projection, QkvReport, QkvShape, Tolerance,
};

#[test]
fn every_kernel_normalizes_and_rotates_q_and_k_as_the_reference_does() {
    let (shape, heads) = ragged(37);
    // Partial rotary dimensions (6 of 10), from an offset past a decode step's tokens.
    let ep = qwen3(10, 6, Positions::Offset(1000));
    for k in common::kernels().into_iter().filter(|&k| supported(k)) {
        let report = Run::new(shape, k).check(&ep, heads);
        assert_pass(&report, &format!("{k} with Qwen3's epilogue"));
    }
}

#[test]
fn adjacent_pairs_a_norm_over_the_width_gemma_s_weights_and_llama3_scaling_pass() {
    let (shape, heads) = ragged(29);
    let width = Epilogue {
        qk_norm: Some(QkNorm {
            scope: NormScope::Width,
            eps: 1e-5,
            q_weight: weights(30, 3),
            k_weight: weights(10, 4),
            plus_one: true,
        }),
        rope: Some(Rope {
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 64.0,
            },
            theta: 500_000.0,
            ..rope(10, RopePairs::Adjacent)
        }),
        // Positions of a batch of decode steps, out of order, past 2^16.
        positions: Positions::Given((0..29).map(|t| (t * 7919 + 3) % 100_003).collect()),
    };
    for k in [Kernel::Naive, Kernel::Blocktile, Kernel::Splitk] {
        assert_pass(&Run::new(shape, k).check(&width, heads), &format!("{k}"));
    }
    // The given positions over chunks of 8 tokens: each chunk reads its own.
    let mut run = Run::new(shape, Kernel::Direct);
    run.opts = ChunkOptions {
        chunk_tokens: Some(8),
        ..Default::default()
    };
    assert_pass(&run.check(&width, heads), "given positions in chunks of 8");
    for ep in each_step_alone(&width) {
        assert_pass(
            &Run::new(shape, Kernel::Tiled).check(&ep, heads),
            &format!("{ep:?}"),
        );
    }
}

#[test]
fn the_head_layout_and_chunks_keep_each_token_s_position() {
    // 4 sequences of 9 tokens, in chunks of 2 sequences: positions restart each sequence.
    let shape = QkvShape::new(36, 45, 30, 10, false).unwrap();
    let heads = heads_of(3, 1, 10, 9);
    let ep = qwen3(10, 10, Positions::Offset(5));
    let mut run = Run::new(shape, Kernel::Regtile);
    run.layout = OutputLayout::Heads(HeadSplit::new(&shape, 9, 3, 1).unwrap());
    run.opts = ChunkOptions {
        chunk_tokens: Some(18),
        ..Default::default()
    };
    assert_pass(&run.check(&ep, heads), "head layout, two chunks");
    // Token-major, chunks of 8 (not whole sequences), streamed through three buffer sets.
    let mut run = Run::new(shape, Kernel::Direct);
    run.opts = ChunkOptions {
        chunk_tokens: Some(8),
        ..Default::default()
    };
    assert_pass(&run.check(&ep, heads), "five chunks");
}

#[test]
fn both_half_types_round_once_after_the_epilogue() {
    let (shape, heads) = ragged(21);
    let ep = qwen3(10, 8, Positions::Offset(3));
    for element in [ElementType::F16, ElementType::Bf16] {
        let typed = common::kernels()
            .into_iter()
            .filter(|&k| k.reads(element).is_some());
        for k in typed.filter(|&k| supported(k)) {
            let mut run = Run::new(shape, k);
            run.element = element;
            assert_pass(&run.check(&ep, heads), &format!("{k} in {element}"));
        }
    }
}

#[test]
fn an_epilogue_left_out_or_at_other_positions_fails_the_check() {
    let (shape, heads) = ragged(16);
    let ep = qwen3(10, 10, Positions::Offset(0));
    let run = Run::new(shape, Kernel::Tiled);
    let off_by_one = qwen3(10, 10, Positions::Offset(1));
    let report = run.check_as(&ep, &off_by_one, heads);
    assert!(
        !report.q.pass && !report.k.pass && report.v.pass,
        "{report:?}"
    );
    let no_rope = Epilogue {
        rope: None,
        ..ep.clone()
    };
    let report = run.check_as(&ep, &no_rope, heads);
    assert!(!report.q.pass && !report.k.pass, "RoPE left out");
    let other_pairs = Epilogue {
        rope: Some(rope(10, RopePairs::Adjacent)),
        ..ep.clone()
    };
    assert!(
        !run.check_as(&ep, &other_pairs, heads).q.pass,
        "other pairs"
    );
}

#[test]
fn the_worked_example_is_exact_at_position_zero_and_turned_at_one() {
    // x = (2, 3), W = [[1, 10], [0, -1]]: y = (2, 17) as Q (one head of 2) and as K. At
    // position 0 the rotation is the identity, exactly; at position 1 (θ^0 = 1: one radian)
    // it is (2 cos 1 - 17 sin 1, 17 cos 1 + 2 sin 1).
    let shape = QkvShape::new(2, 2, 2, 2, false).unwrap();
    let heads = heads_of(1, 1, 2, 2);
    let w = [1.0f32, 10.0, 0.0, -1.0];
    let p = || Projection {
        w: &w,
        width: 2,
        bias: None,
    };
    let weights = FusedWeights::fuse(2, p(), p(), p()).unwrap();
    let ep = Epilogue {
        qk_norm: None,
        rope: Some(rope(2, RopePairs::Adjacent)),
        positions: Positions::Offset(0),
    };
    let run = Run::new(shape, Kernel::Naive);
    let mut p = run.projector(&ep, heads).unwrap();
    p.set_weights(&weights).unwrap();
    let out = p.run(&[2.0, 3.0, 2.0, 3.0]).unwrap();
    for got in [&out.q, &out.k] {
        assert_eq!(got[..2], [2.0, 17.0]);
        let (c, s) = (1f64.cos(), 1f64.sin());
        let want = [2.0 * c - 17.0 * s, 17.0 * c + 2.0 * s];
        for (g, w) in got[2..].iter().zip(want) {
            // Within the bound of the rotation's f32 steps: ROPE_STEPS units of |2| + |17|.
            assert!(
                (*g as f64 - w).abs() <= 9.0 * 19.0 * 2f64.powi(-24),
                "{g} {w}"
            );
        }
    }
    assert_eq!(out.v, [2.0, 17.0, 2.0, 17.0]);
}

#[test]
fn bad_settings_are_refused_by_name() {
    let (shape, heads) = ragged(8);
    let run = Run::new(shape, Kernel::Naive);
    let err = |ep: &Epilogue, h: Heads| run.projector(ep, h).unwrap_err().to_string();
    let ep = qwen3(10, 10, Positions::Offset(0));
    let wrong = Heads { heads: 2, ..heads };
    assert!(
        err(&ep, wrong).contains("do not make Q's width 30"),
        "{}",
        err(&ep, wrong)
    );
    let odd = qwen3(10, 7, Positions::Offset(0));
    assert!(
        err(&odd, heads).contains("even number"),
        "{}",
        err(&odd, heads)
    );
    let few = qwen3(10, 10, Positions::Given(vec![0; 3]));
    assert!(err(&few, heads).contains("3 positions given for 8 tokens"));
    let unset = Heads { seq: 0, ..heads };
    assert!(
        err(&ep, unset).contains("must all be at least 1"),
        "{}",
        err(&ep, unset)
    );
    let mut zero = qwen3(10, 10, Positions::Offset(0));
    zero.rope.as_mut().unwrap().scaling = RopeScaling::Linear { factor: 0.0 };
    assert!(err(&zero, heads).contains("every factor must be finite"));
    let mut tiny = qwen3(10, 10, Positions::Offset(0));
    tiny.qk_norm.as_mut().unwrap().eps = 1e-46;
    assert!(
        err(&tiny, heads).contains("that f32 holds"),
        "{}",
        err(&tiny, heads)
    );
    let past = qwen3(10, 10, Positions::Offset(u32::MAX));
    assert!(
        err(&past, heads).contains("past 32 bits"),
        "{}",
        err(&past, heads)
    );
}

/// A Qwen3-like layer written as safetensors with its config.json: d_model 32, 4 query heads
/// and 2 KV heads of 8, the norm weights, and X [2, 5, 32] (two sequences of 5).
struct Qwen3Files {
    dir: tempfile::TempDir,
    tensors: Vec<common::model::T>,
    x: Vec<f32>,
}

fn qwen3_files(model_type: &str) -> Qwen3Files {
    use common::model::{tensor, write_checkpoint, write_x};
    use rand::SeedableRng;
    use safetensors::Dtype;
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(36);
    let pre = "model.layers.3.self_attn";
    let tensors: Vec<_> = [
        ("q_proj", vec![32, 32]),
        ("k_proj", vec![16, 32]),
        ("v_proj", vec![16, 32]),
        ("q_norm", vec![8]),
        ("k_norm", vec![8]),
    ]
    .iter()
    .map(|(n, shape)| tensor(&format!("{pre}.{n}.weight"), Dtype::F32, shape, &mut rng))
    .collect();
    write_checkpoint(&dir.path().join("model.safetensors"), &tensors);
    let config = format!(
        r#"{{"model_type": "{model_type}", "hidden_size": 32, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 8, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0}}"#
    );
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    let x = write_x(&dir.path().join("x.npy"), "f32", &[2, 5, 32], &mut rng);
    Qwen3Files { dir, tensors, x }
}

#[test]
fn qkv_project_applies_the_model_s_rope_and_qk_norm_from_its_config() {
    use common::model::{assert_close, expected, ok, read};
    let f = qwen3_files("qwen3");
    let out = f.dir.path().join("out");
    let more = ["--rope", "--qk-norm", "--position-offset", "7", "--json"];
    let stdout = ok(&refs(&f.args("out", &more)));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    common::assert_json_keys(&v, common::PROJECT_JSON_KEYS, "qkv project --json");
    assert_eq!(v["pass"], true);
    let said = v["epilogue"].as_str().unwrap();
    assert!(said.starts_with("RMSNorm per head"), "{said}");
    assert!(
        said.contains("θ 1000000") && said.contains("positions from 7"),
        "{said}"
    );
    assert!(v["qk_ttol"].as_f64().unwrap() > v["ttol"].as_f64().unwrap());
    // blocktile applies it in its store (heads of 8 fit its tile), unless asked for the pass.
    for (kernel, pass) in [("tiled", false), ("blocktile", false), ("blocktile", true)] {
        let mut more = vec!["--rope", "--qk-norm", "--kernel", kernel, "--json"];
        more.extend(pass.then_some("--epilogue-pass"));
        let dir = format!("out-{kernel}-{pass}");
        let v: serde_json::Value =
            serde_json::from_str(ok(&refs(&f.args(&dir, &more))).trim()).unwrap();
        assert_eq!(v["pass"], true, "{kernel} {pass}");
        let fused = kernel == "blocktile" && !pass;
        assert_eq!(v["epilogue_fused"], fused, "{kernel} {pass}");
        let plan = v["epilogue_plan"].as_str().unwrap();
        let why = match (kernel, pass) {
            (_, false) if fused => "fused into blocktile's store",
            ("tiled", _) => "as kernel tiled has no store that applies it",
            _ => "as asked for",
        };
        assert!(plan.contains(why), "{plan}");
        if ctx().has_timestamps() {
            assert_eq!(v["epilogue_ms"].as_f64().is_some_and(|ms| ms > 0.0), !fused);
        }
    }
    // Independently: each part straight from the tensors, then the norm and RoPE in f64 at
    // positions 7 + t within each sequence of 5.
    let mut q = expected(&f.x, 10, 32, &f.tensors[0], true, None);
    let mut k = expected(&f.x, 10, 32, &f.tensors[1], true, None);
    let ep = Epilogue {
        qk_norm: Some(QkNorm {
            q_weight: f.tensors[3].data.clone(),
            k_weight: f.tensors[4].data.clone(),
            ..per_head_norm(8)
        }),
        rope: Some(Rope {
            theta: 1e6,
            ..rope(8, RopePairs::Half)
        }),
        positions: Positions::Offset(7),
    };
    let heads = heads_of(4, 2, 8, 5);
    ep.apply_f64(&mut q, &mut k, &heads);
    assert_close("q.npy", &read(&out.join("q.npy")).data, &q, 32);
    assert_close("k.npy", &read(&out.join("k.npy")).data, &k, 32);
    let v_want = expected(&f.x, 10, 32, &f.tensors[2], true, None);
    assert_close("v.npy", &read(&out.join("v.npy")).data, &v_want, 32);
    // The head layout takes its heads from the same config.json.
    let more = [
        "--rope",
        "--qk-norm",
        "--position-offset",
        "7",
        "--head-layout",
        "heads",
    ];
    ok(&refs(&f.args("heads", &more)));
    let q_heads = read(&f.dir.path().join("heads/q.npy"));
    assert_eq!(q_heads.shape, [2, 4, 5, 8]);
    let want = common::model::to_heads(&q, 2, 5, 4, 8);
    assert_close("q.npy in heads", &q_heads.data, &want, 32);
}

impl Qwen3Files {
    /// `qkv project` on these files with `tiled`, into `out` (under the files' directory),
    /// with `more` arguments.
    fn args(&self, out: &str, more: &[&str]) -> Vec<String> {
        self.args_on("x.npy", out, more)
    }

    /// As [`args`](Self::args), on `input` (under the files' directory); with kernel
    /// `tiled` unless `more` names one.
    fn args_on(&self, input: &str, out: &str, more: &[&str]) -> Vec<String> {
        let d = self.dir.path();
        let path = |p: &str| d.join(p).to_str().unwrap().to_string();
        let mut a: Vec<String> = ["project", "--prefix", "model.layers.3"]
            .map(String::from)
            .to_vec();
        if !more.contains(&"--kernel") {
            a.extend(["--kernel".into(), "tiled".into()]);
        }
        a.extend(["--input".into(), path(input), "--weights".into()]);
        a.extend([path("model.safetensors"), "--out".into(), path(out)]);
        a.extend(more.iter().map(|m| m.to_string()));
        a
    }
}

fn refs(a: &[String]) -> Vec<&str> {
    a.iter().map(String::as_str).collect()
}

#[test]
fn qkv_project_takes_given_positions_and_refuses_what_the_model_does_not_have() {
    use common::model::{fails, ok, s};
    let f = qwen3_files("llama");
    let d = f.dir.path();
    let run = |out: &str, more: &[&str]| f.args(out, more);
    let a = run("no-norm", &["--qk-norm"]);
    fails(&refs(&a), 2, "(llama) has no QK-norm", &d.join("no-norm"));
    std::fs::write(d.join("few.txt"), "0 1 2").unwrap();
    let a = run("few", &["--rope", "--positions", s(&d.join("few.txt"))]);
    fails(
        &refs(&a),
        2,
        "3 positions given for 10 tokens",
        &d.join("few"),
    );
    std::fs::write(d.join("bad.txt"), "0 1 x").unwrap();
    let a = run("bad", &["--rope", "--positions", s(&d.join("bad.txt"))]);
    fails(&refs(&a), 2, "'x' is not a position", &d.join("bad"));
    let a = run("config", &["--config", "config.json"]);
    fails(&refs(&a), 2, "--rope", &d.join("config"));
    let a = run("heads", &["--rope", "--heads", "8"]);
    fails(
        &refs(&a),
        2,
        "8 heads named, but the model's files say 4 heads and 2 KV heads",
        &d.join("heads"),
    );
    // A decode batch's positions, one per token, out of order: the check passes.
    let list: Vec<String> = (0..10).map(|t| ((t * 37) % 11 + 100).to_string()).collect();
    std::fs::write(d.join("pos.txt"), list.join(",")).unwrap();
    let a = run(
        "given",
        &["--rope", "--positions", s(&d.join("pos.txt")), "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(ok(&refs(&a)).trim()).unwrap();
    assert_eq!(v["pass"], true);
    assert!(v["epilogue"]
        .as_str()
        .unwrap()
        .contains("10 positions given"));
}

#[test]
fn set_positions_moves_a_decode_step_without_a_new_projector() {
    // The pass after tiled, and blocktile applying it in its store (heads of 32 fit its
    // tile; the tables bound in the kernel's own groups).
    let (shape, heads) = ragged(6);
    decode_steps(
        Run::new(shape, Kernel::Tiled),
        qwen3(10, 10, Positions::Offset(0)),
        heads,
    );
    let shape = QkvShape::new(6, 45, 64, 32, true).unwrap();
    let run = Run {
        fused: Some(true),
        ..Run::new(shape, Kernel::Blocktile)
    };
    decode_steps(
        run,
        qwen3(32, 32, Positions::Offset(0)),
        heads_of(2, 1, 32, 6),
    );
}

/// Runs one projector of `run` with `ep` over six tokens at offsets 0, 6, then far on (the
/// tables grow and are bound again), then given positions, each checked.
fn decode_steps(run: Run, ep: Epilogue, heads: Heads) {
    let shape = run.shape;
    let (mut x, w) = random_inputs(&shape, 3);
    let mut p = run.projector(&ep, heads).unwrap();
    assert_eq!(p.epilogue_fused(), run.fused.unwrap_or(false));
    p.set_weights(&w).unwrap();
    let steps = [
        Positions::Offset(0),
        Positions::Offset(6),
        Positions::Offset(3_000_000),
        Positions::Given(vec![9, 1, 70_000, 4, 4, 0]),
    ];
    x.iter_mut().for_each(|v| *v = ElementType::F32.round(*v));
    let tol = Tolerance::for_kernel(shape.d_model, p.spec());
    for positions in steps {
        p.set_positions(positions.clone()).unwrap();
        let out = p.run(&x).unwrap();
        let step = Epilogue {
            positions: positions.clone(),
            ..ep.clone()
        };
        let r = reference(&shape, &x, &w).with_epilogue(&step, &heads, None);
        let qk = tol.with_epilogue(&step, &heads, ElementType::F32);
        let report = QkvReport::split(
            (&out.q, &out.k, &out.v),
            &r,
            (shape.q_width, shape.kv_width),
            (qk, tol),
        );
        assert_pass(&report, &format!("{} at {positions:?}", run.config));
    }
    let few = p.set_positions(Positions::Given(vec![1, 2])).unwrap_err();
    assert!(
        few.to_string().contains("2 positions given for 6 tokens"),
        "{few}"
    );
}

#[test]
fn shards_keyed_by_their_epilogue_are_skipped_only_by_the_same_one() {
    use common::model::{ok, qkv, write_x};
    use rand::SeedableRng;
    let f = qwen3_files("qwen3");
    let d = f.dir.path();
    let shards = d.join("shards");
    std::fs::create_dir(&shards).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    for i in 0..2 {
        write_x(
            &shards.join(format!("part-{i}.npy")),
            "f32",
            &[3, 32],
            &mut rng,
        );
    }
    let with = |more: &[&str]| f.args_on("shards", "corpus", more);
    let states = |stdout: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        let list = v["shards"].as_array().unwrap().iter();
        list.map(|s| s["state"].as_str().unwrap().to_string())
            .collect()
    };
    let rope = ["--rope", "--qk-norm", "--position-offset", "4", "--json"];
    assert_eq!(states(&ok(&refs(&with(&rope)))), ["projected", "projected"]);
    assert_eq!(states(&ok(&refs(&with(&rope)))), ["skipped", "skipped"]);
    // Another offset, or none, is another job: its outputs are not these.
    for other in [&["--rope", "--qk-norm", "--json"][..], &["--json"][..]] {
        let out = qkv(&refs(&with(other)));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("other weights or settings"),
            "{other:?}: {stderr}"
        );
    }
    std::fs::write(d.join("pos.txt"), "0 1 2").unwrap();
    let pos = d.join("pos.txt");
    let out = qkv(&refs(&with(&[
        "--rope",
        "--positions",
        pos.to_str().unwrap(),
    ])));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("shards take --position-offset"), "{stderr}");
}

#[test]
fn column_blocks_and_chunks_sized_for_the_f32_scratch_keep_every_element() {
    let shape = QkvShape::new(40, 45, 30, 10, true).unwrap();
    let heads = heads_of(3, 1, 10, 40);
    let ep = qwen3(10, 6, Positions::Offset(11));
    for element in [ElementType::F32, ElementType::F16] {
        let mut run = Run::new(shape, Kernel::Naive);
        run.ctx = small();
        run.element = element;
        let p = run.projector(&ep, heads).unwrap();
        let plan = p.plan();
        assert!(plan.col_blocks.len() > 1 && plan.chunks() > 1, "{plan:?}");
        // Q's f32 scratch, 30 columns of 4 bytes, bounds the chunk whatever the type.
        assert!(plan.chunk_tokens as u64 * 30 * 4 <= 4096, "{plan:?}");
        assert_pass(&run.check(&ep, heads), &format!("{element}"));
    }
}
