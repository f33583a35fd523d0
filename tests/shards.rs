//! `qkv project` over shards of X (issue #35, item 1): each shard's outputs are what `qkv
//! project` of that file alone writes, bit for bit, in `OUT/<name>/` with a manifest; a
//! rerun skips the shards whose manifest still vouches for their outputs, redoes nothing it
//! cannot vouch for without `--force`, and a shard that fails is reported while the others
//! are written.

mod common;

use common::model::*;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

/// A fixed kernel: the tests are about files, not about the tuner.
const KERNEL: &str = "tiled";

/// `qkv project` of `input` (one value or several) through layer 1 of the BERT checkpoint
/// in `d` into `out`, with `extra` arguments.
fn args(d: &Path, input: &[&str], out: &Path, extra: &[&str]) -> Vec<String> {
    let weights = d.join("bert.safetensors");
    let mut a = vec!["project", "--input"];
    a.extend_from_slice(input);
    a.extend_from_slice(&[
        "--weights",
        s(&weights),
        "--prefix",
        "bert.encoder.layer.1",
        "--kernel",
        KERNEL,
        "--out",
        s(out),
    ]);
    a.extend_from_slice(extra);
    a.into_iter().map(String::from).collect()
}

fn strs(a: &[String]) -> Vec<&str> {
    a.iter().map(String::as_str).collect()
}

/// Shards of X [tokens, 24] under `d/x/` (ragged token counts), their paths.
fn write_shards(d: &Path, tokens: &[u64], seed: u64) -> Vec<PathBuf> {
    let dir = d.join("x");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    tokens
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let p = dir.join(format!("part-{i}.npy"));
            write_x(&p, "f32", &[t, 24], &mut rng);
            p
        })
        .collect()
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap()
}

