//! The user's files under races, signals and failing disks (issue #11): `qkv project` and
//! `qkv bench --plot` run as a user would run them, interrupted, raced and starved of disk,
//! and the directory inspected afterwards. Nothing the user had may be lost or half replaced,
//! and nothing partial may be left behind except after SIGKILL, which the next run cleans up
//! and names.

mod common;

use common::model::*;
use rand::SeedableRng;
use safetensors::Dtype;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A model with X [tokens, 64] and separate [64, 64] weights named wq, wk, wv (out-in).
struct Model {
    dir: tempfile::TempDir,
}

fn model(tokens: u64, seed: u64) -> Model {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tensors: Vec<T> = ["wq", "wk", "wv"]
        .iter()
        .map(|n| tensor(n, Dtype::F32, &[64, 64], &mut rng))
        .collect();
    write_checkpoint(&dir.path().join("m.safetensors"), &tensors);
    write_x(&dir.path().join("x.npy"), "f32", &[tokens, 64], &mut rng);
    Model { dir }
}

impl Model {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `qkv project` into `out`, then `extra`.
    fn args(&self, out: &Path, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = [
            "project",
            "--input",
            s(&self.path("x.npy")),
            "--weights",
            s(&self.path("m.safetensors")),
            "--wq",
            "wq",
            "--wk",
            "wk",
            "--wv",
            "wv",
            "--weight-layout",
            "out-in",
            "--kernel",
            "direct",
            "--out",
            s(out),
        ]
        .map(String::from)
        .to_vec();
        a.extend(extra.iter().map(|e| e.to_string()));
        a
    }
}

fn bin() -> Command {
    qkv_command()
}

/// Every name in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn partials(dir: &Path) -> Vec<String> {
    listing(dir)
        .into_iter()
        .filter(|n| n.ends_with(".qkv-partial"))
        .collect()
}

/// Starts a long `qkv project` (a 131,072-token stream in 64-token chunks) and returns once
/// its three partial files exist: the run is mid-stream.
fn start_long_run(m: &Model, out: &Path) -> Child {
    let child = bin()
        .args(m.args(out, &["--no-check", "--chunk-tokens", "64"]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while partials(out).len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no partial files appeared in {out:?}: {:?}",
            listing(out)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[cfg(unix)]
fn signal_and_wait(mut child: Child, sig: i32) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

#[cfg(unix)]
#[test]
fn sigint_and_sigterm_mid_stream_leave_no_partial_file_and_die_by_the_signal() {
    use std::os::unix::process::ExitStatusExt;
    // Issue #11, item 4: an interrupted run left its hidden partial files (gigabytes on
    // real batches), and nothing cleaned them up.
    let m = model(1 << 17, 1);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let out = m.path(&format!("out-{sig}"));
        let child = start_long_run(&m, &out);
        let (status, stderr) = signal_and_wait(child, sig);
        assert_eq!(status.signal(), Some(sig), "{status:?}\n{stderr}");
        assert!(stderr.contains("interrupted by SIG"), "{stderr}");
        assert!(
            stderr.contains("3 partial files removed"),
            "signal {sig}: {stderr}"
        );
        assert!(
            listing(&out).is_empty(),
            "signal {sig} left {:?}",
            listing(&out)
        );
    }
}

#[cfg(unix)]
#[test]
fn after_sigkill_the_next_run_names_and_removes_the_stale_partials() {
    use std::os::unix::process::ExitStatusExt;
    let m = model(1 << 17, 2);
    let out = m.path("out");
    let child = start_long_run(&m, &out);
    let (status, _) = signal_and_wait(child, libc::SIGKILL);
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    let stale = partials(&out);
    assert_eq!(stale.len(), 3, "{:?}", listing(&out));

    let small = model(40, 3);
    let run = bin().args(small.args(&out, &[])).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("removed 3 partial files left in") && stderr.contains("interrupted run"),
        "{stderr}"
    );
    for name in &stale {
        assert!(
            stderr.contains(name.as_str()),
            "{name} not named in {stderr}"
        );
    }
    assert_eq!(listing(&out), ["k.npy", "q.npy", "v.npy"]);
}

#[test]
fn a_second_run_into_a_busy_directory_is_refused_and_the_first_finishes() {
    // Issue #11, item 1: two runs into one --out both succeeded; the second silently
    // replaced the first's files.
    let m = model(1 << 17, 4);
    let out = m.path("out");
    let first = start_long_run(&m, &out);
    let small = model(40, 5);
    let second = bin().args(small.args(&out, &[])).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another qkv run is writing into"),
        "{stderr}"
    );
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(listing(&out), ["k.npy", "q.npy", "v.npy"]);
    assert_eq!(read(&out.join("q.npy")).shape, vec![1 << 17, 64]);
}

