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
        stderr.contains("cannot write") && !stderr.contains("invalid input"),
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
