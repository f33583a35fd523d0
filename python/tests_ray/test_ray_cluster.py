"""qkv_wgpu.ray on a real Ray cluster: a head node and a worker node started on 127.0.0.1 by
two `ray start` processes (not ray.init() alone), a corpus of shards projected through it
and compared byte for byte with `qkv project` over the same shards, and a worker killed in
the middle of a shard with the job still completing, every shard correct, none lost or
written twice. The cluster is stopped at the end whatever happens.

The Ray lane (scripts/ray_lane.sh) runs this with Ray from PyPI and `QKV_BIN` naming the
`qkv` binary; on lavapipe each node's adapter is the CPU."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

# Token authentication, said outright, before Ray is imported (it reads the mode once):
# with the mode unset, Ray 2.60's head turns it on wherever ~/.ray/auth_token exists (a
# local ray.init() writes one) while a joining node and this driver leave it off, and
# cannot connect. The cluster's processes inherit this token.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

import ray  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

import qkv_wgpu  # noqa: E402
import qkv_wgpu.ray  # noqa: E402

QKV = os.environ.get("QKV_BIN", "qkv")
RAY = str(Path(sys.executable).with_name("ray"))
LEFTOVERS = (".qkv-partial", ".qkv-old", ".qkv-commit")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli(*args):
    done = subprocess.run([RAY, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"ray {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node, one CPU each (so Ray Data's two workers, a CPU each, run
    one on each node), stopped at the end whatever happens."""
    port = free_port()
    node = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    try:
        ray_cli("start", "--head", f"--port={port}", "--include-dashboard=false", *node)
        ray_cli("start", f"--address=127.0.0.1:{port}", *node)
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        deadline = time.time() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            assert time.time() < deadline, "the worker node did not join"
            time.sleep(0.5)
        yield {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


def make_corpus(root, shards, tokens, d_model, seed):
    """GPT-2's fused c_attn (in-out, with bias) in a checkpoint, and `shards` shards of X
    of ragged lengths from `tokens` on."""
    rng = np.random.default_rng(seed)
    ckpt = root / "model.safetensors"
    save_file({
        "h.0.attn.c_attn.weight": rng.uniform(-1, 1, (d_model, 3 * d_model)).astype(np.float32),
        "h.0.attn.c_attn.bias": rng.uniform(-1, 1, 3 * d_model).astype(np.float32),
    }, str(ckpt))
    xdir = root / "x"
    xdir.mkdir()
    for i in range(shards):
        x = rng.uniform(-1, 1, (tokens + 97 * i, d_model)).astype(np.float32)
        np.save(xdir / f"part-{i:02}.npy", x)
    return ckpt, xdir


def cli_project(xdir, ckpt, out, *extra):
    done = subprocess.run(
        [QKV, "project", "--input", str(xdir), "--weights", str(ckpt), "--prefix", "h.0",
         "--kernel", "tiled", "--check-rows", "64", "--out", str(out), "--json", *extra],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_same_as_cli(ray_out, cli_out, names):
    """Every shard's outputs byte for byte, and its manifest's job and output checksums, as
    `qkv project` wrote them; nothing else in either directory (no leftovers of a killed
    worker, no shard twice)."""
    assert sorted(os.listdir(ray_out)) == sorted(os.listdir(cli_out)) == sorted(names)
    for name in names:
        a, b = ray_out / name, cli_out / name
        listed = sorted(os.listdir(a))
        assert [n for n in listed if n.endswith(LEFTOVERS)] == [], listed
        assert [n for n in listed if not n.startswith(".")] == [
            "k.npy", "q.npy", "shard.json", "v.npy"], listed
        for f in ("q.npy", "k.npy", "v.npy"):
            assert (a / f).read_bytes() == (b / f).read_bytes(), f"{name}/{f} differs"
        ma, mb = (json.loads((d / "shard.json").read_text()) for d in (a, b))
        assert ma["job"] == mb["job"] and ma["outputs"] == mb["outputs"], name


def test_two_nodes_project_every_shard_as_the_cli_does(cluster, tmp_path):
    ckpt, xdir = make_corpus(tmp_path, shards=12, tokens=3000, d_model=64, seed=1)
    report = qkv_wgpu.ray.project_shards(xdir, tmp_path / "ray", ckpt, "h.0", concurrency=2,
                                         kernel="tiled", check_rows=64)
    names = [f"part-{i:02}" for i in range(12)]
    assert [r["name"] for r in report["shards"]] == names
    assert report["projected"] == 12 and report["failed"] == 0, report
    assert all(r["pass"] is True and r["checked_rows"] >= 2 for r in report["shards"])
    # Both nodes projected shards.
    print("shards per node:", report["nodes"], f"{report['tokens_per_s']:.0f} tokens/s")
    assert set(report["nodes"]) == cluster, report["nodes"]
    cli = cli_project(xdir, ckpt, tmp_path / "cli")
    assert cli["projected"] == 12
    assert_same_as_cli(tmp_path / "ray", tmp_path / "cli", names)
    # The CLI and Ray share the manifests: a rerun of either skips every shard.
    assert cli_project(xdir, ckpt, tmp_path / "ray")["skipped"] == 12
    again = qkv_wgpu.ray.project_shards(xdir, tmp_path / "ray", ckpt, "h.0", concurrency=2,
                                        kernel="tiled")
    assert again["skipped"] == 12 and again["projected"] == 0


def writer_of_a_partial(out):
    """The pid of a process holding a partial output file under `out` open, and that
    shard's name; None while there is none."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(str(out)) and target.endswith(".qkv-partial"):
                return int(pid), Path(target).parent.name
    return None


def test_a_worker_killed_mid_shard_and_the_job_still_completes(cluster, tmp_path):
    ckpt, xdir = make_corpus(tmp_path, shards=10, tokens=30000, d_model=32, seed=2)
    out = tmp_path / "ray"
    result = {}

    def job():
        try:
            result["report"] = qkv_wgpu.ray.project_shards(
                xdir, out, ckpt, "h.0", concurrency=2, kernel="tiled", check_rows=64)
        except BaseException as e:  # noqa: B902 - handed to the test's thread
            result["error"] = e

    t = threading.Thread(target=job)
    t.start()
    victim = None
    deadline = time.time() + 300
    while victim is None and t.is_alive() and time.time() < deadline:
        victim = writer_of_a_partial(out)
        time.sleep(0.005)
    assert victim is not None, "no shard was caught being written"
    pid, shard = victim
    os.kill(pid, signal.SIGKILL)
    t.join(600)
    assert not t.is_alive()
    assert "error" not in result, result.get("error")
    report = result["report"]
    names = [f"part-{i:02}" for i in range(10)]
    # Every shard reported once, none lost, none twice.
    assert [r["name"] for r in report["shards"]] == names
    states = {r["name"]: r["state"] for r in report["shards"]}
    assert all(s == "projected" for n, s in states.items() if n != shard), states
    # The killed worker's shard was done again by its restarted worker (or, where the kill
    # came after its commit, found complete).
    assert states[shard] in ("projected", "skipped"), states
    redone = next(r for r in report["shards"] if r["name"] == shard)
    print(f"killed worker {pid} writing {shard}: {states[shard]} by {redone['pid']}",
          {r["name"]: r["pid"] for r in report["shards"]})
    assert redone["pid"] != pid
    cli_project(xdir, ckpt, tmp_path / "cli")
    assert_same_as_cli(out, tmp_path / "cli", names)


def test_a_failed_shard_is_raised_with_the_report_after_the_others_are_written(cluster, tmp_path):
    ckpt, xdir = make_corpus(tmp_path, shards=3, tokens=50, d_model=16, seed=3)
    bad = np.load(xdir / "part-01.npy")
    bad[7, 3] = np.inf
    np.save(xdir / "part-01.npy", bad)
    with pytest.raises(qkv_wgpu.ray.ShardsFailed, match="1 of 3 shard.*part-01.*Inf") as e:
        qkv_wgpu.ray.project_shards(xdir, tmp_path / "ray", ckpt, "h.0", concurrency=2,
                                    kernel="tiled")
    report = e.value.report
    assert [r["state"] for r in report["shards"]] == ["projected", "failed", "projected"]
    assert (report["projected"], report["failed"]) == (2, 1)
    assert sorted(os.listdir(tmp_path / "ray" / "part-00")) == [
        "k.npy", "q.npy", "shard.json", "v.npy"]
    failed = tmp_path / "ray" / "part-01"
    assert not failed.exists() or not [n for n in os.listdir(failed) if not n.startswith(".")]
