//! A user's kernel (`qkv try`): the contract's checks and the conformance cases, on the
//! built-in kernels' own sources (the harness and the registry agree) and on planted faults,
//! each caught with the message a person can act on.

mod common;

use common::ctx;
use qkv_wgpu::conformance::{cases, run_case_blocking, CaseResult};
use qkv_wgpu::kernels::{CustomInfo, CustomKernel};
use qkv_wgpu::{ElementType, Kernel, KernelConfig, KernelSpec};

/// Every case of `kernel`, in every type it reads.
fn run_all(kernel: &CustomKernel) -> Vec<CaseResult> {
    cases(kernel.tile, &kernel.elements, &ctx().limits())
        .unwrap()
        .iter()
        .map(|case| {
            let spec = kernel.spec(case.element).unwrap();
            run_case_blocking(ctx(), &spec, case, 7).unwrap()
        })
        .collect()
}

fn naive() -> String {
    CustomKernel::template(Kernel::Naive).unwrap()
}

/// `naive`'s template with `from` replaced by `to` (which must be there).
fn planted(from: &str, to: &str) -> String {
    let src = naive();
    assert!(src.contains(from), "the template has no `{from}`");
    src.replacen(from, to, 1)
}

fn example(name: &str) -> String {
    let path = format!("{}/examples/wgsl/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

fn minimal() -> String {
    example("minimal.wgsl")
}

#[test]
fn the_example_kernels_of_the_walkthrough_pass() {
    let walkthrough = [
        ("minimal.wgsl", (16, 16), 1),
        ("four_columns.wgsl", (64, 16), 4),
    ];
    for (name, tile, w_align) in walkthrough {
        let k = CustomKernel::parse(name, &example(name)).unwrap();
        assert_eq!(
            (k.tile, k.invocations, k.w_align),
            (tile, 256, w_align),
            "{name}"
        );
        assert_eq!(k.elements, [ElementType::F32], "{name}");
        for r in run_all(&k) {
            assert!(r.pass, "{name}: {}: {:?}", r.case.name, r.first);
        }
    }
}

#[test]
fn every_built_in_kernel_the_contract_covers_passes_as_a_users_kernel() {
    // The two outside it: a second pass (split-K) and W transposed for cooperative matrices.
    for kernel in [Kernel::Splitk, Kernel::Coopmat] {
        let e = CustomKernel::template(kernel).unwrap_err();
        assert!(e.contains("outside the contract"), "{e}");
    }
    for kernel in [
        Kernel::Naive,
        Kernel::Tiled,
        Kernel::Regtile,
        Kernel::Direct,
        Kernel::Subgroup,
        Kernel::Texture,
        Kernel::SubgroupTexture,
        Kernel::Blocktile,
    ] {
        let src = CustomKernel::template(kernel).unwrap();
        let custom = CustomKernel::parse(&format!("{kernel}.wgsl"), &src)
            .unwrap_or_else(|e| panic!("{kernel}: {e}"));
        let spec = kernel.def().default_config();
        let builtin = qkv_wgpu::KernelSpec::new(spec).unwrap();
        // Read from the source with the overrides at their defaults: the registry's tile and
        // workgroup for the default configuration.
        assert_eq!(custom.tile, builtin.tile, "{kernel}");
        assert_eq!(custom.invocations, builtin.invocations, "{kernel}");
        assert_eq!(custom.elements, kernel.dtypes(), "{kernel}");
        for r in run_all(&custom) {
            assert!(
                r.pass,
                "{kernel}: {} in {} failed: {:?}",
                r.case.name, r.case.element, r.first
            );
        }
    }
}

#[test]
fn a_skipped_last_row_fails_with_the_last_row_of_tiles_marked() {
    let k = CustomKernel::parse(
        "skip_row.wgsl",
        &planted(
            "if row >= params.tokens ||",
            "if row + 1u >= params.tokens ||",
        ),
    )
    .unwrap();
    let results = run_all(&k);
    let worked = &results[0];
    assert!(
        !worked.pass,
        "the worked example has one row: it is the last"
    );
    let r = results.iter().find(|r| r.case.shape.tokens == 35).unwrap();
    assert!(!r.pass);
    let first = r.first[0];
    assert_eq!((first.part, first.row), ("Q", 34), "{:?}", r.first);
    assert!(
        first.got.is_nan(),
        "never written: the NaN the outputs were filled with"
    );
    let map = r.map.as_ref().unwrap();
    // 35 tokens in tiles of 16: rows of tiles 0, 1, 2; only the last holds wrong elements.
    let text = map.render();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(!lines[0].contains('x') && !lines[0].contains('#'), "{text}");
    assert!(lines[2].contains('x'), "{text}");
}

#[test]
fn a_skipped_bias_fails_only_the_cases_with_a_bias() {
    let k = CustomKernel::parse(
        "no_bias.wgsl",
        &planted("acc += bias[params.col0 + col];", ""),
    )
    .unwrap();
    for r in run_all(&k) {
        assert_eq!(
            r.pass, !r.case.shape.bias,
            "{} in {}",
            r.case.name, r.case.element
        );
    }
}

#[test]
fn an_off_by_one_in_ks_offset_fails_k_alone() {
    let k = CustomKernel::parse(
        "k_offset.wgsl",
        &planted(
            "put(1u, out_index(row, col - qw, kvw, params.kv_head_dim), value);",
            "put(1u, out_index(row, col - qw + 1u, kvw, params.kv_head_dim), value);",
        ),
    )
    .unwrap();
    let results = run_all(&k);
    let r = results
        .iter()
        .find(|r| r.case.shape.tokens == 35 && r.case.element == ElementType::F32)
        .unwrap();
    assert!(!r.pass);
    assert!(
        r.report.q.pass && r.report.v.pass && !r.report.k.pass,
        "{:?}",
        r.report
    );
    assert!(r.first.iter().all(|m| m.part == "K"), "{:?}", r.first);
}

#[test]
fn contract_violations_are_refused_with_what_the_contract_wants() {
    let err = |src: &str| CustomKernel::parse("bad.wgsl", src).unwrap_err();
    // A wrong binding type.
    let e = err(&planted(
        "@group(0) @binding(3) var<storage, read> bias: array<f32>;",
        "@group(0) @binding(3) var<storage, read_write> bias: array<f32>;",
    ));
    assert!(
        e.contains("@binding(3) `bias`: declared `read_write`"),
        "{e}"
    );
    assert!(e.contains("var<storage, read> bias: array<f32>"), "{e}");
    // A missing entry point.
    let e = err(&planted("fn main(", "fn project("));
    assert!(
        e.contains("no `@compute fn main` (entry points found: project)"),
        "{e}"
    );
    // A syntax error, with its line and column.
    let e = err(&planted("var acc = 0.0;", "var acc = ;"));
    let line = naive()
        .lines()
        .position(|l| l.contains("var acc = 0.0;"))
        .unwrap()
        + 1;
    assert!(e.contains(&format!("bad.wgsl:{line}:")), "{e}");
    // An override the host sets, missing.
    let e = err(&planted("override HEAD_LAYOUT: bool = false;", ""));
    assert!(e.contains("unresolved") || e.contains("HEAD_LAYOUT"), "{e}");
    // No tile.
    let e = err(&planted(
        "const TILE_ROWS: u32 = 16u;",
        "const TILE_R: u32 = 16u;",
    ));
    assert!(e.contains("TILE_ROWS") || e.contains("TILE_R"), "{e}");
    // A half type claimed over f32 arrays.
    let e = err(&minimal().replace("// qkv: elements f32", "// qkv: elements f32, f16"));
    assert!(e.contains("cannot hold the half types"), "{e}");
    // An unknown header directive.
    let e = err(&naive().replace("// qkv: w_align 1", "// qkv: wg 64"));
    assert!(e.contains("unknown directive"), "{e}");
}

#[test]
fn a_type_it_does_not_claim_is_refused_by_name() {
    let src = naive().replace("// qkv: elements f32, f16, bf16", "// qkv: elements f32");
    let k = CustomKernel::parse("f32_only.wgsl", &src).unwrap();
    let e = k.spec(ElementType::Bf16).unwrap_err();
    assert!(
        e.contains("f32_only.wgsl reads f32") && e.contains("elements f32, bf16"),
        "{e}"
    );
}

/// `qkv try ARGS` in a temporary cache; (exit code, stdout, stderr).
fn qkv_try(args: &[&str]) -> (i32, String, String) {
    let out = assert_cmd::Command::cargo_bin("qkv")
        .unwrap()
        .env(
            "QKV_CACHE_DIR",
            std::env::temp_dir().join(format!("qkv-try-cache-{}", std::process::id())),
        )
        .arg("try")
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

#[test]
fn qkv_try_checks_then_times_a_template_and_reports_a_fault_it_plants() {
    let dir = tempfile::tempdir().unwrap();
    let (code, template, _) = qkv_try(&["--template", "tiled"]);
    assert_eq!(code, 0);
    assert!(
        template.starts_with("// A projection kernel for `qkv try`"),
        "{template}"
    );
    let good = dir.path().join("tiled.wgsl");
    std::fs::write(&good, &template).unwrap();
    let path = good.to_str().unwrap();
    let (code, out, err) = qkv_try(&[
        path,
        "--tokens",
        "40",
        "--against",
        "naive",
        "--repeats",
        "1",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("tile 16 x 16") && !out.contains("FAIL"),
        "{out}"
    );
    assert_eq!(out.matches("  PASS  ").count(), 7, "{out}");
    // The timing table: this kernel by its file name, beside naive.
    assert!(
        out.contains("tiled.wgsl") && out.lines().any(|l| l.contains(" naive ")),
        "{out}"
    );

    let bad = dir.path().join("skip_row.wgsl");
    // Its last row never stored.
    let store = "if row < params.tokens && col < n_out {";
    assert!(
        template.contains(store),
        "the planted line is in tiled's source"
    );
    let planted = template.replacen(store, "if row + 1u < params.tokens && col < n_out {", 1);
    std::fs::write(&bad, planted).unwrap();
    let (code, out, _) = qkv_try(&[bad.to_str().unwrap(), "--tokens", "40"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL") && out.contains("output tiles") && out.contains("not timed"),
        "{out}"
    );

    let (code, _, err) = qkv_try(&[dir.path().join("missing.wgsl").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read the kernel"), "{err}");
    std::fs::write(&bad, "fn main() {").unwrap();
    let (code, _, err) = qkv_try(&[bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("skip_row.wgsl:1:"), "{err}");
}

#[test]
fn a_kernel_that_never_ends_is_stopped_with_a_clear_error_and_one_that_writes_out_of_bounds_fails()
{
    let dir = tempfile::tempdir().unwrap();
    // A loop without an exit. lavapipe ends any loop after 65535 iterations (its own
    // watchdog: the results are wrong, and say so); eight loads an iteration make each check
    // take seconds there, so --timeout 1 stops it first, as it would a GPU's endless kernel.
    let forever = minimal().replacen(
        "    var acc = 0.0;",
        "    var acc = 0.0;\n    loop {\n        for (var j = 0u; j < 8u; j++) {\n            \
         acc += x[(row * 8u + j) % params.d_model];\n        }\n        q[0] = acc;\n    }",
        1,
    );
    let path = dir.path().join("forever.wgsl");
    std::fs::write(&path, forever).unwrap();
    let start = std::time::Instant::now();
    let (code, _, err) = qkv_try(&[path.to_str().unwrap(), "--timeout", "1"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("did not finish within 1 s (--timeout)"),
        "{err}"
    );
    assert!(start.elapsed().as_secs() < 60, "stopped, not hung");

    // Writes far past the end of Q instead of into it: bounds-checked (a user's kernel
    // always is), they never leave Q's binding; Q's own elements stay NaN, and the check
    // sees it.
    let oob = minimal().replacen(
        "q[out_index(row, c, qw, params.q_head_dim)] = acc;",
        "q[out_index(row, c, qw, params.q_head_dim) + 1000000u] = acc;",
        1,
    );
    let path = dir.path().join("oob.wgsl");
    std::fs::write(&path, oob).unwrap();
    let map = dir.path().join("map.svg");
    let (code, out, err) = qkv_try(&[path.to_str().unwrap(), "--map", map.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAIL") && out.contains("Q[0, 0] = NaN"),
        "{out}"
    );
    let svg = std::fs::read_to_string(&map).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("oob.wgsl: worked example"),
        "{svg}"
    );
    assert!(svg.contains("#d32f2f"), "red tiles: all wrong");
}

#[test]
fn watch_runs_again_when_the_file_changes() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("watched.wgsl");
    std::fs::write(&path, minimal()).unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("qkv"))
        .args([
            "try",
            path.to_str().unwrap(),
            "--watch",
            "--against",
            "none",
        ])
        .args(["--tokens", "16", "--repeats", "1"])
        .env("QKV_CACHE_DIR", dir.path().join("cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        stderr
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx.send(l)))
    });
    std::thread::spawn(move || {
        stdout
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx2.send(l)))
    });
    let wait_for = |what: &str| -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(std::time::Duration::from_secs(120)) {
                Ok(l) if l.contains(what) => return seen,
                Ok(l) => seen.push(l),
                Err(_) => panic!("no '{what}' in time; saw:\n{}", seen.join("\n")),
            }
        }
    };
    let first = wait_for("watching");
    assert!(
        first
            .iter()
            .any(|l| l.contains("minimal") || l.contains("watched.wgsl")),
        "{first:?}"
    );
    // Break it: the bias never added.
    std::thread::sleep(std::time::Duration::from_millis(1100)); // a new modification time
    std::fs::write(&path, minimal().replacen("acc += bias[c];", "", 1)).unwrap();
    wait_for("changed:");
    // stdout and stderr come through two readers: wait for the report's last line itself.
    let second = wait_for("not timed");
    child.kill().unwrap();
    let _ = child.wait();
    assert!(second.iter().any(|l| l.contains("FAIL")), "{second:?}");
}

/// `qkv try ARGS`, killed after `secs` (a hang shows as exit code -1); (exit code, stdout,
/// stderr).
fn qkv_try_within(secs: u64, args: &[&str]) -> (i32, String, String) {
    let out = assert_cmd::Command::cargo_bin("qkv")
        .unwrap()
        .env(
            "QKV_CACHE_DIR",
            std::env::temp_dir().join(format!("qkv-try-cache-{}", std::process::id())),
        )
        .arg("try")
        .args(args)
        .timeout(std::time::Duration::from_secs(secs))
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// `minimal.wgsl` with `from` replaced by `to` (which must be there), written to `dir/name`.
fn planted_minimal(dir: &std::path::Path, name: &str, from: &str, to: &str) -> String {
    let src = minimal();
    assert!(src.contains(from), "minimal.wgsl has no `{from}`");
    let path = dir.join(name);
    std::fs::write(&path, src.replacen(from, to, 1)).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_kernel_slow_only_past_the_checks_token_counts_is_stopped_in_the_timing_too() {
    let dir = tempfile::tempdir().unwrap();
    // Endless (as lavapipe runs it: 65535 iterations of 8 loads in every invocation) only
    // past 100 tokens: every check has fewer, the timing 128.
    let slow = planted_minimal(
        dir.path(),
        "slow.wgsl",
        "    var acc = 0.0;",
        "    var acc = 0.0;\n    if params.tokens > 100u {\n        loop {\n            for (var j = \
         0u; j < 8u; j++) {\n                acc += x[(row * 8u + j) % params.d_model];\n  \
                   }\n            q[0] = acc;\n        }\n    }",
    );
    let start = std::time::Instant::now();
    let (code, out, err) = qkv_try_within(
        180,
        &[
            &slow,
            "--timeout",
            "5",
            "--tokens",
            "128",
            "--against",
            "none",
        ],
    );
    assert_eq!(code, 3, "{out}{err}");
    assert!(!out.contains("FAIL"), "the checks pass: {out}");
    assert!(
        err.contains("slow.wgsl on gpt2 x 128 tokens did not finish within 5 s (--timeout)"),
        "{err}"
    );
    assert!(start.elapsed().as_secs() < 120, "stopped, not hung");
}

#[test]
fn the_map_is_never_written_over_the_kernel_and_replaces_only_its_own_earlier_map() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = planted_minimal(dir.path(), "k.wgsl", "acc += bias[c];", "");
    let source = std::fs::read_to_string(&kernel).unwrap();
    // The kernel itself, --force or not, by its name or a hard link to it.
    let link = dir.path().join("link.svg");
    std::fs::hard_link(&kernel, &link).unwrap();
    for map in [kernel.as_str(), link.to_str().unwrap()] {
        let (code, out, err) = qkv_try(&[&kernel, "--map", map, "--force"]);
        assert_eq!(code, 2, "{out}{err}");
        assert!(
            err.contains("is the kernel") && err.contains("itself"),
            "{err}"
        );
        assert!(!out.contains("PASS"), "refused before any check: {out}");
        assert_eq!(std::fs::read_to_string(&kernel).unwrap(), source);
    }
    // Its own earlier map is replaced without --force, as an edit-and-rerun loop expects.
    let map = dir.path().join("m.svg");
    let map = map.to_str().unwrap();
    for _ in 0..2 {
        let (code, out, err) = qkv_try(&[&kernel, "--map", map]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(out.contains("map of the wrong elements"), "{out}");
    }
    // Someone else's file is not, unless forced.
    std::fs::write(map, "<svg>a drawing of mine</svg>").unwrap();
    let (code, _, err) = qkv_try(&[&kernel, "--map", map]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a map qkv drew"), "{err}");
    assert!(std::fs::read_to_string(map).unwrap().contains("of mine"));
    let (code, _, _) = qkv_try(&[&kernel, "--map", map, "--force"]);
    assert_eq!(code, 1);
    // A map in a directory that does not exist: refused before the checks.
    let nodir = dir.path().join("nodir").join("m.svg");
    let (code, out, err) = qkv_try(&[&kernel, "--map", nodir.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("does not exist") && !out.contains("FAIL"),
        "{out}{err}"
    );
}

#[test]
fn only_a_regular_file_of_at_most_1_mib_is_read_as_a_kernel() {
    let dir = tempfile::tempdir().unwrap();
    // A FIFO nobody writes to: refused at once, not waited on.
    let fifo = dir.path().join("fifo.wgsl");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (code, _, err) = qkv_try_within(60, &[fifo.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a FIFO, not a regular file"), "{err}");
    // A kernel past 1 MiB (a valid one, with a long comment).
    let big = dir.path().join("big.wgsl");
    std::fs::write(&big, minimal() + "//" + &"x".repeat(1 << 20) + "\n").unwrap();
    let (code, out, err) = qkv_try_within(
        120,
        &[big.to_str().unwrap(), "--against", "none", "--tokens", "16"],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("larger than 1048576 bytes (1.0 MiB)"), "{err}");
}

#[test]
fn a_tile_too_large_for_the_checks_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for (from, name) in [
        ("const TILE_COLS: u32 = 16u;", "wide.wgsl"),
        ("const TILE_ROWS: u32 = 16u;", "tall.wgsl"),
    ] {
        let huge = from.replace("16u", "4294967295u");
        let path = planted_minimal(dir.path(), name, from, &huge);
        let (code, out, err) = qkv_try(&[&path, "--against", "none", "--tokens", "16"]);
        assert_eq!(code, 2, "{name}: {out}{err}");
        assert!(
            err.contains("makes the checks' shapes too large") && err.contains("past 4294967295"),
            "{name}: {err}"
        );
        assert!(!out.contains("PASS"), "{name}: no check ran: {out}");
    }
    let e = cases((16, u32::MAX), &[ElementType::F32], &ctx().limits()).unwrap_err();
    assert!(e.to_string().contains("8589934593 tokens"), "{e}");
}

#[test]
fn workgroup_storage_past_the_devices_limit_is_refused_before_any_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    // 4 MiB of workgroup storage, written only by an invocation that never runs.
    let src = minimal()
        .replacen(
            "const TILE_COLS: u32 = 16u;",
            "var<workgroup> big: array<f32, 1048576>;\nconst TILE_COLS: u32 = 16u;",
            1,
        )
        .replacen(
            "    var acc = 0.0;",
            "    var acc = 0.0;\n    if row == 4294967295u { big[col] = 1.0; }",
            1,
        );
    let k = CustomKernel::parse("big_shared.wgsl", &src).unwrap();
    assert_eq!(k.workgroup_storage, 4 << 20);
    let path = dir.path().join("big_shared.wgsl");
    std::fs::write(&path, &src).unwrap();
    let (code, out, err) = qkv_try(&[
        path.to_str().unwrap(),
        "--against",
        "none",
        "--tokens",
        "16",
        "--repeats",
        "1",
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("4194304 bytes of workgroup storage")
            && err.contains("(max_compute_workgroup_storage_size)"),
        "{err}"
    );
    assert!(!out.contains("PASS"), "no check ran: {out}");
    // The workgroup's shape, each against its own limit.
    let k = CustomKernel::parse("minimal.wgsl", &minimal()).unwrap();
    assert_eq!(k.workgroup_size, [16, 16, 1]);
    let small = wgpu::Limits {
        max_compute_invocations_per_workgroup: 128,
        max_compute_workgroup_size_y: 8,
        ..wgpu::Limits::default()
    };
    let e = k.check_limits(&small).unwrap_err();
    assert!(
        e.contains("256 invocations per workgroup")
            && e.contains("allows 128 (max_compute_invocations_per_workgroup)")
            && e.contains("16 @workgroup_size y; the device allows 8"),
        "{e}"
    );
    assert!(k.check_limits(&wgpu::Limits::default()).is_ok());
}

#[test]
fn a_write_just_past_the_end_of_q_fails_naming_q() {
    let dir = tempfile::tempdir().unwrap();
    // Every element right, and one more written 3 past Q's end (into its guard words).
    let past = planted_minimal(
        dir.path(),
        "past.wgsl",
        "q[out_index(row, c, qw, params.q_head_dim)] = acc;",
        "q[out_index(row, c, qw, params.q_head_dim)] = acc;\n        q[params.tokens * qw + \
         3u] = acc;",
    );
    let (code, out, err) = qkv_try(&[&past, "--against", "none", "--tokens", "16"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("Q: wrote past the end (its guard words changed) in 7 of 7 checks")
            && out.contains("K, V: right in every check"),
        "{out}"
    );
    assert!(
        out.contains("Q: wrote past the end: "),
        "the details: {out}"
    );
}

#[test]
fn a_kernel_that_ignores_col0_fails_the_column_block_check() {
    let k = CustomKernel::parse(
        "no_col0.wgsl",
        &minimal().replacen("let c = params.col0 + col;", "let c = col;", 1),
    )
    .unwrap();
    for r in run_all(&k) {
        assert_eq!(r.pass, !r.case.split_w, "{}", r.case.name);
    }
    // The same, from the command line.
    let dir = tempfile::tempdir().unwrap();
    let path = planted_minimal(
        dir.path(),
        "no_col0.wgsl",
        "let c = params.col0 + col;",
        "let c = col;",
    );
    let (code, out, err) = qkv_try(&[&path, "--against", "none", "--tokens", "16"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("FAIL") && out.contains("col0 > 0"), "{out}");
}

#[test]
fn one_wrong_column_is_summarized_before_the_details_and_errors_are_not_doubled() {
    let dir = tempfile::tempdir().unwrap();
    // Q's column 5 one off (the worked example has 2 columns: it passes).
    let path = planted_minimal(
        dir.path(),
        "col5.wgsl",
        "q[out_index(row, c, qw, params.q_head_dim)] = acc;",
        "q[out_index(row, c, qw, params.q_head_dim)] = select(acc, acc + 1.0, c == 5u);",
    );
    let (code, out, _) = qkv_try(&[&path]);
    assert_eq!(code, 1, "{out}");
    let summary = out
        .find("  Q column 5 wrong (in every token row) in 6 of 7 checks")
        .unwrap_or_else(|| panic!("no summary: {out}"));
    let details = out.find("details of each failed check:").unwrap();
    let first_element = out.find("Q[0, 5] = ").unwrap();
    assert!(summary < details && details < first_element, "{out}");
    assert!(out.contains("  K, V: right in every check"), "{out}");

    // A syntax error: one `error:`, then naga's own words.
    let bad = dir.path().join("syntax.wgsl");
    std::fs::write(&bad, "fn main() {").unwrap();
    let (code, _, err) = qkv_try(&[bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: invalid input: syntax.wgsl is not valid WGSL: expected"),
        "{err}"
    );
    assert_eq!(err.matches("error:").count(), 1, "{err}");
}

#[test]
fn a_users_kernel_is_a_variant_of_its_own() {
    let k = CustomKernel::parse("mine.wgsl", &naive()).unwrap();
    assert!(k.native_f16, "naive's template declares NATIVE_F16");
    let spec = k.spec(ElementType::F16).unwrap();
    assert_eq!(
        (spec.kernel(), spec.to_string()),
        (Kernel::User, "mine.wgsl".into())
    );
    assert!(!Kernel::ALL.contains(&Kernel::User));
    assert!("user".parse::<Kernel>().is_err());
    // NATIVE_F16 is the user's kernel's own answer: given where declared, never otherwise.
    let mut summary = ctx().summary.clone();
    (summary.shader_f16, summary.f16_unpack) = (true, true);
    assert_eq!(spec.device_constants(&summary), vec![("NATIVE_F16", 1.0)]);
    let mut undeclared = spec.clone();
    undeclared.custom = undeclared.custom.map(|c| CustomInfo {
        native_f16: false,
        ..c
    });
    assert!(undeclared.device_constants(&summary).is_empty());
    // It has no configuration to resolve and is no template.
    let e = KernelSpec::new(KernelConfig::from(Kernel::User)).unwrap_err();
    assert!(e.contains("resolved from its file"), "{e}");
    assert!(CustomKernel::template(Kernel::User).is_err());
}

#[test]
fn qkv_try_weight_type_times_the_built_in_kernels_on_blocks_and_the_users_on_their_values() {
    // Issue #34: the user's kernel reads W in the run's type (the contract); decode reads the
    // same weights in Q4_0 blocks. Both are checked: one product.
    let dir = tempfile::tempdir().unwrap();
    let (_, template, _) = qkv_try(&["--template", "tiled"]);
    let file = dir.path().join("tiled.wgsl");
    std::fs::write(&file, &template).unwrap();
    let (code, out, err) = qkv_try(&[
        file.to_str().unwrap(),
        "--tokens",
        "2",
        "--against",
        "decode",
        "--weight-type",
        "q4_0",
        "--repeats",
        "1",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("gpt2")).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows.iter().all(|l| l.ends_with("PASS")), "{out}");
    assert!(
        rows.iter()
            .any(|l| l.contains("f32/q4_0") && l.contains("decode")),
        "{out}"
    );
    assert!(
        rows.iter()
            .any(|l| l.contains("tiled.wgsl") && !l.contains("q4_0")),
        "{out}"
    );
}