#[test]
fn force_never_overwrites_an_input() {
    // Issue #11, item 3: with --force, X (or the checkpoint) at DIR/q.npy was destroyed.
    let m = model(40, 6);
    let out = m.path("out");
    std::fs::create_dir(&out).unwrap();
    let x_bytes = std::fs::read(m.path("x.npy")).unwrap();
    // X itself as out/q.npy, and the checkpoint through a hard link as out/k.npy.
    std::fs::copy(m.path("x.npy"), out.join("q.npy")).unwrap();
    std::fs::hard_link(m.path("m.safetensors"), out.join("k.npy")).unwrap();
    for (input, flag, name) in [
        (out.join("q.npy"), "--input", "q.npy"),
        (m.path("m.safetensors"), "--weights", "k.npy"),
    ] {
        let mut args = m.args(&out, &["--force"]);
        let at = args.iter().position(|a| a == flag).unwrap();
        args[at + 1] = s(&input).to_string();
        let run = bin().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("is the same file as") && stderr.contains(name),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read(out.join("q.npy")).unwrap(), x_bytes);
    assert_eq!(
        std::fs::read(out.join("k.npy")).unwrap(),
        std::fs::read(m.path("m.safetensors")).unwrap()
    );
}

#[cfg(unix)]
#[test]
fn a_run_killed_between_its_renames_is_rolled_back_by_the_next() {
    use std::os::unix::process::ExitStatusExt;
    // Issue #11, item 6: the three renames were three steps; dying between them left a mix
    // of new and old files.
    let (m1, m2) = (model(40, 7), model(40, 8));
    let out = m1.path("out");
    let first = bin().args(m1.args(&out, &[])).output().unwrap();
    assert!(first.status.success());
    let old: Vec<Vec<u8>> = ["q.npy", "k.npy", "v.npy"]
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();
    // The second run dies (abort) right after putting its new q.npy in place.
    let killed = bin()
        .args(m2.args(&out, &["--force"]))
        .env("QKV_TEST_ABORT_COMMIT_AT", "1")
        .output()
        .unwrap();
    assert_eq!(killed.status.signal(), Some(libc::SIGABRT));
    assert_ne!(
        std::fs::read(out.join("q.npy")).unwrap(),
        old[0],
        "q.npy is new"
    );
    // The next run rolls the commit back before anything else (here it then refuses to
    // overwrite without --force): the old three files are all back.
    let next = bin().args(m2.args(&out, &[])).output().unwrap();
    let stderr = String::from_utf8_lossy(&next.stderr);
    assert_eq!(next.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("interrupted while putting its outputs in place")
            && stderr.contains("restored the previous q.npy"),
        "{stderr}"
    );
    for (f, want) in ["q.npy", "k.npy", "v.npy"].iter().zip(&old) {
        assert_eq!(&std::fs::read(out.join(f)).unwrap(), want, "{f}");
    }
    assert_eq!(listing(&out), ["k.npy", "q.npy", "v.npy"]);
}

/// Runs `args` with writes past `kib` KiB failing (RLIMIT_FSIZE, SIGXFSZ ignored): a disk
/// that fills up, without needing a small file system.
#[cfg(unix)]
fn with_file_size_limit(args: &[String], kib: u32) -> std::process::Output {
    let script = format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\"");
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(script)
        .arg(assert_cmd::cargo::cargo_bin("qkv"))
        .args(args)
        .env(
            "QKV_CACHE_DIR",
            std::env::temp_dir().join(format!("qkv-test-cache-{}", std::process::id())),
        );
    c.output().unwrap()
}

#[cfg(unix)]
#[test]
fn a_full_disk_is_an_io_error_with_its_own_exit_code_and_leaves_nothing() {
    // Issue #11, item 11: disk-full output was reported as "invalid input" with exit 2.
    let m = model(4096, 9);
    let out = m.path("out");
    let run = with_file_size_limit(&m.args(&out, &[]), 64);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(4), "{stderr}");
    assert!(
        (stderr.contains("cannot write") || stderr.contains("cannot reserve"))
            && !stderr.contains("invalid input"),
        "{stderr}"
    );
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
}

