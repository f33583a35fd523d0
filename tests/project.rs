//! `qkv project` on small checkpoints written here in each family's naming and layout (BERT
//! with bias, Llama with grouped K/V, GPT-2's fused c_attn), in F32, F16 and BF16. The
//! written q.npy, k.npy, v.npy are compared with an independent computation straight from the
//! tensors as stored; every kind of bad input must fail clearly and write nothing.

mod common;

use common::model::*;
use qkv_wgpu::io::npy;
use rand::SeedableRng;
use safetensors::Dtype;
use std::path::{Path, PathBuf};

#[test]
fn prefix_takes_the_attention_modules_own_name_too() {
    // Issue #11, item 16: `--prefix bert.encoder.layer.0.attention.self`, what a user copies
    // from the model's printed modules, was refused.
    let b = bert();
    let d = b.dir.path();
    let outs = ["by-layer", "by-module"].map(|o| d.join(o));
    for (prefix, out) in [
        ("bert.encoder.layer.1", &outs[0]),
        ("bert.encoder.layer.1.attention.self", &outs[1]),
    ] {
        ok(&[
            "project",
            "--input",
            s(&d.join("x.npy")),
            "--weights",
            s(&d.join("bert.safetensors")),
            "--prefix",
            prefix,
            "--out",
            s(out),
        ]);
    }
    for f in ["q.npy", "k.npy", "v.npy"] {
        assert_eq!(
            std::fs::read(outs[0].join(f)).unwrap(),
            std::fs::read(outs[1].join(f)).unwrap(),
            "{f}"
        );
    }
    let q = read(&outs[1].join("q.npy"));
    let w = find(
        &b.tensors,
        "bert.encoder.layer.1.attention.self.query.weight",
    );
    let bias = find(&b.tensors, "bert.encoder.layer.1.attention.self.query.bias");
    assert_close(
        "Q",
        &q.data,
        &expected(&b.x, 10, 24, w, true, Some(bias)),
        24,
    );
}

#[test]
fn bert_family_with_bias_matches_an_independent_computation() {
    let b = bert();
    let out = b.dir.path().join("out");
    let stdout = ok(&[
        "project",
        "--input",
        s(&b.dir.path().join("x.npy")),
        "--weights",
        s(&b.dir.path().join("bert.safetensors")),
        "--prefix",
        "bert.encoder.layer.1",
        "--out",
        s(&out),
    ]);
    assert!(
        stdout.contains("BERT family") && stdout.contains("PASS"),
        "{stdout}"
    );
    for (file, p) in [("q.npy", "query"), ("k.npy", "key"), ("v.npy", "value")] {
        let base = format!("bert.encoder.layer.1.attention.self.{p}");
        let w = find(&b.tensors, &format!("{base}.weight"));
        let bias = find(&b.tensors, &format!("{base}.bias"));
        let want = expected(&b.x, 10, 24, w, true, Some(bias));
        let got = read(&out.join(file));
        assert_eq!(got.shape, vec![10, 24]);
        assert_close(file, &got.data, &want, 24);
    }
}

