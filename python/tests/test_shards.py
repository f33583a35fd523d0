"""A corpus of shards from Python: Projector.project_shard writes each shard into its own
directory with its manifest, as `qkv project --input 'dir/*.npy'` does; reruns skip what is
complete and leave alone what they cannot vouch for; shard_paths lists a corpus as --input
does. (The Ray lane, python/tests_ray, runs the same through a Ray cluster and compares it
with the CLI byte for byte.)"""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import qkv_wgpu
from helpers import assert_close, rand, reference

D = 48
TOKENS = [37, 130, 1]  # ragged: no tile divides them


@pytest.fixture
def corpus(tmp_path):
    """GPT-2's fused c_attn (in-out, with bias) in a checkpoint, and three shards of X."""
    rng = np.random.default_rng(7)
    w, b = rand(rng, D, 3 * D), rand(rng, 3 * D)
    ckpt = tmp_path / "model.safetensors"
    save_file({"h.0.attn.c_attn.weight": w, "h.0.attn.c_attn.bias": b}, str(ckpt))
    xdir = tmp_path / "x"
    xdir.mkdir()
    xs = {}
    for i, t in enumerate(TOKENS):
        xs[f"part-{i}"] = rand(rng, t, D)
        np.save(xdir / f"part-{i}.npy", xs[f"part-{i}"])
    ws = [w[:, :D], w[:, D:2 * D], w[:, 2 * D:]]
    bs = [b[:D], b[D:2 * D], b[2 * D:]]
    return dict(ckpt=ckpt, xdir=xdir, xs=xs, ws=ws, bs=bs, out=tmp_path / "out")


def projector(c, kernel="texture", **kw):
    return qkv_wgpu.Projector.from_checkpoint(c["ckpt"], "h.0", kernel=kernel, **kw)