#[cfg(unix)]
#[test]
fn a_plot_on_a_full_disk_fails_and_an_existing_plot_needs_force() {
    // Issue #11, item 8: --plot reported success on a full disk and left an empty file; it
    // also replaced an existing plot without asking.
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("p.svg");
    let bench = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "bench",
            "--d-model",
            "16",
            "--q-width",
            "16",
            "--kv-width",
            "8",
            "--tokens",
            "8,16",
            "--kernel",
            "direct",
            "--repeats",
            "1",
            "--no-cpu",
            "--plot",
            s(&plot),
        ]
        .map(String::from)
        .to_vec();
        a.extend(extra.iter().map(|e| e.to_string()));
        a
    };
    let run = with_file_size_limit(&bench(&[]), 4);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(4), "{stderr}");
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));

    std::fs::write(&plot, "mine").unwrap();
    let run = bin().args(bench(&[])).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("already exists; pass --force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&plot).unwrap(), "mine");
    let run = bin().args(bench(&["--force"])).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(std::fs::read_to_string(&plot).unwrap().contains("<svg"));
    assert_eq!(listing(dir.path()), ["p.svg"]);
}

#[test]
fn a_closed_stdout_ends_the_report_not_the_run() {
    // Issue #11, item 5: for `project` the files were written, yet the exit was 101.
    let m = model(40, 10);
    let out = m.path("out");
    let mut child = bin()
        .args(m.args(&out, &[]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let run = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{:?}\n{stderr}", run.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(listing(&out), ["k.npy", "q.npy", "v.npy"]);
}

/// `qkv ARGS` under `ulimit -f KIB` with SIGXFSZ left at its default (it kills the process
/// unless qkv handles it).
#[cfg(unix)]
fn with_file_size_limit_and_sigxfsz(args: &[String], kib: u32) -> std::process::Output {
    let script = format!("ulimit -f {kib}; exec \"$0\" \"$@\"");
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(script)
        .arg(assert_cmd::cargo::cargo_bin("qkv"))
        .args(args)
        .env(
            "QKV_CACHE_DIR",
            std::env::temp_dir().join(format!("qkv-test-cache-{}", std::process::id())),
        );
    c.output().unwrap()
}

#[cfg(unix)]
#[test]
fn a_file_size_limit_is_an_io_error_not_sigxfsz_item_9() {
    // Issue #22, item 9: under `ulimit -f` the run died by SIGXFSZ (exit 153, no message),
    // leaving its partial files and the lock.
    let m = model(4096, 9);
    let out = m.path("out");
    let run = with_file_size_limit_and_sigxfsz(&m.args(&out, &[]), 64);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("error: "), "{stderr}");
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_found_before_any_gpu_work_item_8() {
    // Issue #22, item 8: the space was found missing 34 chunks into the run. The outputs'
    // blocks are reserved when their files are made, before the projection starts.
    let m = model(4096, 9);
    let out = m.path("out");
    for format in ["npy", "safetensors"] {
        let run = with_file_size_limit(&m.args(&out, &["--out-format", format]), 64);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(4), "{format}: {stderr}");
        assert!(stderr.contains("cannot reserve"), "{format}: {stderr}");
        assert!(!stderr.contains("projecting on"), "{format}: {stderr}");
        assert!(listing(&out).is_empty(), "{:?}", listing(&out));
    }
}

#[cfg(unix)]
#[test]
fn a_fifo_or_process_substitution_input_is_refused_by_name_item_10() {
    // Issue #22, item 10: `--input <(cat x.npy)` said "the file is empty".
    let m = model(16, 3);
    let out = m.path("out");
    let fifo = m.path("x.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let mut args = m.args(&out, &[]);
    let at = args.iter().position(|a| a == "--input").unwrap() + 1;
    args[at] = s(&fifo).to_string();
    let started = Instant::now();
    let run = bin().args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not a regular file"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));
    // As a shell's process substitution hands it over.
    if Path::new("/bin/bash").exists() {
        let x = s(&m.path("x.npy")).to_string();
        let at_w = args.iter().position(|a| a == "--weights").unwrap() + 1;
        let script = format!(
            "exec \"$0\" project --input <(cat '{x}') --weights '{}' --wq wq --wk wk --wv wv \
             --weight-layout out-in --kernel direct --out '{}'",
            args[at_w],
            s(&out)
        );
        let run = Command::new("/bin/bash")
            .arg("-c")
            .arg(script)
            .arg(assert_cmd::cargo::cargo_bin("qkv"))
            .env(
                "QKV_CACHE_DIR",
                std::env::temp_dir().join(format!("qkv-test-cache-{}", std::process::id())),
            )
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("is not a regular file"), "{stderr}");
    }
    // The weights too.
    let mut args = m.args(&out, &[]);
    let at_w = args.iter().position(|a| a == "--weights").unwrap() + 1;
    args[at_w] = s(&fifo).to_string();
    let run = bin().args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not a regular file"), "{stderr}");
}

#[test]
fn a_plot_into_a_missing_directory_fails_before_the_sweep_item_12() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("missing").join("p.svg");
    let run = bin()
        .args([
            "bench",
            "--d-model",
            "16",
            "--q-width",
            "16",
            "--tokens",
            "8",
            "--kernel",
            "direct",
            "--repeats",
            "1",
            "--no-cpu",
            "--plot",
            s(&plot),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("does not exist (nothing was run)"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&run.stdout).is_empty());
}

#[cfg(unix)]
#[test]
fn a_checkpoint_truncated_while_it_loads_is_an_error_not_sigbus_item_6() {
    // Issue #22, item 6: the memory map outlived the file's length; a read past the new end
    // killed the process with SIGBUS. Reads go through read(2) at an offset now.
    let m = model(4, 1);
    let path = m.path("m.safetensors");
    let ckpt = qkv_wgpu::io::checkpoint::Checkpoint::open(&path).unwrap();
    assert!(ckpt.tensor("wq").is_ok());
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let e = ckpt.tensor("wv").unwrap_err().to_string();
    assert!(e.contains("changed while it was read"), "{e}");
}

#[test]
fn a_huge_header_is_parsed_once_item_13() {
    // Issue #22, item 13: the header was parsed again on every lookup (13 to 21 s before a
    // 64x64 projection with a 70 MB header). 200,000 empty tensors beside the three.
    let m = model(8, 2);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut tensors: Vec<T> = ["wq", "wk", "wv"]
        .iter()
        .map(|n| tensor(n, Dtype::F32, &[64, 64], &mut rng))
        .collect();
    for i in 0..200_000 {
        tensors.push(T {
            name: format!("padding.layer.{i}.unused"),
            dtype: Dtype::F32,
            shape: vec![0],
            data: Vec::new(),
        });
    }
    write_checkpoint(&m.path("m.safetensors"), &tensors);
    let ckpt = qkv_wgpu::io::checkpoint::Checkpoint::open(&m.path("m.safetensors")).unwrap();
    assert_eq!(ckpt.names().len(), 200_003);
    let out = m.path("out");
    let run = bin().args(m.args(&out, &[])).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn an_empty_cache_dir_is_unset_and_a_users_tuning_json_is_untouched_item_7() {
    // Issue #22, item 7: QKV_CACHE_DIR= put the cache in the current directory and renamed
    // the user's own tuning.json there to tuning.json.corrupt.
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("tuning.json");
    std::fs::write(&mine, "my notes").unwrap();
    let run = Command::new(assert_cmd::cargo::cargo_bin("qkv"))
        .current_dir(dir.path())
        .env("QKV_CACHE_DIR", "")
        .env("XDG_CACHE_HOME", dir.path().join("xdg"))
        .env("HOME", dir.path().join("home"))
        .args([
            "run",
            "--tokens",
            "8",
            "--d-model",
            "8",
            "--q-width",
            "8",
            "--repeats",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "my notes");
    assert_eq!(
        listing(dir.path()),
        ["tuning.json", "xdg"],
        "the cache went to XDG_CACHE_HOME"
    );
    // A foreign file at the cache's own path is left alone too.
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(cache.join("tuning.json"), "not qkv's").unwrap();
    let run = Command::new(assert_cmd::cargo::cargo_bin("qkv"))
        .env("QKV_CACHE_DIR", &cache)
        .args([
            "run",
            "--tokens",
            "8",
            "--d-model",
            "8",
            "--q-width",
            "8",
            "--repeats",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("is not a tuning cache qkv wrote"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(cache.join("tuning.json")).unwrap(),
        "not qkv's"
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_at_an_output_name_is_refused_not_waited_on_item_4() {
    let m = model(16, 4);
    let out = m.path("out");
    std::fs::create_dir(&out).unwrap();
    let c = std::ffi::CString::new(out.join("q.npy").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let started = Instant::now();
    let run = bin().args(m.args(&out, &["--force"])).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a FIFO"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));
}
