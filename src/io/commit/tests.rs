//! Tests of the commit protocol on real directories.
use super::*;
use std::io::Write;

fn staged(out: &OutputDir, name: &str, text: &str) -> (Partial, File) {
    let mut p = out.partial(name).unwrap();
    let mut f = p.take_file();
    f.write_all(text.as_bytes()).unwrap();
    (p, f)
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|_| "<none>".into())
}

/// Names in `dir` other than the three outputs.
fn others(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !["q", "k", "v"].contains(&n.as_str()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_failed_rename_puts_every_old_file_back() {
    // Issue #11, item 6: a failure between the renames left a mix of new and old files.
    let dir = tempfile::tempdir().unwrap();
    for n in ["q", "k", "v"] {
        std::fs::write(dir.path().join(n), format!("old {n}")).unwrap();
    }
    let out = OutputDir::open(dir.path()).unwrap();
    for fail_at in [1, 2] {
        let parts = ["q", "k", "v"].map(|n| staged(&out, n, &format!("new {n}")));
        let e = out
            .commit_failing_at(parts.into(), true, Some(fail_at))
            .unwrap_err();
        assert!(e.to_string().contains("injected"), "{e}");
        for n in ["q", "k", "v"] {
            assert_eq!(read(dir.path(), n), format!("old {n}"), "fail at {fail_at}");
        }
        assert_eq!(others(dir.path()), [LOCK], "fail at {fail_at}");
    }
    let parts = ["q", "k", "v"].map(|n| staged(&out, n, &format!("new {n}")));
    out.commit(parts.into(), true).unwrap();
    for n in ["q", "k", "v"] {
        assert_eq!(read(dir.path(), n), format!("new {n}"));
    }
    drop(out);
    assert!(others(dir.path()).is_empty());
}

#[test]
fn a_file_that_appears_during_the_run_is_not_replaced() {
    // Issue #11, item 1: the existence check at the start was the only one.
    let dir = tempfile::tempdir().unwrap();
    let out = OutputDir::open(dir.path()).unwrap();
    out.check_free(&["q", "k"], false).unwrap();
    let parts = [staged(&out, "q", "mine"), staged(&out, "k", "mine")];
    std::fs::write(dir.path().join("k"), "theirs").unwrap();
    let e = out.commit(parts.into(), false).unwrap_err().to_string();
    assert!(e.contains("appeared while this run was writing"), "{e}");
    assert_eq!(read(dir.path(), "k"), "theirs");
    assert_eq!(read(dir.path(), "q"), "<none>");
    assert_eq!(others(dir.path()), [LOCK]);
}

#[test]
fn one_run_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let first = OutputDir::open(dir.path()).unwrap();
    let e = OutputDir::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("another qkv run is writing into"), "{e}");
    drop(first);
    OutputDir::open(dir.path()).unwrap();
}