fn states(v: &serde_json::Value) -> Vec<String> {
    v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s["name"].as_str().unwrap(),
                s["state"].as_str().unwrap()
            )
        })
        .collect()
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn each_shard_is_written_as_its_file_alone_would_be_and_a_rerun_skips_what_is_complete() {
    let b = bert();
    let d = b.dir.path();
    let shards = write_shards(d, &[7, 13, 1, 10], 5);
    let out = d.join("out");
    let x_dir = d.join("x");
    let v = json(&ok(&strs(&args(d, &[s(&x_dir)], &out, &["--json"]))));
    let all = ["part-0", "part-1", "part-2", "part-3"];
    assert_eq!(states(&v), all.map(|n| format!("{n}:projected")));
    assert_eq!(
        (v["projected"].as_u64(), v["tokens"].as_u64()),
        (Some(4), Some(31))
    );
    for (shard, name) in shards.iter().zip(all) {
        let alone = d.join(format!("alone-{name}"));
        ok(&strs(&args(d, &[s(shard)], &alone, &[])));
        for f in ["q.npy", "k.npy", "v.npy"] {
            assert_eq!(
                bytes(&out.join(name).join(f)),
                bytes(&alone.join(f)),
                "{name} {f}"
            );
        }
        let m = json(&String::from_utf8(bytes(&out.join(name).join("shard.json"))).unwrap());
        assert_eq!(m["input"].as_str(), Some(s(shard)));
        assert_eq!(
            m["outputs"]["q.npy"]["bytes"].as_u64().unwrap(),
            bytes(&alone.join("q.npy")).len() as u64
        );
    }
    // Again, by a pattern: everything is skipped, nothing rewritten.
    let q0 = std::fs::metadata(out.join("part-0/q.npy"))
        .unwrap()
        .modified()
        .unwrap();
    let pattern = format!("{}/part-*.npy", x_dir.display());
    let v = json(&ok(&strs(&args(d, &[&pattern], &out, &["--json"]))));
    assert_eq!(states(&v), all.map(|n| format!("{n}:skipped")));
    assert_eq!(v["tokens"].as_u64(), Some(0));
    let q0_again = std::fs::metadata(out.join("part-0/q.npy"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(q0, q0_again);
    // A shard whose input changed is not the run's to replace without --force: nothing is
    // projected, and the old outputs stay.
    let old_q1 = bytes(&out.join("part-1/q.npy"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let new_x1 = write_x(&shards[1], "f32", &[13, 24], &mut rng);
    let refused = qkv(&strs(&args(d, &[s(&x_dir)], &out, &[])));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("part-1") && stderr.contains("changed since") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(bytes(&out.join("part-1/q.npy")), old_q1);
    // With --force that shard alone is projected again, from its new X.
    let v = json(&ok(&strs(&args(
        d,
        &[s(&x_dir)],
        &out,
        &["--force", "--json"],
    ))));
    assert_eq!(
        states(&v),
        [
            "part-0:skipped",
            "part-1:projected",
            "part-2:skipped",
            "part-3:skipped"
        ]
    );
    let q = read(&out.join("part-1/q.npy"));
    let w = find(
        &b.tensors,
        "bert.encoder.layer.1.attention.self.query.weight",
    );
    let bias = find(&b.tensors, "bert.encoder.layer.1.attention.self.query.bias");
    assert_close(
        "Q of the new part-1",
        &q.data,
        &expected(&new_x1, 13, 24, w, true, Some(bias)),
        24,
    );
    // Other settings are another job: its shards are not skipped (and not replaced
    // without --force).
    let other = qkv(&strs(&args(
        d,
        &[s(&x_dir)],
        &out,
        &["--head-layout", "heads", "--heads", "4"],
    )));
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(stderr.contains("other weights or settings"), "{stderr}");
}

#[test]
fn a_failing_shard_is_reported_the_others_are_written_and_a_rerun_does_only_it() {
    let b = bert();
    let d = b.dir.path();
    let shards = write_shards(d, &[6, 9, 4], 7);
    // part-1 holds a NaN: refused, as one file's run would be; the others are written.
    let mut x = read(&shards[1]).data;
    x[30] = f32::NAN;
    qkv_wgpu::io::npy::write_f32(&shards[1], &[9, 24], &x).unwrap();
    let out = d.join("out");
    let list = d.join("shards.txt");
    std::fs::write(
        &list,
        "x/part-0.npy\nx/part-1.npy\n# a comment\nx/part-2.npy\n",
    )
    .unwrap();
    let run = qkv(&strs(&args(d, &[s(&list)], &out, &["--json"])));
    assert_eq!(run.status.code(), Some(2));
    let v = json(&String::from_utf8_lossy(&run.stdout));
    assert_eq!(
        states(&v),
        ["part-0:projected", "part-1:failed", "part-2:projected"]
    );
    let why = v["shards"][1]["error"].as_str().unwrap();
    assert!(why.contains("NaN"), "{why}");
    assert!(!out.join("part-1/q.npy").exists() && !out.join("part-1/shard.json").exists());
    assert!(out.join("part-2/shard.json").exists());
    // Fixed, the rerun projects it alone.
    x[30] = 0.5;
    qkv_wgpu::io::npy::write_f32(&shards[1], &[9, 24], &x).unwrap();
    let v = json(&ok(&strs(&args(d, &[s(&list)], &out, &["--json"]))));
    assert_eq!(
        states(&v),
        ["part-0:skipped", "part-1:projected", "part-2:skipped"]
    );
}

#[test]
fn shards_that_cannot_make_one_run_are_refused_before_anything_is_written() {
    let b = bert();
    let d = b.dir.path();
    let shards = write_shards(d, &[5, 5], 3);
    let out = d.join("out");
    // Another d_model.
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let odd = d.join("x").join("wide.npy");
    write_x(&odd, "f32", &[5, 32], &mut rng);
    fails(
        &strs(&args(d, &[s(&d.join("x"))], &out, &[])),
        2,
        "every shard is X of one d_model",
        &out,
    );
    std::fs::remove_file(&odd).unwrap();
    // Two shards of one name, and one file twice.
    let sub = d.join("y");
    std::fs::create_dir(&sub).unwrap();
    std::fs::copy(&shards[0], sub.join("part-0.npy")).unwrap();
    let twin = sub.join("part-0.npy");
    fails(
        &strs(&args(d, &[s(&shards[0]), s(&twin)], &out, &[])),
        2,
        "have the same name",
        &out,
    );
    fails(
        &strs(&args(d, &[s(&shards[0]), s(&shards[0])], &out, &[])),
        2,
        "given twice",
        &out,
    );
    // A pattern that matches nothing, a directory without shards.
    let none = format!("{}/*.bin", d.display());
    fails(
        &strs(&args(d, &[&none], &out, &[])),
        2,
        "matches no file",
        &out,
    );
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails(
        &strs(&args(d, &[s(&empty)], &out, &[])),
        2,
        "holds no .npy files",
        &out,
    );
}

#[test]
fn what_a_killed_run_leaves_is_cleaned_up_and_projected_again() {
    // A run killed in the middle of a shard leaves that shard's directory with partial files
    // only (its outputs and manifest are committed together, or not at all), and the shards
    // after it without a directory. The rerun removes the partial files, says so, and
    // projects exactly those shards.
    let b = bert();
    let d = b.dir.path();
    write_shards(d, &[5, 6, 7], 9);
    let out = d.join("out");
    let x_dir = d.join("x");
    ok(&strs(&args(d, &[s(&x_dir)], &out, &[])));
    std::fs::remove_dir_all(out.join("part-2")).unwrap();
    for f in ["q.npy", "k.npy", "v.npy", "shard.json"] {
        std::fs::remove_file(out.join("part-1").join(f)).unwrap();
    }
    let partial = out.join("part-1/.q.npy.0123456789abcdef.qkv-partial");
    std::fs::write(&partial, b"half a shard").unwrap();
    let run = qkv(&strs(&args(d, &[s(&x_dir)], &out, &["--json"])));
    assert!(run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("qkv-partial"), "{stderr}");
    assert!(!partial.exists());
    let v = json(&String::from_utf8_lossy(&run.stdout));
    assert_eq!(
        states(&v),
        ["part-0:skipped", "part-1:projected", "part-2:projected"]
    );
    assert!(out.join("part-2/shard.json").exists());
}

#[test]
fn shards_spread_over_two_adapters_are_each_written_and_each_adapters_share_is_reported() {
    // Issue #35, item 2: lavapipe on Vulkan and llvmpipe on GL, each with its own projector,
    // taking shards from one queue.
    let b = bert();
    let d = b.dir.path();
    let shards = write_shards(d, &[9, 4, 11, 6, 8, 5], 13);
    let out = d.join("out");
    let x_dir = d.join("x");
    let extra = ["--adapters", "vulkan,gl", "--json"];
    let v = json(&ok(&strs(&args(d, &[s(&x_dir)], &out, &extra))));
    assert_eq!(v["projected"].as_u64(), Some(6));
    let adapters = v["adapters"].as_array().unwrap();
    assert_eq!(adapters.len(), 2);
    let names: Vec<&str> = adapters
        .iter()
        .map(|a| a["adapter"].as_str().unwrap())
        .collect();
    assert!(
        names[0].ends_with("(Vulkan)") && names[1].ends_with("(Gl)"),
        "{names:?}"
    );
    let shares: u64 = adapters.iter().map(|a| a["shards"].as_u64().unwrap()).sum();
    assert_eq!(shares, 6);
    let tokens: u64 = adapters.iter().map(|a| a["tokens"].as_u64().unwrap()).sum();
    assert_eq!(tokens, 43);
    let w = find(&b.tensors, "bert.encoder.layer.1.attention.self.key.weight");
    let bias = find(&b.tensors, "bert.encoder.layer.1.attention.self.key.bias");
    for (i, shard) in v["shards"].as_array().unwrap().iter().enumerate() {
        let on = shard["adapter"].as_str().unwrap();
        assert!(names.contains(&on), "{on}");
        let x = read(&shards[i]).data;
        let k = read(&out.join(format!("part-{i}/k.npy")));
        let t = x.len() / 24;
        assert_close(
            &format!("K of part-{i} on {on}"),
            &k.data,
            &expected(&x, t, 24, w, true, Some(bias)),
            24,
        );
    }
    // One file is one adapter's.
    let one = qkv(&strs(&args(
        d,
        &[s(&shards[0])],
        &d.join("one"),
        &["--adapters", "all"],
    )));
    assert!(String::from_utf8_lossy(&one.stderr).contains("--adapters spreads shards"));
    // The same adapter twice, and a backend that is not one.
    for (spec, says) in [
        ("vulkan,vulkan", "named before"),
        ("vulkan,nope:x", "possible values"),
    ] {
        let r = qkv(&strs(&args(
            d,
            &[s(&x_dir)],
            &d.join("bad"),
            &["--adapters", spec],
        )));
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(
            r.status.code() == Some(2) && stderr.contains(says),
            "{spec}: {stderr}"
        );
    }
}