def files(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_each_shard_is_written_with_its_manifest_and_matches_the_reference(corpus):
    p = projector(corpus)
    paths = qkv_wgpu.shard_paths([corpus["xdir"]])
    assert [os.path.basename(s) for s in paths] == ["part-0.npy", "part-1.npy", "part-2.npy"]
    for path in paths:
        r = p.project_shard(path, corpus["out"], check_rows="all")
        name = os.path.basename(path)[:-4]
        assert r["state"] == "projected" and r["pass"] is True, r
        assert r["name"] == name and r["tokens"] == corpus["xs"][name].shape[0]
        assert r["checked_rows"] == r["tokens"] and r["error"] is None
        d = corpus["out"] / name
        assert sorted(os.listdir(d)) == ["k.npy", "q.npy", "shard.json", "v.npy"]
        want = reference(corpus["xs"][name], corpus["ws"], corpus["bs"])
        for out, ref in zip("qkv", want):
            assert_close(np.load(d / f"{out}.npy"), ref, D)
        m = json.loads((d / "shard.json").read_text())
        assert m["format"] == "qkv-wgpu shard manifest 2"
        assert sorted(m["outputs"]) == ["k.npy", "q.npy", "v.npy"]
        assert m["input_digest"]["bytes"] == os.path.getsize(path)


def test_a_rerun_skips_complete_shards_and_rewrites_nothing(corpus):
    p = projector(corpus)
    path = corpus["xdir"] / "part-1.npy"
    assert p.project_shard(path, corpus["out"])["state"] == "projected"
    d = corpus["out"] / "part-1"
    before = files(d)
    times = {n: os.stat(d / n).st_mtime_ns for n in before}
    again = projector(corpus).project_shard(path, corpus["out"])
    assert again["state"] == "skipped" and again["outputs"] == [], again
    assert files(d) == before
    assert {n: os.stat(d / n).st_mtime_ns for n in before} == times


def test_outputs_it_cannot_vouch_for_are_left_alone_unless_forced(corpus):
    p = projector(corpus)
    path = corpus["xdir"] / "part-0.npy"
    p.project_shard(path, corpus["out"])
    d = corpus["out"] / "part-0"
    before = files(d)
    new_x = rand(np.random.default_rng(9), TOKENS[0], D)
    np.save(path, new_x)
    r = p.project_shard(path, corpus["out"])
    assert r["state"] == "failed" and "changed since it was projected" in r["error"], r
    assert "force=True" in r["error"] and files(d) == before
    # Other settings: another storage type's outputs are not this job's either.
    r = projector(corpus, dtype="f16").project_shard(path, corpus["out"])
    assert r["state"] == "failed" and "other weights or settings" in r["error"], r
    r = p.project_shard(path, corpus["out"], force=True)
    assert r["state"] == "projected", r
    assert_close(np.load(d / "q.npy"), reference(new_x, corpus["ws"], corpus["bs"])[0], D)


def test_a_shard_holding_nan_fails_alone_and_writes_nothing(corpus):
    bad = corpus["xs"]["part-1"].copy()
    bad[100, 5] = np.nan
    np.save(corpus["xdir"] / "part-1.npy", bad)
    p = projector(corpus)
    reports = [p.project_shard(s, corpus["out"]) for s in qkv_wgpu.shard_paths([corpus["xdir"]])]
    assert [r["state"] for r in reports] == ["projected", "failed", "projected"], reports
    assert "NaN" in reports[1]["error"] and "allow_nonfinite=True" in reports[1]["error"]
    bad_dir = corpus["out"] / "part-1"
    assert not bad_dir.exists() or not [n for n in os.listdir(bad_dir) if not n.startswith(".")]


def test_safetensors_outputs_and_heads_layout_and_a_sampled_check(corpus):
    p = projector(corpus, heads=4, head_layout="heads", dtype="bf16")
    r = p.project_shard(corpus["xdir"] / "part-1.npy", corpus["out"], out_format="safetensors",
                        check_rows=8)
    assert r["state"] == "projected" and r["pass"] is True, r
    # Each chunk's first and last row are among those checked, so at least 2 and at most
    # the rows asked for plus those.
    assert 2 <= r["checked_rows"] < TOKENS[1]
    d = corpus["out"] / "part-1"
    assert sorted(os.listdir(d)) == ["qkv.safetensors", "shard.json"]
    t = load_file(str(d / "qkv.safetensors"))
    assert t["q"].shape == (1, 4, TOKENS[1], D // 4)
    # Unchecked: nothing compared, the outputs still written.
    r = projector(corpus).project_shard(corpus["xdir"] / "part-2.npy", corpus["out"],
                                        check=False)
    assert r["state"] == "projected" and r["pass"] is None and r["checked_rows"] == 0


def test_bad_arguments_are_refused_before_any_work(corpus):
    p = projector(corpus)
    path = corpus["xdir"] / "part-0.npy"
    for kw, msg in [
        (dict(out_format="csv"), "expected npy or safetensors"),
        (dict(check_rows=0), "a number of rows >= 1"),
        (dict(check_rows="some"), "a number of rows >= 1"),
        (dict(check=False, check_rows=5), "an unchecked run checks no rows"),
    ]:
        with pytest.raises(ValueError, match=msg):
            p.project_shard(path, corpus["out"], **kw)
    assert not corpus["out"].exists()
    # A shard of another d_model, or no shard at all, is the shard's failure.
    np.save(corpus["xdir"] / "wide.npy", rand(np.random.default_rng(1), 4, D + 1))
    r = p.project_shard(corpus["xdir"] / "wide.npy", corpus["out"])
    assert r["state"] == "failed" and "columns" in r["error"], r
    r = p.project_shard(corpus["xdir"] / "missing.npy", corpus["out"])
    assert r["state"] == "failed" and "no such file" in r["error"], r


def test_shard_paths_take_what_the_cli_takes(corpus, tmp_path):
    x = corpus["xdir"]
    names = ["part-0.npy", "part-1.npy", "part-2.npy"]
    assert [os.path.basename(p) for p in qkv_wgpu.shard_paths([str(x / "*.npy")])] == names
    listing = tmp_path / "shards.txt"
    listing.write_text("x/part-2.npy\n# a comment\nx/part-0.npy\n")
    assert [os.path.basename(p) for p in qkv_wgpu.shard_paths([listing])] == [
        "part-2.npy", "part-0.npy"]
    with pytest.raises(ValueError, match="given twice"):
        qkv_wgpu.shard_paths([x / "part-0.npy", x / "part-0.npy"])
    with pytest.raises(ValueError, match="matches no file"):
        qkv_wgpu.shard_paths([str(x / "*.bin")])
    with pytest.raises(ValueError, match="no inputs"):
        qkv_wgpu.shard_paths([])


def test_a_ray_worker_finds_its_gpu_by_pci_address():
    """Ray names a worker's GPU in CUDA_VISIBLE_DEVICES, which Vulkan ignores: the worker
    asks nvidia-smi where that GPU is and picks wgpu's adapter at that address."""
    from qkv_wgpu.ray import _gpu_adapter

    calls = []

    def smi(out, code=0, err=""):
        def run(cmd, **kw):
            calls.append(cmd)
            return type("Done", (), dict(stdout=out, stderr=err, returncode=code))()
        return run

    assert _gpu_adapter([]) is None
    assert _gpu_adapter([3], run=smi("00000000:3B:00.0\n")) == "pci:00000000:3B:00.0"
    assert calls[-1][-2:] == ["-i", "3"]
    with pytest.raises(ValueError, match="one GPU"):
        _gpu_adapter([0, 1], run=smi(""))
    with pytest.raises(RuntimeError, match="does not say where GPU 7 is.*adapter='pci:"):
        _gpu_adapter(["7"], run=smi("", 6, "No devices were found"))

    def missing(cmd, **kw):
        raise FileNotFoundError(cmd[0])

    with pytest.raises(RuntimeError, match="nvidia-smi.*not installed"):
        _gpu_adapter([0], run=missing)


def test_an_adapter_named_by_pci_address_is_that_one_or_none(corpus):
    for a in qkv_wgpu.adapters():
        assert isinstance(a["pci_bus_id"], str)
    with pytest.raises(qkv_wgpu.GpuError, match="PCI address 0000:ff:1f.7"):
        qkv_wgpu.Projector.from_checkpoint(corpus["ckpt"], "h.0", adapter="pci:0000:ff:1f.7")