#[cfg(unix)]
#[test]
fn partial_files_never_follow_a_planted_symlink() {
    // Issue #11, item 2: `File::create` on a predictable name followed a planted link.
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let link = dir.path().join(".q.npy.planted.qkv-partial");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    assert_eq!(
        create_new(&link).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    // The next run sweeps the link itself away, never what it points to.
    let out = OutputDir::open(dir.path()).unwrap();
    assert!(
        out.notes[0].contains(".q.npy.planted.qkv-partial"),
        "{:?}",
        out.notes
    );
    assert!(std::fs::symlink_metadata(&link).is_err());
    assert_eq!(read(dir.path(), "victim"), "precious");
}

#[test]
fn an_interrupted_commit_is_rolled_back_by_the_next_run() {
    // The state a run killed after its first rename leaves: q is new (its old file at
    // the backup name), k not yet moved, v had no old file; the journal names them all.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("q"), "new q").unwrap();
    std::fs::write(d.join(".q.0000000000000001.qkv-old"), "old q").unwrap();
    std::fs::write(d.join("k"), "old k").unwrap();
    std::fs::write(d.join(".k.0000000000000002.qkv-partial"), "new k").unwrap();
    std::fs::write(d.join(".v.0000000000000003.qkv-partial"), "new v").unwrap();
    let id = |n: &str| serde_json::to_string(&recover::id_of(&d.join(n))).unwrap();
    let journal = format!(
        r#"{{"entries": [
        {{"name": "q", "partial": ".q.0000000000000000.qkv-partial", "old": ".q.0000000000000001.qkv-old", "id": {}, "old_id": {}}},
        {{"name": "k", "partial": ".k.0000000000000002.qkv-partial", "old": ".k.0000000000000004.qkv-old", "id": {}, "old_id": {}}},
        {{"name": "v", "partial": ".v.0000000000000003.qkv-partial", "old": null, "id": {}}}]}}"#,
        id("q"),
        id(".q.0000000000000001.qkv-old"),
        id(".k.0000000000000002.qkv-partial"),
        id("k"),
        id(".v.0000000000000003.qkv-partial"),
    );
    std::fs::write(d.join(JOURNAL), journal).unwrap();
    let out = OutputDir::open(d).unwrap();
    assert!(out.notes[0].contains("rolled back"), "{:?}", out.notes);
    assert_eq!(
        [read(d, "q"), read(d, "k"), read(d, "v")],
        ["old q", "old k", "<none>"]
    );
    assert_eq!(others(d), [LOCK]);

    // A journal naming paths outside the directory is refused, not followed.
    drop(out);
    std::fs::write(
        d.join(JOURNAL),
        r#"{"entries": [{"name": "../x", "partial": "p", "old": null}]}"#,
    )
    .unwrap();
    let e = OutputDir::open(d).unwrap_err().to_string();
    assert!(e.contains("not a journal qkv wrote"), "{e}");
}

/// Writes `journal` as the directory's journal and opens the directory: the error, if any.
fn open_with_journal(d: &Path, journal: &str) -> Option<String> {
    let _ = std::fs::remove_file(d.join(JOURNAL));
    std::fs::write(d.join(JOURNAL), journal).unwrap();
    OutputDir::open(d).err().map(|e| e.to_string())
}

#[test]
fn a_planted_journal_is_not_obeyed_item_3() {
    // Issue #22, item 3: a journal naming thesis.tex made the run delete it.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("thesis.tex"), "years of work").unwrap();
    let e = open_with_journal(
        d,
        r#"{"entries":[{"name":"thesis.tex","partial":".gone","old":null}]}"#,
    )
    .expect("refused");
    assert!(
        e.contains("not a journal qkv wrote") && e.contains("nothing was changed"),
        "{e}"
    );
    assert_eq!(read(d, "thesis.tex"), "years of work");
    // Names of qkv's form, but the file is not the one that run wrote (no recorded inode,
    // or another): left alone.
    for id in ["", r#","id":[1,2]"#] {
        let j = format!(
            r#"{{"entries":[{{"name":"thesis.tex","partial":".thesis.tex.00000000000000aa.qkv-partial","old":null{id}}}]}}"#
        );
        let e = open_with_journal(d, &j);
        assert!(e.is_none(), "{e:?}");
        assert_eq!(read(d, "thesis.tex"), "years of work", "{j}");
    }
    // Too large to be one of qkv's.
    let e = open_with_journal(d, &" ".repeat(100_000)).expect("refused");
    assert!(e.contains("bytes"), "{e}");
}

