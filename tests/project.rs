//! `qkv project` on small checkpoints written here in each family's naming and layout (BERT
//! with bias, Llama with grouped K/V, GPT-2's fused c_attn), in F32, F16 and BF16. The
//! written q.npy, k.npy, v.npy are compared with an independent computation straight from the
//! tensors as stored; every kind of bad input must fail clearly and write nothing.

use assert_cmd::Command;
use qkv_wgpu::io::npy;
use rand::{Rng, SeedableRng};
use safetensors::Dtype;
use std::path::{Path, PathBuf};

/// A tensor to store: name, dtype, shape, values (rounded to the dtype before storing).
struct T {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// Rounds `v` to what `dtype` stores, so the expected values use exactly the stored numbers.
fn round(dtype: Dtype, v: f32) -> f32 {
    match dtype {
        Dtype::F16 => half::f16::from_f32(v).to_f32(),
        Dtype::BF16 => half::bf16::from_f32(v).to_f32(),
        _ => v,
    }
}

fn encode(dtype: Dtype, data: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => data
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::BF16 => data
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::F64 => data
            .iter()
            .flat_map(|&v| (v as f64).to_le_bytes())
            .collect(),
        other => panic!("test encodes no {other:?}"),
    }
}

fn random(rng: &mut rand::rngs::StdRng, dtype: Dtype, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| round(dtype, rng.random_range(-1.0f32..1.0)))
        .collect()
}

fn tensor(name: &str, dtype: Dtype, shape: &[usize], rng: &mut rand::rngs::StdRng) -> T {
    let n = shape.iter().product();
    T {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
        data: random(rng, dtype, n),
    }
}

fn write_checkpoint(path: &Path, tensors: &[T]) {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| encode(t.dtype, &t.data)).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            let view = safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), b).unwrap();
            (t.name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// X [shape...] with values rounded to `dtype`, written as that dtype's .npy.
fn write_x(path: &Path, dtype: &str, shape: &[u64], rng: &mut rand::rngs::StdRng) -> Vec<f32> {
    let n: u64 = shape.iter().product();
    use npyz::WriterBuilder;
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    match dtype {
        "f32" => {
            let x = random(rng, Dtype::F32, n as usize);
            npy::write_f32(path, shape, &x).unwrap();
            x
        }
        "f16" => {
            let x = random(rng, Dtype::F16, n as usize);
            let mut w = npyz::WriteOptions::new()
                .default_dtype()
                .shape(shape)
                .writer(file)
                .begin_nd()
                .unwrap();
            w.extend(x.iter().map(|&v| half::f16::from_f32(v))).unwrap();
            w.finish().unwrap();
            x
        }
        "f64" => {
            let x64: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0f64..1.0)).collect();
            let mut w = npyz::WriteOptions::new()
                .default_dtype()
                .shape(shape)
                .writer(file)
                .begin_nd()
                .unwrap();
            w.extend(x64.iter().copied()).unwrap();
            w.finish().unwrap();
            x64.iter().map(|&v| v as f32).collect()
        }
        _ => unreachable!(),
    }
}

/// y[t][j] = sum_i x[t][i] * W(i, j) + b[j] in f64, reading W as stored: out-in W[j][i] or
/// in-out W[i][j]. Deliberately shares nothing with the crate's fusing and transposing.
fn expected(x: &[f32], tokens: usize, d: usize, w: &T, out_in: bool, b: Option<&T>) -> Vec<f64> {
    let width = if out_in { w.shape[0] } else { w.shape[1] };
    let mut y = vec![0f64; tokens * width];
    for t in 0..tokens {
        for j in 0..width {
            let mut acc = b.map_or(0.0, |b| b.data[j] as f64);
            for i in 0..d {
                let wij = if out_in {
                    w.data[j * d + i]
                } else {
                    w.data[i * width + j]
                };
                acc += x[t * d + i] as f64 * wij as f64;
            }
            y[t * width + j] = acc;
        }
    }
    y
}

/// Columns [start, start + width) of a [tokens, n] matrix.
fn columns(y: &[f64], tokens: usize, n: usize, start: usize, width: usize) -> Vec<f64> {
    (0..tokens)
        .flat_map(|t| y[t * n + start..t * n + start + width].to_vec())
        .collect()
}

/// Separate Wq [12, 12], Wk and Wv [6, 12] with biases (F32, out-in) and X of `x_shape`
/// (d_model 12): Q in 4 heads of 3, K/V in 2.
struct HeadedModel {
    dir: tempfile::TempDir,
    tensors: Vec<T>,
    x: Vec<f32>,
}

fn headed_model(seed: u64, x_shape: &[u64]) -> HeadedModel {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tensors = vec![
        tensor("wq", Dtype::F32, &[12, 12], &mut rng),
        tensor("wk", Dtype::F32, &[6, 12], &mut rng),
        tensor("wv", Dtype::F32, &[6, 12], &mut rng),
        tensor("bq", Dtype::F32, &[12], &mut rng),
        tensor("bk", Dtype::F32, &[6], &mut rng),
        tensor("bv", Dtype::F32, &[6], &mut rng),
    ];
    write_checkpoint(&dir.path().join("m.safetensors"), &tensors);
    let x = write_x(&dir.path().join("x.npy"), "f32", x_shape, &mut rng);
    HeadedModel { dir, tensors, x }
}