#[test]
fn llama_family_bf16_grouped_kv_no_bias_3d_input() {
    // d_model 32; 4 query heads and 2 K/V heads of 8; X [2, 5, 32] in f16.
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let pre = "model.layers.0.self_attn";
    let tensors = vec![
        tensor(
            &format!("{pre}.q_proj.weight"),
            Dtype::BF16,
            &[32, 32],
            &mut rng,
        ),
        tensor(
            &format!("{pre}.k_proj.weight"),
            Dtype::BF16,
            &[16, 32],
            &mut rng,
        ),
        tensor(
            &format!("{pre}.v_proj.weight"),
            Dtype::BF16,
            &[16, 32],
            &mut rng,
        ),
        tensor(
            &format!("{pre}.o_proj.weight"),
            Dtype::BF16,
            &[32, 32],
            &mut rng,
        ),
    ];
    let ckpt = dir.path().join("llama.safetensors");
    write_checkpoint(&ckpt, &tensors);
    let x = write_x(&dir.path().join("x.npy"), "f16", &[2, 5, 32], &mut rng);
    let out = dir.path().join("out");
    let stdout = ok(&[
        "project",
        "--input",
        s(&dir.path().join("x.npy")),
        "--weights",
        s(&ckpt),
        "--prefix",
        "model.layers.0",
        "--out",
        s(&out),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    common::assert_json_keys(&v, common::PROJECT_JSON_KEYS, "qkv project --json");
    assert_eq!(v["family"], "Llama");
    assert_eq!(v["weight_layout"], "out-in");
    // A BF16 checkpoint runs in bf16 (X rounded to it); NumPy has no bf16, so the files
    // hold the results widened to f32.
    assert_eq!(
        (v["dtype"].as_str(), v["out_dtype"].as_str()),
        (Some("bf16"), Some("f32"))
    );
    assert!(v["precision_rel_l2_err"].as_f64().unwrap() > 0.0);
    let x: Vec<f32> = x.iter().map(|&v| round(Dtype::BF16, v)).collect();
    assert_eq!(
        (v["q_width"].as_u64(), v["kv_width"].as_u64()),
        (Some(32), Some(16))
    );
    assert_eq!(v["bias"], false);
    assert_eq!(v["pass"], true);
    for (file, i, width) in [("q.npy", 0, 32), ("k.npy", 1, 16), ("v.npy", 2, 16)] {
        let want = expected(&x, 10, 32, &tensors[i], true, None);
        let got = read(&out.join(file));
        assert_eq!((got.shape.clone(), got.dtype), (vec![2, 5, width], "f32"));
        assert!(
            got.data.iter().all(|&v| round(Dtype::BF16, v) == v),
            "{file}: not bf16 values"
        );
        assert_close_typed(file, &got.data, &want, 32, (-8f64).exp2());
    }
}

#[test]
fn gpt2_fused_c_attn_f16_with_bias() {
    // GPT-2 stores c_attn as Conv1D [in, out] = [d_model, 3 d_model]; X in f64.
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let tensors = vec![
        tensor("h.0.attn.c_attn.weight", Dtype::F16, &[16, 48], &mut rng),
        tensor("h.0.attn.c_attn.bias", Dtype::F16, &[48], &mut rng),
        tensor("h.0.attn.c_proj.weight", Dtype::F16, &[16, 16], &mut rng),
    ];
    let ckpt = dir.path().join("gpt2.safetensors");
    write_checkpoint(&ckpt, &tensors);
    let x = write_x(&dir.path().join("x.npy"), "f64", &[7, 16], &mut rng);
    let out = dir.path().join("out");
    let stdout = ok(&[
        "project",
        "--input",
        s(&dir.path().join("x.npy")),
        "--weights",
        s(&ckpt),
        "--prefix",
        "h.0",
        "--out",
        s(&out),
    ]);
    assert!(
        stdout.contains("GPT-2 family") && stdout.contains("in-out"),
        "{stdout}"
    );
    // An F16 checkpoint runs in f16 (X rounded to it) and writes f16 .npy files.
    assert!(stdout.contains("dtype     f16 on the GPU"), "{stdout}");
    let x: Vec<f32> = x.iter().map(|&v| round(Dtype::F16, v)).collect();
    let all = expected(&x, 7, 16, &tensors[0], false, Some(&tensors[1]));
    for (file, start) in [("q.npy", 0), ("k.npy", 16), ("v.npy", 32)] {
        let got = read(&out.join(file));
        assert_eq!((got.shape.clone(), got.dtype), (vec![7, 16], "f16"));
        let want = columns(&all, 7, 48, start, 16);
        assert_close_typed(file, &got.data, &want, 16, (-11f64).exp2());
    }
}

#[test]
fn head_layout_is_written_by_the_kernel_as_batch_heads_seq_dim() {
    // X [2, 3, 12]; Q 4 heads of 3, K/V 2 heads of 3 (inferred), F32, out-in with bias.
    let m = headed_model(14, &[2, 3, 12]);
    let (dir, tensors, x) = (&m.dir, &m.tensors, &m.x);
    for kernel in ["naive", "tiled"] {
        let out = dir.path().join(kernel);
        let mut args = m.args();
        args.extend(
            [
                "--head-layout",
                "heads",
                "--kernel",
                kernel,
                "--out",
                s(&out),
            ]
            .map(String::from),
        );
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        for (file, w, b, heads) in [("q.npy", 0, 3, 4), ("k.npy", 1, 4, 2), ("v.npy", 2, 5, 2)] {
            let flat = expected(x, 6, 12, &tensors[w], true, Some(&tensors[b]));
            let want = to_heads(&flat, 2, 3, heads, 3);
            let got = read(&out.join(file));
            assert_eq!(got.shape, vec![2, heads, 3, 3], "{kernel} {file}");
            assert_close(&format!("{kernel} {file}"), &got.data, &want, 12);
        }
    }
}

#[test]
fn explicit_names_take_the_layout_from_shapes_or_ask_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    // in-out [8, 6]: only the layout that reads 8 inputs fits X's d_model 8.
    let tensors = vec![
        tensor("a", Dtype::F32, &[8, 6], &mut rng),
        tensor("b", Dtype::F32, &[8, 4], &mut rng),
        tensor("c", Dtype::F32, &[8, 4], &mut rng),
        tensor("sq", Dtype::F32, &[8, 8], &mut rng),
        tensor("fused", Dtype::F32, &[8, 16], &mut rng),
    ];
    let ckpt = dir.path().join("m.safetensors");
    write_checkpoint(&ckpt, &tensors);
    let x = write_x(&dir.path().join("x.npy"), "f32", &[5, 8], &mut rng);
    let xs = dir.path().join("x.npy");
    let out = dir.path().join("out");
    let stdout = ok(&[
        "project",
        "--input",
        s(&xs),
        "--weights",
        s(&ckpt),
        "--wq",
        "a",
        "--wk",
        "b",
        "--wv",
        "c",
        "--out",
        s(&out),
    ]);
    assert!(stdout.contains("in-out (by the tensor shapes)"), "{stdout}");
    assert_close(
        "q",
        &read(&out.join("q.npy")).data,
        &expected(&x, 5, 8, &tensors[0], false, None),
        8,
    );

    let none = dir.path().join("none");
    fails(
        &[
            "project",
            "--input",
            s(&xs),
            "--weights",
            s(&ckpt),
            "--wq",
            "sq",
            "--wk",
            "sq",
            "--wv",
            "sq",
            "--out",
            s(&none),
        ],
        2,
        "give --weight-layout",
        &none,
    );

    // A fused matrix split by heads: 2 query heads and 1 K/V head of 4 -> 8 + 4 + 4.
    let fused = dir.path().join("fused");
    ok(&[
        "project",
        "--input",
        s(&xs),
        "--weights",
        s(&ckpt),
        "--wqkv",
        "fused",
        "--heads",
        "2",
        "--kv-heads",
        "1",
        "--out",
        s(&fused),
    ]);
    let all = expected(&x, 5, 8, &tensors[4], false, None);
    assert_close(
        "fused q",
        &read(&fused.join("q.npy")).data,
        &columns(&all, 5, 16, 0, 8),
        8,
    );
    assert_close(
        "fused v",
        &read(&fused.join("v.npy")).data,
        &columns(&all, 5, 16, 12, 4),
        8,
    );
}

#[test]
fn outputs_are_never_overwritten_without_force() {
    let b = bert();
    let out = b.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("k.npy"), b"precious").unwrap();
    let (xp, wp) = (
        b.dir.path().join("x.npy"),
        b.dir.path().join("bert.safetensors"),
    );
    let args = [
        "project",
        "--input",
        s(&xp),
        "--weights",
        s(&wp),
        "--prefix",
        "bert.encoder.layer.0",
        "--out",
        s(&out),
    ];
    let o = qkv(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pass --force"));
    assert_eq!(std::fs::read(out.join("k.npy")).unwrap(), b"precious");
    assert!(!out.join("q.npy").exists());

    let mut forced = args.to_vec();
    forced.push("--force");
    ok(&forced);
    assert_eq!(read(&out.join("k.npy")).shape, vec![10, 24]);
}

#[test]
fn nonfinite_inputs_are_reported_compared_and_not_written_unless_allowed() {
    let b = bert();
    let mut x = b.x.clone();
    x[2 * 24 + 5] = f32::NAN;
    x[7 * 24] = f32::INFINITY;
    let xp = b.dir.path().join("xnan.npy");
    npy::write_f32(&xp, &[10, 24], &x).unwrap();
    let out = b.dir.path().join("out");
    let wp = b.dir.path().join("bert.safetensors");
    let args = [
        "project",
        "--input",
        s(&xp),
        "--weights",
        s(&wp),
        "--prefix",
        "bert.encoder.layer.0",
        "--out",
        s(&out),
    ];
    // Refused at the chunk that holds them (issue #22, item 11: not after the whole run).
    fails(
        &args,
        2,
        "X holds NaN or Inf (X has 2 non-finite values (first: NaN at [2, 5])); the run \
         stopped there",
        &out,
    );
    let o = qkv(&args);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("PASS"));

    let mut allowed = args.to_vec();
    allowed.push("--allow-nonfinite");
    ok(&allowed);
    let q = read(&out.join("q.npy"));
    assert!(
        q.data[2 * 24..3 * 24].iter().all(|v| v.is_nan()),
        "row 2 of Q is NaN"
    );
    assert!(
        q.data[..24].iter().all(|v| v.is_finite()),
        "row 0 of Q is finite"
    );
}