#[cfg(unix)]
#[test]
fn a_planted_partial_link_backup_or_fifo_changes_nothing_item_3() {
    // A journal of this user's, with qkv's own name forms, whose partial name is a link to
    // the user's file, whose backup name holds a planted file, and whose final name is a
    // FIFO: nothing is removed, restored or waited on.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("thesis.tex"), "years of work").unwrap();
    std::os::unix::fs::symlink(
        d.join("thesis.tex"),
        d.join(".thesis.tex.00000000000000aa.qkv-partial"),
    )
    .unwrap();
    std::fs::write(d.join("notes.txt"), "mine").unwrap();
    std::fs::write(d.join(".notes.txt.00000000000000bb.qkv-old"), "planted").unwrap();
    let fifo = std::ffi::CString::new(d.join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let j = r#"{"entries":[
        {"name":"thesis.tex","partial":".thesis.tex.00000000000000aa.qkv-partial","old":null},
        {"name":"notes.txt","partial":".notes.txt.00000000000000bc.qkv-partial","old":".notes.txt.00000000000000bb.qkv-old","old_id":[1,1]},
        {"name":"pipe","partial":".pipe.00000000000000cc.qkv-partial","old":null,"id":[1,1]}]}"#;
    let started = std::time::Instant::now();
    assert_eq!(open_with_journal(d, j), None);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(read(d, "thesis.tex"), "years of work");
    assert_eq!(read(d, "notes.txt"), "mine");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(d.join("pipe"))
        .unwrap()
        .file_type()
        .is_fifo());
}

#[cfg(unix)]
#[test]
fn a_fifo_or_symlink_journal_is_refused_without_hanging_item_3() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = std::ffi::CString::new(d.join(JOURNAL).to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let started = std::time::Instant::now();
    let e = OutputDir::open(d).unwrap_err().to_string();
    assert!(e.contains("it is a FIFO"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    std::fs::remove_file(d.join(JOURNAL)).unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.join(JOURNAL)).unwrap();
    let e = OutputDir::open(d).unwrap_err().to_string();
    assert!(e.contains("it is a symbolic link"), "{e}");
}

#[test]
fn an_output_name_that_is_a_directory_is_refused_even_with_force_item_5() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("q")).unwrap();
    std::fs::write(d.join("q").join("inside"), "kept").unwrap();
    let out = OutputDir::open(d).unwrap();
    let e = out.check_free(&["q", "k"], true).unwrap_err().to_string();
    assert!(
        e.contains("is a directory") && e.contains("nothing was moved"),
        "{e}"
    );
    // And at the commit too, if it appeared during the run.
    std::fs::remove_dir_all(d.join("q")).unwrap();
    let parts = ["q", "k"].map(|n| staged(&out, n, n));
    std::fs::create_dir(d.join("q")).unwrap();
    let e = out.commit(parts.into(), true).unwrap_err().to_string();
    assert!(e.contains("is a directory"), "{e}");
    assert!(d.join("q").is_dir());
    assert_eq!(read(d, "k"), "<none>");
}

#[cfg(unix)]
#[test]
fn a_plot_over_a_device_node_or_fifo_is_refused_item_4() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("plot.svg");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let e = write_file(&fifo, b"<svg/>", true).unwrap_err().to_string();
    assert!(e.contains("is a FIFO"), "{e}");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    let e = write_file(Path::new("/dev/null"), b"<svg/>", true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a device"), "{e}");
}

#[test]
fn write_file_replaces_only_when_asked_and_leaves_nothing_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plot.svg");
    write_file(&p, b"one", false).unwrap();
    let e = write_file(&p, b"two", false).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    write_file(&p, b"two", true).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    // A directory that is a file: an I/O error, nothing left behind.
    let e = write_file(&p.join("x.svg"), b"three", false).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn stale_names_are_ours_only() {
    for n in [
        ".q.npy.0123abcd.qkv-partial",
        ".k.npy.ff.qkv-old",
        ".v.npy.partial-42",
    ] {
        assert!(is_stale_name(n), "{n}");
    }
    for n in [
        "q.npy",
        ".q.npy.partial-",
        "x.qkv-partial",
        ".bashrc",
        ".q.npy.partial-4a",
    ] {
        assert!(!is_stale_name(n), "{n}");
    }
}
