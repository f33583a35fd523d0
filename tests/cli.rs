//! The `qkv` binary as a user meets it: each command's output and exit code, and bad
//! arguments answered with a message and a non-zero exit, never a panic.

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
fn adapters_lists_limits_and_features() {
    let (out, _) = exits(&["adapters"], 0);
    for needle in [
        "driver",
        "max storage binding",
        "timestamps",
        "f16",
        "subgroups",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let (json, _) = exits(&["adapters", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let first = &v.as_array().unwrap()[0];
    assert!(first["max_storage_buffer_binding_size"].as_u64().unwrap() > 0);
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
    // X = 70,000 x 1,000 x 4 bytes = 280 MB: past the 128 MiB binding limit of lavapipe and
    // of wgpu's defaults.
    let (_, err) = exits(
        &[
            "run",
            "--tokens",
            "70000",
            "--d-model",
            "1000",
            "--q-width",
            "8",
        ],
        2,
    );
    assert!(err.contains("max_storage_buffer_binding_size"), "{err}");
    assert!(err.contains("X [tokens, d_model]"), "{err}");
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