#[test]
fn nan_weights_are_refused_before_any_gpu_work_item_11() {
    let b = bert();
    let mut tensors = b.tensors.clone();
    let w = tensors
        .iter_mut()
        .find(|t| t.name == "bert.encoder.layer.0.attention.self.key.weight")
        .unwrap();
    w.data[3] = f32::NAN;
    let wp = b.dir.path().join("nan.safetensors");
    write_checkpoint(&wp, &tensors);
    let (out, xp) = (b.dir.path().join("out"), b.dir.path().join("x.npy"));
    let args = [
        "project",
        "--input",
        s(&xp),
        "--weights",
        s(&wp),
        "--prefix",
        "bert.encoder.layer.0",
        "--out",
        s(&out),
    ];
    let started = std::time::Instant::now();
    fails(&args, 2, "the weights hold NaN or Inf", &out);
    let o = qkv(&args);
    let stdout = String::from_utf8_lossy(&o.stdout);
    // Nothing ran: no adapter was opened, no kernel reported.
    assert!(
        !stdout.contains("adapter") && !stdout.contains("kernel"),
        "{stdout}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let mut allowed = args.to_vec();
    allowed.push("--allow-nonfinite");
    ok(&allowed);
}

#[test]
fn a_weight_past_f16s_range_says_invalid_input_once_item_14() {
    let b = bert();
    let mut tensors = b.tensors.clone();
    let w = tensors
        .iter_mut()
        .find(|t| t.name == "bert.encoder.layer.0.attention.self.query.weight")
        .unwrap();
    w.data[0] = 1e5;
    let wp = b.dir.path().join("big.safetensors");
    write_checkpoint(&wp, &tensors);
    let out = b.dir.path().join("out");
    let o = qkv(&[
        "project",
        "--input",
        s(&b.dir.path().join("x.npy")),
        "--weights",
        s(&wp),
        "--prefix",
        "bert.encoder.layer.0",
        "--dtype",
        "f16",
        "--out",
        s(&out),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.matches("invalid input").count(), 1, "{stderr}");
    assert!(stderr.contains("outside f16's range"), "{stderr}");
}

#[test]
fn bad_inputs_fail_clearly_and_write_nothing() {
    let b = bert();
    let d = b.dir.path();
    let x = d.join("x.npy");
    let w = d.join("bert.safetensors");
    let out = d.join("out");
    let run = |x: &Path, w: &Path, extra: &[&str], code: i32, message: &str| {
        let mut args = vec![
            "project",
            "--input",
            s(x),
            "--weights",
            s(w),
            "--out",
            s(&out),
        ];
        if !extra
            .iter()
            .any(|a| a.starts_with("--w") || *a == "--prefix")
        {
            args.extend(["--prefix", "bert.encoder.layer.0"]);
        }
        args.extend(extra);
        fails(&args, code, message, &out);
    };

    // Files that are missing, empty, truncated or not what they claim to be.
    run(&d.join("missing.npy"), &w, &[], 2, "cannot open");
    run(&x, &d.join("missing.safetensors"), &[], 2, "cannot open");
    let empty = d.join("empty");
    std::fs::write(&empty, b"").unwrap();
    run(&empty, &w, &[], 2, "the file is empty");
    run(&x, &empty, &[], 2, "the file is empty");
    let xbytes = std::fs::read(&x).unwrap();
    let cut = d.join("cut.npy");
    std::fs::write(&cut, &xbytes[..xbytes.len() - 7]).unwrap();
    run(&cut, &w, &[], 2, "truncated");
    let junk = d.join("junk.npy");
    std::fs::write(&junk, b"\x93NUMPY garbage header that is not a dict").unwrap();
    run(&junk, &w, &[], 2, "unsupported .npy format version");
    // Issue #11, item 11: a directory as --weights gave "No such device"; a valid empty X
    // was reported as truncated; a 4 GiB header length was read into memory.
    run(
        &x,
        d,
        &[],
        2,
        "is a directory; give the .safetensors file itself",
    );
    let no_rows = d.join("no_rows.npy");
    npy::write_f32(&no_rows, &[0, 24], &[]).unwrap();
    run(&no_rows, &w, &[], 2, "X has no rows");
    let mut huge = b"\x93NUMPY\x02\x00".to_vec();
    huge.extend(u32::MAX.to_le_bytes());
    let huge_path = d.join("huge_header.npy");
    std::fs::write(&huge_path, &huge).unwrap();
    run(&huge_path, &w, &[], 2, "refuses headers over 10000 bytes");
    // Issue #11, item 7: head splits no attention layer can use.
    run(
        &x,
        &w,
        &["--heads", "2", "--kv-heads", "4"],
        2,
        "one head size",
    );
    let wbytes = std::fs::read(&w).unwrap();
    let mut corrupt = wbytes.clone();
    corrupt[8..20].copy_from_slice(b"{{not json!!");
    let corrupt_path = d.join("corrupt.safetensors");
    std::fs::write(&corrupt_path, &corrupt).unwrap();
    run(&x, &corrupt_path, &[], 2, "not a valid safetensors file");
    let short = d.join("short.safetensors");
    std::fs::write(&short, &wbytes[..wbytes.len() - 100]).unwrap();
    run(&x, &short, &[], 2, "not a valid safetensors file");

    // Names that do not exist: the message offers the nearest real ones.
    run(
        &x,
        &w,
        &[
            "--wq",
            "bert.encoder.layer.0.attention.self.qeury.weight",
            "--wk",
            "bert.encoder.layer.0.attention.self.key.weight",
            "--wv",
            "bert.encoder.layer.0.attention.self.value.weight",
        ],
        2,
        "nearest names: bert.encoder.layer.0.attention.self.query.weight",
    );
    run(
        &x,
        &w,
        &["--prefix", "bert.decoder"],
        2,
        "no Q/K/V projection found under prefix",
    );
    let ambiguous = [
        "project",
        "--input",
        s(&x),
        "--weights",
        s(&w),
        "--out",
        s(&out),
        "--prefix",
        "bert.encoder",
    ];
    fails(&ambiguous, 2, "matches 2 attention layers", &out);

    // Shapes that do not fit together.
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let x20 = d.join("x20.npy");
    write_x(&x20, "f32", &[4, 20], &mut rng);
    run(&x20, &w, &[], 2, "X has d_model 20");
    let x4d = d.join("x4d.npy");
    write_x(&x4d, "f32", &[1, 2, 2, 24], &mut rng);
    run(
        &x4d,
        &w,
        &[],
        2,
        "it must be [tokens, d_model] or [batch, seq, d_model]",
    );
    run(&x, &w, &["--heads", "5"], 2, "not divisible by --heads 5");
    run(
        &x,
        &w,
        &["--head-layout", "heads"],
        2,
        "--head-layout heads needs --heads",
    );

    // Types the tool does not read.
    let ints = d.join("ints.npy");
    npyz::to_file_1d(&ints, vec![1i32, 2, 3]).unwrap();
    run(&ints, &w, &[], 2, "unsupported dtype");
    let f64w = d.join("f64.safetensors");
    let mut t = bert().tensors;
    for t in t.iter_mut().filter(|t| t.name.contains("layer.0")) {
        t.dtype = Dtype::F64;
    }
    write_checkpoint(&f64w, &t);
    run(
        &x,
        &f64w,
        &[],
        2,
        "has dtype F64; supported: F32, F16, BF16",
    );

    // Non-finite weights are reported by tensor name and position.
    let mut t = bert().tensors;
    t[2].data[3 * 24 + 1] = f32::NEG_INFINITY; // layer 0 key.weight [3, 1]
    let infw = d.join("inf.safetensors");
    write_checkpoint(&infw, &t);
    run(&x, &infw, &[], 2, "bert.encoder.layer.0.attention.self.key.weight has 1 non-finite value (first: -inf at [3, 1])");
}

#[test]
fn chunked_files_match_one_dispatch_bit_for_bit_and_a_failed_check_keeps_old_outputs() {
    // X [5, 3, 12]: 15 tokens in sequences of 3. Q 4 heads of 3, K/V 2 heads of 3, with bias.
    let m = headed_model(21, &[5, 3, 12]);
    let (dir, tensors, x) = (&m.dir, &m.tensors, &m.x);
    let base = |out: &Path| -> Vec<String> {
        let mut args = m.args();
        args.extend(["--kernel", "direct", "--json", "--out", s(out)].map(String::from));
        args
    };
    let run = |name: &str, extra: &[&str]| -> (PathBuf, serde_json::Value) {
        let out = dir.path().join(name);
        let mut args = base(&out);
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let json: serde_json::Value = serde_json::from_str(ok(&args).trim()).unwrap();
        assert_eq!(json["pass"], true, "{name}: {json}");
        (out, json)
    };
    for layout in ["tokens", "heads"] {
        let lay = ["--head-layout", layout];
        let (whole, j) = run(&format!("{layout}-whole"), &lay);
        assert_eq!(
            (j["chunks"].as_u64(), j["checked_rows"].as_u64()),
            (Some(1), Some(15))
        );
        // Head layout chunks hold whole sequences: 6 tokens (2 sequences); tokens: 4.
        let chunk = if layout == "heads" { "6" } else { "4" };
        for stream in [None, Some("--no-stream")] {
            let mut extra = vec!["--head-layout", layout, "--chunk-tokens", chunk];
            extra.extend(stream);
            let (chunked, j) = run(&format!("{layout}-{chunk}-{stream:?}"), &extra);
            assert_eq!(
                j["chunks"].as_u64(),
                Some(if layout == "heads" { 3 } else { 4 })
            );
            assert_eq!(j["streamed"], stream.is_none(), "{j}");
            for f in ["q.npy", "k.npy", "v.npy"] {
                assert_eq!(
                    std::fs::read(chunked.join(f)).unwrap(),
                    std::fs::read(whole.join(f)).unwrap(),
                    "{layout} {f} chunked by {chunk} {stream:?}"
                );
            }
        }
        // And the whole run agrees with an independent computation.
        let flat = expected(x, 15, 12, &tensors[0], true, Some(&tensors[3]));
        let got = read(&whole.join("q.npy"));
        if layout == "tokens" {
            assert_eq!(got.shape, vec![5, 3, 12]);
            assert_close("q", &got.data, &flat, 12);
        } else {
            assert_eq!(got.shape, vec![5, 4, 3, 3]);
            assert_close("q heads", &got.data, &to_heads(&flat, 5, 3, 4, 3), 12);
        }
    }
    // A sample: 2 rows of each of 4 chunks (first and last), 8 checked.
    let (_, j) = run("sampled", &["--chunk-tokens", "4", "--check-rows", "2"]);
    assert_eq!(j["checked_rows"].as_u64(), Some(8), "{j}");
    // A check that fails (no tolerance at all) writes nothing, keeps what --force would have
    // replaced, and leaves no partial file behind.
    let out = dir.path().join("kept");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("q.npy"), b"precious").unwrap();
    let mut args = base(&out);
    args.extend(
        [
            "--force",
            "--atol",
            "0",
            "--rtol",
            "0",
            "--ttol",
            "0",
            "--chunk-tokens",
            "4",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = qkv(&args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("q.npy")]);
    assert_eq!(std::fs::read(out.join("q.npy")).unwrap(), b"precious");
}

#[test]
fn half_runs_write_safetensors_in_their_type_and_f32_checkpoints_round_when_asked() {
    // The BERT checkpoint is F32: asked for bf16, W and X are rounded to nearest even.
    let b = bert();
    let d = b.dir.path();
    let base = |out: &Path| -> Vec<String> {
        [
            "project",
            "--input",
            s(&d.join("x.npy")),
            "--weights",
            s(&d.join("bert.safetensors")),
            "--prefix",
            "bert.encoder.layer.1",
            "--dtype",
            "bf16",
            "--out",
            s(out),
        ]
        .map(String::from)
        .to_vec()
    };
    let npy_out = d.join("npy");
    let args = base(&npy_out);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let stdout = ok(&argv);
    assert!(stdout.contains("precision: storing in bf16"), "{stdout}");
    let st_out = d.join("st");
    let mut args = base(&st_out);
    args.extend(["--out-format", "safetensors", "--json"].map(String::from));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let v: serde_json::Value = serde_json::from_str(ok(&argv).trim()).unwrap();
    assert_eq!(
        (v["dtype"].as_str(), v["out_dtype"].as_str()),
        (Some("bf16"), Some("bf16"))
    );
    assert_eq!(v["outputs"].as_array().unwrap().len(), 1);

    let x: Vec<f32> = b.x.iter().map(|&v| round(Dtype::BF16, v)).collect();
    let ckpt = qkv_wgpu::io::checkpoint::Checkpoint::open(&st_out.join("qkv.safetensors")).unwrap();
    for (name, file, p) in [
        ("q", "q.npy", "query"),
        ("k", "k.npy", "key"),
        ("v", "v.npy", "value"),
    ] {
        let base = format!("bert.encoder.layer.1.attention.self.{p}");
        let round_t = |t: &T| T {
            name: t.name.clone(),
            dtype: Dtype::BF16,
            shape: t.shape.clone(),
            data: t.data.iter().map(|&v| round(Dtype::BF16, v)).collect(),
        };
        let w = round_t(find(&b.tensors, &format!("{base}.weight")));
        let bias = round_t(find(&b.tensors, &format!("{base}.bias")));
        let want = expected(&x, 10, 24, &w, true, Some(&bias));
        let t = ckpt.tensor(name).unwrap();
        assert_eq!(
            (t.dtype.as_str(), t.shape.as_slice()),
            ("BF16", &[10, 24][..])
        );
        let got: Vec<f32> = t.data.values().collect();
        assert_close_typed(name, &got, &want, 24, (-8f64).exp2());
        // The .npy run holds the same values, widened.
        assert_eq!(read(&npy_out.join(file)).data, got, "{file}");
    }
    let bytes = std::fs::read(st_out.join("qkv.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert!(
        meta["source_weights"].ends_with("bert.safetensors"),
        "{meta:?}"
    );
    assert_eq!(meta["dtype"], "bf16");

    // NumPy has no bf16: refused as a type for .npy only where asked for directly (never
    // here), and a value f16 cannot hold is refused by name, writing nothing.
    let mut big = bert();
    let wq = big
        .tensors
        .iter_mut()
        .find(|t| t.name == "bert.encoder.layer.0.attention.self.query.weight")
        .unwrap();
    wq.data[5] = 1.0e5;
    let ckpt = big.dir.path().join("big.safetensors");
    write_checkpoint(&ckpt, &big.tensors);
    let out = big.dir.path().join("refused");
    fails(
        &[
            "project",
            "--input",
            s(&big.dir.path().join("x.npy")),
            "--weights",
            s(&ckpt),
            "--prefix",
            "bert.encoder.layer.0",
            "--dtype",
            "f16",
            "--out",
            s(&out),
        ],
        2,
        "outside f16's range",
        &out,
    );
}

#[test]
fn every_family_stored_in_f16_and_bf16_runs_in_its_own_type() {
    // BERT (separate [out, in] with biases), Llama (separate [out, in], grouped K/V, no
    // bias) and GPT-2 (fused c_attn [in, out] with bias), each stored in F16 and in BF16:
    // projected in the stored type by default, compared with an independent f64
    // computation from X rounded to that type and the weights as stored.
    let d = 16usize;
    for dtype in [Dtype::F16, Dtype::BF16] {
        let (name, u, file_dtype) = match dtype {
            Dtype::F16 => ("f16", (-11f64).exp2(), "f16"),
            _ => ("bf16", (-8f64).exp2(), "f32"),
        };
        for family in ["bert", "llama", "gpt2"] {
            let dir = tempfile::tempdir().unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(40);
            let (prefix, tensors) = match family {
                "bert" => {
                    let p = "bert.encoder.layer.0.attention.self";
                    let mut t = Vec::new();
                    for m in ["query", "key", "value"] {
                        t.push(tensor(&format!("{p}.{m}.weight"), dtype, &[d, d], &mut rng));
                        t.push(tensor(&format!("{p}.{m}.bias"), dtype, &[d], &mut rng));
                    }
                    ("bert.encoder.layer.0", t)
                }
                "llama" => {
                    let p = "model.layers.0.self_attn";
                    let t = vec![
                        tensor(&format!("{p}.q_proj.weight"), dtype, &[d, d], &mut rng),
                        tensor(&format!("{p}.k_proj.weight"), dtype, &[d / 2, d], &mut rng),
                        tensor(&format!("{p}.v_proj.weight"), dtype, &[d / 2, d], &mut rng),
                    ];
                    ("model.layers.0", t)
                }
                _ => {
                    let t = vec![
                        tensor("h.0.attn.c_attn.weight", dtype, &[d, 3 * d], &mut rng),
                        tensor("h.0.attn.c_attn.bias", dtype, &[3 * d], &mut rng),
                    ];
                    ("h.0", t)
                }
            };
            let ckpt = dir.path().join("m.safetensors");
            write_checkpoint(&ckpt, &tensors);
            let x = write_x(&dir.path().join("x.npy"), "f32", &[9, d as u64], &mut rng);
            let out = dir.path().join("out");
            let what = format!("{family} in {name}");
            let stdout = ok(&[
                "project",
                "--input",
                s(&dir.path().join("x.npy")),
                "--weights",
                s(&ckpt),
                "--prefix",
                prefix,
                "--out",
                s(&out),
                // Any kernel that reads half types; named, so no run tunes.
                "--kernel",
                "texture(wg=16)",
                "--json",
            ]);
            let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
            assert_eq!(v["dtype"], name, "{what}");
            assert_eq!(v["pass"], true, "{what}");
            let xr: Vec<f32> = x.iter().map(|&v| round(dtype, v)).collect();
            let want: Vec<Vec<f64>> = match family {
                "gpt2" => {
                    let all = expected(&xr, 9, d, &tensors[0], false, Some(&tensors[1]));
                    (0..3).map(|i| columns(&all, 9, 3 * d, i * d, d)).collect()
                }
                "bert" => (0..3)
                    .map(|i| expected(&xr, 9, d, &tensors[2 * i], true, Some(&tensors[2 * i + 1])))
                    .collect(),
                _ => (0..3)
                    .map(|i| expected(&xr, 9, d, &tensors[i], true, None))
                    .collect(),
            };
            for (file, want) in ["q.npy", "k.npy", "v.npy"].iter().zip(&want) {
                let got = read(&out.join(file));
                assert_eq!(got.dtype, file_dtype, "{what} {file}");
                assert!(
                    got.data.iter().all(|&g| round(dtype, g) == g),
                    "{what} {file}: values not of the run's type"
                );
                assert_close_typed(&format!("{what} {file}"), &got.data, want, d, u);
            }
        }
    }
}

/// The fuzz seed `llama_q8_0_f32.gguf` (fuzz/make_seeds.py): a Llama layer with d_model 32,
/// 2 query heads and 1 key/value head of 1, Wq in Q8_0, Wk in F32, Wv in F16.
fn llama_seed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/gguf/llama_q8_0_f32.gguf")
}

#[test]
fn a_gguf_layer_is_projected_in_its_formats_with_the_heads_from_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut rng = rand::rngs::StdRng::seed_from_u64(34);
    let x = write_x(&d.join("x.npy"), "f32", &[6, 32], &mut rng);
    let gguf = llama_seed();
    let out = d.join("out");
    // No --heads: the metadata's 2 and 1 split Q and K/V.
    let stdout = ok(&[
        "project",
        "--input",
        s(&d.join("x.npy")),
        "--weights",
        s(&gguf),
        "--prefix",
        "blk.0",
        "--head-layout",
        "heads",
        "--out",
        s(&out),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["weight_type"], "q8_0,f32,f16");
    assert_eq!(v["row_order"], "file");
    assert_eq!(
        (v["heads"].as_u64(), v["kv_heads"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(v["pass"], true);
    // Against the f64 reference of the weights as ggml dequantizes them.
    let layer = qkv_wgpu::io::gguf::Gguf::open(&gguf)
        .unwrap()
        .attention("blk.0")
        .unwrap();
    let w = layer.weights().unwrap().dequantized();
    let shape = w.shape(6).unwrap();
    let r = qkv_wgpu::reference(&shape, &x, &w);
    let q = read(&out.join("q.npy"));
    assert_eq!(q.shape, vec![1, 2, 6, 1]);
    // [batch, heads, seq, 1]: head h of token t is Q[t, h].
    let want: Vec<f64> = (0..2)
        .flat_map(|h| (0..6).map(move |t| (t, h)))
        .map(|(t, h)| r.q[t * 2 + h])
        .collect();
    assert_close("Q", &q.data, &want, 32);
    let k = read(&out.join("k.npy"));
    assert_close("K", &k.data, &r.k, 32);
    let text = ok(&[
        "project",
        "--input",
        s(&d.join("x.npy")),
        "--weights",
        s(&gguf),
        "--prefix",
        "blk.0",
        "--out",
        s(&d.join("text")),
    ]);
    assert!(text.contains("--original-order restores"), "{text}");
}

#[test]
fn gguf_options_that_cannot_apply_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut rng = rand::rngs::StdRng::seed_from_u64(35);
    write_x(&d.join("x.npy"), "f32", &[2, 32], &mut rng);
    let gguf = llama_seed();
    let out = d.join("out");
    let base = |extra: &[&str]| -> Vec<String> {
        [
            "project",
            "--input",
            s(&d.join("x.npy")),
            "--weights",
            s(&gguf),
            "--out",
            s(&out),
        ]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect()
    };
    let run = |extra: &[&str], message: &str| {
        let args = base(extra);
        let args: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
        fails(&args, 2, message, &out);
    };
    // Heads of 1 row: the converter's pairs need an even head size.
    run(
        &["--prefix", "blk.0", "--original-order"],
        "an even head size",
    );
    run(&["--prefix", "blk.7"], "blk.0");
    run(
        &["--wq", "a", "--wk", "b", "--wv", "c"],
        "found by --prefix",
    );
    run(
        &["--prefix", "blk.0", "--weight-layout", "in-out"],
        "does not apply to a GGUF file",
    );
    // d_model 32 is not whole Q4_K blocks of 256: refused by name.
    run(
        &["--prefix", "blk.0", "--weight-type", "q4_k"],
        "multiple of 256",
    );
}