impl HeadedModel {
    /// `qkv project` on this model with its names, layout and `--heads 4`.
    fn args(&self) -> Vec<String> {
        let (xp, ckpt) = (
            self.dir.path().join("x.npy"),
            self.dir.path().join("m.safetensors"),
        );
        [
            "project",
            "--input",
            s(&xp),
            "--weights",
            s(&ckpt),
            "--wq",
            "wq",
            "--wk",
            "wk",
            "--wv",
            "wv",
            "--bq",
            "bq",
            "--bk",
            "bk",
            "--bv",
            "bv",
            "--weight-layout",
            "out-in",
            "--heads",
            "4",
        ]
        .map(String::from)
        .to_vec()
    }
}

/// Token-major [batch * seq, heads * dim] rearranged as [batch, heads, seq, dim]: element
/// (b, h, s, d) is token b * seq + s, column h * dim + d.
fn to_heads(flat: &[f64], batch: usize, seq: usize, heads: usize, dim: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(flat.len());
    for b in 0..batch {
        for h in 0..heads {
            for s in 0..seq {
                let at = (b * seq + s) * heads * dim + h * dim;
                out.extend_from_slice(&flat[at..at + dim]);
            }
        }
    }
    out
}

fn read(path: &Path) -> npy::NpyArray {
    npy::read_f32(path).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_close(what: &str, got: &[f32], want: &[f64], d_model: usize) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let atol = 1e-5 * (d_model as f64).sqrt();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= atol + 1e-4 * w.abs(),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

fn qkv(args: &[&str]) -> std::process::Output {
    // Autotuning results stay out of the user's own cache.
    let cache = std::env::temp_dir().join(format!("qkv-test-cache-{}", std::process::id()));
    let out = Command::cargo_bin("qkv")
        .unwrap()
        .env("QKV_CACHE_DIR", cache)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "qkv {args:?} panicked:\n{stderr}"
    );
    out
}

fn ok(args: &[&str]) -> String {
    let out = qkv(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "qkv {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `args`, expects exit `code` with `message` on stderr, and nothing in `out_dir`.
fn fails(args: &[&str], code: i32, message: &str, out_dir: &Path) {
    let out = qkv(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "qkv {args:?}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains(message),
        "qkv {args:?}: expected {message:?} in:\n{stderr}"
    );
    let leftovers: Vec<PathBuf> = std::fs::read_dir(out_dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "qkv {args:?} left {leftovers:?}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Bert {
    dir: tempfile::TempDir,
    x: Vec<f32>,
    tensors: Vec<T>,
}

/// Two BERT layers (d_model 24, 4 heads of 6) with biases, F32; X [10, 24] f32.
fn bert() -> Bert {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut tensors = Vec::new();
    for layer in 0..2 {
        for p in ["query", "key", "value"] {
            let base = format!("bert.encoder.layer.{layer}.attention.self.{p}");
            tensors.push(tensor(
                &format!("{base}.weight"),
                Dtype::F32,
                &[24, 24],
                &mut rng,
            ));
            tensors.push(tensor(&format!("{base}.bias"), Dtype::F32, &[24], &mut rng));
        }
    }
    write_checkpoint(&dir.path().join("bert.safetensors"), &tensors);
    let x = write_x(&dir.path().join("x.npy"), "f32", &[10, 24], &mut rng);
    Bert { dir, x, tensors }
}

fn find<'a>(tensors: &'a [T], name: &str) -> &'a T {
    tensors.iter().find(|t| t.name == name).unwrap()
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
    assert_eq!(v["family"], "Llama");
    assert_eq!(v["weight_layout"], "out-in");
    assert_eq!(
        (v["q_width"].as_u64(), v["kv_width"].as_u64()),
        (Some(32), Some(16))
    );
    assert_eq!(v["bias"], false);
    assert_eq!(v["pass"], true);
    for (file, i, width) in [("q.npy", 0, 32), ("k.npy", 1, 16), ("v.npy", 2, 16)] {
        let want = expected(&x, 10, 32, &tensors[i], true, None);
        let got = read(&out.join(file));
        assert_eq!(got.shape, vec![2, 5, width]);
        assert_close(file, &got.data, &want, 32);
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
    let all = expected(&x, 7, 16, &tensors[0], false, Some(&tensors[1]));
    for (file, start) in [("q.npy", 0), ("k.npy", 16), ("v.npy", 32)] {
        let got = read(&out.join(file));
        assert_eq!(got.shape, vec![7, 16]);
        assert_close(file, &got.data, &columns(&all, 7, 48, start, 16), 16);
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
    fails(
        &args,
        2,
        "X has 2 non-finite values (first: NaN at [2, 5])",
        &out,
    );
    // The projection ran and NaN compared equal to NaN: the check itself passed.
    let o = qkv(&args);
    assert!(String::from_utf8_lossy(&o.stdout).contains("PASS"));

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
    run(&junk, &w, &[], 2, "not a valid .npy file");
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
