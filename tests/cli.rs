//! The `qkv` binary as a user meets it: each command's output and exit code, and bad
//! arguments answered with a message and a non-zero exit, never a panic.

mod common;

use assert_cmd::Command;
use predicates::prelude::*;

/// The binary, with autotuning results kept out of the user's own cache.
fn qkv() -> Command {
    let mut cmd = Command::cargo_bin("qkv").unwrap();
    cmd.env(
        "QKV_CACHE_DIR",
        std::env::temp_dir().join(format!("qkv-test-cache-{}", std::process::id())),
    );
    cmd
}

/// Runs `args`, asserts the exit code, that nothing panicked, and returns (stdout, stderr).
fn exits(args: &[&str], code: i32) -> (String, String) {
    let out = qkv().args(args).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        !stderr.contains("panicked"),
        "qkv {args:?} panicked:\n{stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "qkv {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

const SMALL: [&str; 9] = [
    "run",
    "--tokens",
    "37",
    "--d-model",
    "50",
    "--q-width",
    "24",
    "--kv-width",
    "8",
];

#[test]
fn run_prints_adapter_shape_times_errors_and_pass() {
    let mut args = SMALL.to_vec();
    args.extend(["--bias", "--kernel", "all", "--repeats", "2"]);
    let (out, _) = exits(&args, 0);
    for needle in [
        "adapter",
        "X [37, 50]",
        "GPU kernel",
        "GFLOP/s",
        "end-to-end",
        "CPU",
        "max abs err",
        "rel L2 err",
        "naive (0)",
        "tiled (1)",
        "PASS (all kernels)",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn run_json_is_one_object_per_kernel_with_the_documented_keys() {
    let mut args = SMALL.to_vec();
    args.extend(["--json", "--kernel", "0,1", "--repeats", "1"]);
    let (out, _) = exits(&args, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (line, kernel) in lines.iter().zip(["naive", "tiled"]) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in [
            "adapter",
            "backend",
            "kernel",
            "tokens",
            "d_model",
            "q_width",
            "kv_width",
            "bias",
            "gpu_kernel_ms",
            "gpu_total_ms",
            "cpu_ms",
            "gflops",
            "max_abs_err",
            "rel_l2_err",
            "pass",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {line}");
        }
        assert_eq!(v["kernel"], kernel);
        assert_eq!(v["tokens"], 37);
        assert_eq!(v["kv_width"], 8);
        assert_eq!(v["pass"], true);
        assert!(v["gflops"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn run_and_bench_json_keys_are_unchanged() {
    let mut args = SMALL.to_vec();
    args.extend(["--json", "--kernel", "naive", "--repeats", "1"]);
    let (out, _) = exits(&args, 0);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    common::assert_json_keys(&v, common::RUN_JSON_KEYS, "qkv run --json");
    let (json, _) = exits(
        &[
            "bench",
            "--d-model",
            "50",
            "--q-width",
            "24",
            "--tokens",
            "37",
            "--kernel",
            "naive",
            "--repeats",
            "1",
            "--no-cpu",
            "--json",
        ],
        0,
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert!(!rows.is_empty(), "{json}");
    for row in &rows {
        common::assert_json_keys(row, common::BENCH_JSON_KEYS, "qkv bench --json");
    }
}

#[test]
fn adapters_lists_limits_and_features() {
    let (out, _) = exits(&["adapters"], 0);
    for needle in [
        "driver",
        "max storage binding",
        "timestamps",
        "f16: ",
        "bf16: emulated",
        "subgroups",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let (json, _) = exits(&["adapters", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let first = &v.as_array().unwrap()[0];
    assert!(first["max_storage_buffer_binding_size"].as_u64().unwrap() > 0);
    // Empty where the backend reports no PCI address (lavapipe has none).
    assert!(first["pci_bus_id"].is_string(), "{first}");
    // Native or emulated f16 is what the adapter's SHADER_F16 says.
    let native = first["shader_f16"].as_bool().unwrap();
    assert_eq!(out.contains("f16: native (SHADER_F16)"), native, "{out}");
}

#[test]
fn explain_shows_the_worked_example_computed_on_the_gpu() {
    let (out, _) = exits(&["explain"], 0);
    for needle in [
        "x = (2, 3)",
        "W = [[1, 10], [0, -1]]",
        "y_0 = 2·1 + 3·0 = 2",
        "y_1 = 2·10 + 3·(-1) = 17",
        "y = (2, 17)",
        "k = (3, 2)",
        "v = (1, 6)",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    exits(&["explain", "--kernel", "naive"], 0);
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--tokens", "0"], "tokens must be at least 1"),
        (&["run", "--kv-width", "0"], "kv_width must be at least 1"),
        (&["run", "--tokens", "-3"], "unexpected argument"),
        (&["run", "--tokens", "lots"], "invalid value"),
        (&["run", "--kernel", "bogus"], "unknown kernel 'bogus'"),
        (&["run", "--repeats", "0"], "--repeats"),
        (
            &["run", "--atol", "-1"],
            "must be a finite number >= 0, got -1",
        ),
        (
            &["run", "--rtol", "NaN"],
            "must be a finite number >= 0, got NaN",
        ),
        (
            &["run", "--tokens", "4000000000", "--d-model", "4000000000"],
            "more than a 32-bit index",
        ),
        (
            &["run", "--q-width", "4294967295", "--kv-width", "4294967295"],
            "overflows",
        ),
        (&["frobnicate"], "unrecognized subcommand"),
        (&["run", "--backend", "opengl"], "invalid value 'opengl'"),
        // Issue #11, item 11: the valid range is part of the refusal.
        (
            &["run", "--kernel", "direct(wg=0)"],
            "not a valid configuration of direct (valid: wg = 1..=256)",
        ),
    ];
    for (args, message) in cases {
        let (_, err) = exits(args, 2);
        assert!(
            err.contains(message),
            "qkv {args:?}: expected {message:?} in:\n{err}"
        );
    }
}

#[test]
fn a_shape_past_the_device_limit_is_refused_before_any_work() {
    // A batch past the limits runs in chunks, but four columns of W with d_model 40,000,000
    // (640 MB) fit no binding (128 MiB on lavapipe and by wgpu's default): refused before
    // the weights are generated.
    let (_, err) = exits(
        &[
            "run",
            "--tokens",
            "2",
            "--d-model",
            "40000000",
            "--q-width",
            "8",
        ],
        2,
    );
    assert!(err.contains("four columns of the fused W"), "{err}");
    assert!(err.contains("max_"), "{err}");
}

#[test]
fn a_large_batch_runs_in_reported_chunks() {
    let out = qkv()
        .args([
            "run",
            "--tokens",
            "100",
            "--d-model",
            "16",
            "--q-width",
            "8",
            "--kernel",
            "naive",
            "--repeats",
            "1",
            "--chunk-tokens",
            "30",
            "--check-rows",
            "10",
        ])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("chunks       4 of up to 30 tokens (--chunk-tokens)"),
        "{out}"
    );
    assert!(out.contains("streamed"), "{out}");
    assert!(out.contains("about 10 rows"), "{out}");
    assert!(out.contains("PASS"), "{out}");
    // bench streams the same way: chunks, a sample of rows checked, JSON saying so.
    let (out, _) = exits(
        &[
            "bench",
            "--d-model",
            "16",
            "--q-width",
            "8",
            "--tokens",
            "100",
            "--kernel",
            "direct",
            "--repeats",
            "1",
            "--no-cpu",
            "--chunk-tokens",
            "30",
            "--check-rows",
            "10",
            "--json",
        ],
        0,
    );
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["pass"], true, "{out}");
    // 10 of 100 rows: 3 in each chunk of 30 (both ends and one between), both of the last 10.
    assert_eq!(rows[0]["checked_rows"], 11, "{out}");
    let (_, err) = exits(&["run", "--chunk-tokens", "0"], 2);
    assert!(err.contains("--chunk-tokens must be at least 1"), "{err}");
    let (_, err) = exits(&["run", "--check-rows", "none"], 2);
    assert!(err.contains("expected `all` or a number"), "{err}");
}

#[test]
fn a_missing_adapter_says_how_to_get_one() {
    qkv()
        .args(["adapters", "--adapter", "no-such-gpu-anywhere"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("mesa-vulkan-drivers"));
    qkv()
        .args(["run", "--adapter", "no-such-gpu-anywhere"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("no adapter matches"))
        .stderr(predicate::str::contains("available:"));
}

#[test]
fn help_names_every_command_and_the_exit_codes() {
    let (out, _) = exits(&["--help"], 0);
    for needle in [
        "run",
        "adapters",
        "explain",
        "--backend",
        "--adapter",
        "Exit codes",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let (out, _) = exits(&["run", "--help"], 0);
    for needle in [
        "--tokens",
        "--d-model",
        "--q-width",
        "--kv-width",
        "--bias",
        "--kernel",
        "--seed",
        "--json",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn bench_prints_a_table_json_csv_and_a_plot() {
    let base = [
        "bench",
        "--shape",
        "gpt2",
        "--tokens",
        "8,17",
        "--kernel",
        "naive,direct",
        "--repeats",
        "1",
    ];
    let (table, _) = exits(&base, 0);
    for needle in [
        "shape",
        "GFLOP/s",
        "GPU/CPU",
        "naive",
        "direct(wg=64)",
        "PASS",
    ] {
        assert!(table.contains(needle), "missing {needle:?} in:\n{table}");
    }
    assert_eq!(
        table.lines().filter(|l| l.starts_with("gpt2")).count(),
        4,
        "{table}"
    );

    let (json, _) = exits(&[&base[..], &["--json"]].concat(), 0);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows
        .iter()
        .all(|r| r["pass"] == true && r["gpu_gflops"].as_f64().unwrap() > 0.0));
    assert!(rows.iter().all(|r| r["cpu_gflops"].as_f64().unwrap() > 0.0));

    let (csv, _) = exits(&[&base[..], &["--csv"]].concat(), 0);
    let mut lines = csv.lines();
    assert!(
        lines.next().unwrap().starts_with("shape,tokens,d_model"),
        "{csv}"
    );
    assert_eq!(lines.count(), 4, "{csv}");

    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("plot.svg");
    exits(
        &[&base[..], &["--no-cpu", "--plot", svg.to_str().unwrap()]].concat(),
        0,
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") && text.contains("gpt2 f32 naive"),
        "{}",
        &text[..200.min(text.len())]
    );
}

#[test]
fn bench_and_run_choose_a_kernel_by_autotuning_and_say_so() {
    let (json, _) = exits(
        &[
            "bench",
            "--d-model",
            "24",
            "--q-width",
            "16",
            "--kv-width",
            "8",
            "--tokens",
            "5",
            "--json",
        ],
        0,
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.len(), 1);
    let mut args = SMALL.to_vec();
    args.extend(["--json", "--repeats", "1"]);
    let (out, _) = exits(&args, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        v["config_reason"].as_str().unwrap().contains("autotuned"),
        "{out}"
    );
}

#[test]
fn bench_refuses_unknown_shapes_and_bad_sizes() {
    let (_, err) = exits(&["bench", "--shape", "gpt5"], 2);
    assert!(
        err.contains("unknown shape 'gpt5'; known: gpt2, bert-base, vit-b16, llama3-8b"),
        "{err}"
    );
    let (_, err) = exits(&["bench", "--d-model", "0", "--q-width", "4"], 2);
    assert!(err.contains("d_model must be at least 1"), "{err}");
    let (_, err) = exits(
        &[
            "bench",
            "--d-model",
            "8",
            "--q-width",
            "4",
            "--tokens",
            "5",
            "--kernel",
            "warp9",
        ],
        2,
    );
    assert!(err.contains("unknown kernel 'warp9'"), "{err}");
}

#[test]
fn a_closed_or_full_stdout_is_not_a_panic() {
    use std::process::{Command as Std, Stdio};
    // Issue #11, item 5: `qkv adapters | true` and `qkv run | head -1` panicked (exit 101).
    let bin = assert_cmd::cargo::cargo_bin("qkv");
    for args in [&["adapters"][..], &SMALL[..]] {
        let mut child = Std::new(&bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // A full stdout is a failure of its own (exit 4), said once.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Std::new(&bin)
        .args(["adapters", "--json"])
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("cannot write to standard output") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn a_failing_json_run_still_prints_json() {
    // Issue #11, item 11: failing --json runs printed nothing on stdout.
    let (out, err) = exits(&["run", "--tokens", "0", "--json"], 2);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| {
        panic!("not JSON ({e}):\n{out}\n{err}");
    });
    assert_eq!(v["exit_code"], 2);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("tokens must be at least 1"));
}

#[test]
fn a_backend_this_platform_lacks_is_named_as_such() {
    // Issue #11, item 11: `--backend metal` on Linux printed `Some(Metal)` and advice to
    // install lavapipe.
    if cfg!(target_vendor = "apple") {
        return;
    }
    let (_, err) = exits(&["--backend", "metal", "adapters"], 2);
    assert!(err.contains("metal backend does not exist on"), "{err}");
    assert!(!err.contains("Some(") && !err.contains("lavapipe"), "{err}");
}

#[test]
fn mesa_says_nothing_about_xdg_runtime_dir() {
    // Issue #11, item 15: Mesa printed "XDG_RUNTIME_DIR is invalid" twice on every command.
    let out = qkv()
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .args(["adapters"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
}

#[test]
fn an_unwritable_tuning_cache_is_reported() {
    // Issue #11, item 10: a cache path that cannot be written made every run re-tune
    // without a word.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "x").unwrap();
    let out = Command::cargo_bin("qkv")
        .unwrap()
        .env("QKV_CACHE_DIR", &file)
        .args([
            "run",
            "--tokens",
            "8",
            "--d-model",
            "16",
            "--q-width",
            "8",
            "--kv-width",
            "8",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("could not be written") && stderr.contains("tune again"),
        "{stderr}"
    );
}

#[test]
fn half_precision_runs_report_their_type_and_precision_cost() {
    let mut args = SMALL.to_vec();
    args.extend(["--dtype", "bf16", "--kernel", "naive", "--repeats", "1"]);
    let (text, _) = exits(&args, 0);
    assert!(text.contains("stored as bf16"), "{text}");
    assert!(text.contains("precision    storing in bf16"), "{text}");
    args.push("--json");
    let (out, _) = exits(&args, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["dtype"], "bf16");
    assert_eq!(v["pass"], true);
    // bf16 keeps 8 significant bits: the cost is well above f32's error, yet bounded.
    let cost = v["precision_rel_l2_err"].as_f64().unwrap();
    assert!(cost > 1e-4 && cost < 2e-2, "{cost}");
    // f32 has no cost to report.
    let mut f32_args = SMALL.to_vec();
    f32_args.extend(["--kernel", "naive", "--repeats", "1", "--json"]);
    let (out, _) = exits(&f32_args, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["dtype"], "f32");
    assert!(v["precision_rel_l2_err"].is_null());

    // A kernel that reads only f32, and an unknown type, are bad arguments.
    let mut tiled = SMALL.to_vec();
    tiled.extend(["--dtype", "f16", "--kernel", "tiled"]);
    let (_, err) = exits(&tiled, 2);
    assert!(err.contains("reads only f32"), "{err}");
    let mut bad = SMALL.to_vec();
    bad.extend(["--dtype", "f8"]);
    let (_, err) = exits(&bad, 2);
    assert!(err.contains("f32, f16, bf16"), "{err}");
}

#[test]
fn bench_runs_each_shape_in_each_type() {
    let (json, _) = exits(
        &[
            "bench",
            "--d-model",
            "24",
            "--q-width",
            "16",
            "--kv-width",
            "5",
            "--tokens",
            "9",
            "--kernel",
            "naive",
            "--dtype",
            "f32,f16,bf16",
            "--repeats",
            "1",
            "--no-cpu",
            "--json",
        ],
        0,
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let types: Vec<&str> = rows.iter().map(|r| r["dtype"].as_str().unwrap()).collect();
    assert_eq!(types, ["f32", "f16", "bf16"]);
    assert!(rows.iter().all(|r| r["pass"] == true), "{json}");
}

#[test]
fn the_unknown_kernel_error_names_auto_and_all() {
    let (_, stderr) = exits(&["run", "--kernel", "bogus"], 2);
    assert!(
        stderr.contains("'all'") && stderr.contains("'auto' (autotuned: the default)"),
        "{stderr}"
    );
}

#[test]
fn a_half_type_suggestion_names_only_kernels_this_adapter_runs() {
    let (adapters, _) = exits(&["adapters", "--json"], 0);
    let offers_coop = !adapters.contains("\"cooperative_matrix\": []");
    let (_, stderr) = exits(
        &[
            "run",
            "--tokens",
            "4",
            "--d-model",
            "4",
            "--q-width",
            "4",
            "--kernel",
            "tiled",
            "--dtype",
            "bf16",
        ],
        2,
    );
    assert!(
        stderr.contains("reads only f32") && stderr.contains("blocktile"),
        "{stderr}"
    );
    assert_eq!(stderr.contains("coopmat"), offers_coop, "{stderr}");
}

#[test]
fn run_help_lists_the_global_options_apart() {
    let (help, _) = exits(&["run", "--help"], 0);
    let heading = help.find("Options of every command").expect(&help);
    for opt in ["--backend", "--adapter", "--unchecked"] {
        assert!(help.find(opt).is_some_and(|i| i > heading), "{opt}: {help}");
    }
    assert!(help.find("--tokens").is_some_and(|i| i < heading), "{help}");
}

#[test]
fn gguf_shows_each_layers_formats_and_the_metadatas_heads() {
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/seeds/gguf/llama_q8_0_f32.gguf"
    );
    let (out, _) = exits(&["gguf", seed], 0);
    assert!(out.contains("architecture llama"), "{out}");
    assert!(
        out.contains("d_model 32, heads 2, KV heads 1; Q 2 wide, K and V 1"),
        "{out}"
    );
    assert!(out.contains("blk.0: attn_q.weight q8_0 [2, 32]"), "{out}");
    assert!(out.contains("attn_k.weight f32 [1, 32]"), "{out}");
    assert!(out.contains("attn_v.weight f16 [1, 32]"), "{out}");
    assert!(out.contains("llama.cpp's order"), "{out}");
    let (json, _) = exits(&["gguf", seed, "--json", "--prefix", "blk.0"], 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["layers"][0]["tensors"][0]["type"], "q8_0");
    assert_eq!(
        v["layers"][0]["tensors"][0]["shape"],
        serde_json::json!([2, 32])
    );
    assert_eq!(v["kv_heads"], 1);
    // A prefix with no layer, and a file that is not GGUF: input errors (exit 2), by name.
    let (_, err) = exits(&["gguf", seed, "--prefix", "blk.9"], 2);
    assert!(
        err.contains("no tensor blk.9.attn_q.weight") && err.contains("blk.0"),
        "{err}"
    );
    let not_gguf = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let (_, err) = exits(&["gguf", not_gguf], 2);
    assert!(err.contains("does not start with `GGUF`"), "{err}");
}

#[test]
fn weight_type_keeps_w_quantized_and_reports_the_quantization_cost() {
    // Issue #34: Q, K, V each in its own format, checked against the quantized weights, with
    // the cost against the weights before.
    let args = [
        "run",
        "--tokens",
        "3",
        "--d-model",
        "256",
        "--q-width",
        "32",
        "--kv-width",
        "16",
        "--bias",
        "--weight-type",
        "q4_k,q6_k,q8_0",
        "--kernel",
        "decode,blocktile",
        "--repeats",
        "1",
    ];
    let (text, _) = exits(&args, 0);
    assert!(text.contains("W stored as q4_k,q6_k,q8_0"), "{text}");
    assert!(text.contains("quantization W as q4_k,q6_k,q8_0"), "{text}");
    let mut json = args.to_vec();
    json.push("--json");
    let (out, _) = exits(&json, 0);
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["pass"], true);
        assert_eq!(v["weight_type"], "q4_k,q6_k,q8_0");
        // 32 rows of Q4_K (144 bytes), 16 of Q6_K (210) and 16 of Q8_0 (8 x 34).
        assert_eq!(v["w_bytes"], 32 * 144 + 16 * 210 + 16 * 8 * 34);
        // Four bits cost far more than f32's rounding, yet stay bounded.
        let cost = v["quantization_rel_l2_err"].as_f64().unwrap();
        assert!(cost > 1e-3 && cost < 0.2, "{cost}");
        assert!(v["rel_l2_err"].as_f64().unwrap() < 1e-5);
    }
    // Without the option there is no cost to report.
    let (out, _) = exits(
        &[
            "run",
            "--tokens",
            "2",
            "--d-model",
            "32",
            "--kernel",
            "decode",
            "--repeats",
            "1",
            "--json",
        ],
        0,
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["quantization_rel_l2_err"].is_null());
    assert_eq!(v["weight_type"], "f32");

    // A kernel that cannot read blocks, an unknown format, a d_model that is not whole
    // blocks: each refused by name.
    let base = ["run", "--tokens", "2", "--d-model", "64", "--repeats", "1"];
    let mut tiled = base.to_vec();
    tiled.extend(["--weight-type", "q4_0", "--kernel", "tiled"]);
    let (_, err) = exits(&tiled, 2);
    assert!(err.contains("decode") && err.contains("blocktile"), "{err}");
    let mut unknown = base.to_vec();
    unknown.extend(["--weight-type", "q3_k"]);
    let (_, err) = exits(&unknown, 2);
    assert!(
        err.contains("unknown weight type 'q3_k'") && err.contains("q4_k"),
        "{err}"
    );
    let mut ragged = base.to_vec();
    ragged.extend(["--weight-type", "q6_k", "--kernel", "decode"]);
    let (_, err) = exits(&ragged, 2);
    assert!(err.contains("multiple of 256"), "{err}");
}
