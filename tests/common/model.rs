//! Small models written for `qkv project` tests: safetensors checkpoints in each family's
//! naming and layout, X as `.npy`, an independent f64 computation of the expected outputs,
//! and the `qkv` binary run on them.

use qkv_wgpu::io::npy;
use rand::{Rng, SeedableRng};
use safetensors::Dtype;
use std::path::{Path, PathBuf};

/// A tensor to store: name, dtype, shape, values (rounded to the dtype before storing).
#[derive(Clone)]
pub struct T {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Rounds `v` to what `dtype` stores, so the expected values use exactly the stored numbers.
pub fn round(dtype: Dtype, v: f32) -> f32 {
    match dtype {
        Dtype::F16 => half::f16::from_f32(v).to_f32(),
        Dtype::BF16 => half::bf16::from_f32(v).to_f32(),
        _ => v,
    }
}

pub fn encode(dtype: Dtype, data: &[f32]) -> Vec<u8> {
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

pub fn random(rng: &mut rand::rngs::StdRng, dtype: Dtype, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| round(dtype, rng.random_range(-1.0f32..1.0)))
        .collect()
}

pub fn tensor(name: &str, dtype: Dtype, shape: &[usize], rng: &mut rand::rngs::StdRng) -> T {
    let n = shape.iter().product();
    T {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
        data: random(rng, dtype, n),
    }
}

pub fn write_checkpoint(path: &Path, tensors: &[T]) {
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
pub fn write_x(path: &Path, dtype: &str, shape: &[u64], rng: &mut rand::rngs::StdRng) -> Vec<f32> {
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
pub fn expected(
    x: &[f32],
    tokens: usize,
    d: usize,
    w: &T,
    out_in: bool,
    b: Option<&T>,
) -> Vec<f64> {
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
pub fn columns(y: &[f64], tokens: usize, n: usize, start: usize, width: usize) -> Vec<f64> {
    (0..tokens)
        .flat_map(|t| y[t * n + start..t * n + start + width].to_vec())
        .collect()
}

/// Separate Wq [12, 12], Wk and Wv [6, 12] with biases (F32, out-in) and X of `x_shape`
/// (d_model 12): Q in 4 heads of 3, K/V in 2.
pub struct HeadedModel {
    pub dir: tempfile::TempDir,
    pub tensors: Vec<T>,
    pub x: Vec<f32>,
}

pub fn headed_model(seed: u64, x_shape: &[u64]) -> HeadedModel {
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
    pub fn args(&self) -> Vec<String> {
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
pub fn to_heads(flat: &[f64], batch: usize, seq: usize, heads: usize, dim: usize) -> Vec<f64> {
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

pub fn read(path: &Path) -> npy::NpyArray {
    npy::read_f32(path).unwrap_or_else(|e| panic!("{e}"))
}

pub fn assert_close(what: &str, got: &[f32], want: &[f64], d_model: usize) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let atol = 1e-5 * (d_model as f64).sqrt();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= atol + 1e-4 * w.abs(),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// As [`assert_close`], for a run stored in a half type: `want` must be computed from the
/// inputs rounded to that type, and the tolerance adds the final rounding, a relative
/// error of at most `u` (2^-11 for f16, 2^-8 for bf16), as `Tolerance::for_output` derives.
pub fn assert_close_typed(what: &str, got: &[f32], want: &[f64], d_model: usize, u: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let atol = 1e-5 * (d_model as f64).sqrt() * (1.0 + u);
    let rtol = 1e-4 * (1.0 + u) + u;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= atol + rtol * w.abs(),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// The `qkv` binary, with autotuning results kept out of the user's own cache.
pub fn qkv_command() -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("qkv"));
    c.env(
        "QKV_CACHE_DIR",
        std::env::temp_dir().join(format!("qkv-test-cache-{}", std::process::id())),
    );
    c
}

pub fn qkv(args: &[&str]) -> std::process::Output {
    let out = qkv_command().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "qkv {args:?} panicked:\n{stderr}"
    );
    out
}

pub fn ok(args: &[&str]) -> String {
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
pub fn fails(args: &[&str], code: i32, message: &str, out_dir: &Path) {
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

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub struct Bert {
    pub dir: tempfile::TempDir,
    pub x: Vec<f32>,
    pub tensors: Vec<T>,
}

/// Two BERT layers (d_model 24, 4 heads of 6) with biases, F32; X [10, 24] f32.
pub fn bert() -> Bert {
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

pub fn find<'a>(tensors: &'a [T], name: &str) -> &'a T {
    tensors.iter().find(|t| t.name == name).unwrap()
}
