#!/usr/bin/env python3
"""Every variant's outputs, bit for bit, against those of another revision.

    python3 scripts/same_outputs.py BASE_REV        (e.g. main)

Builds BASE_REV's `qkv` in a temporary git worktree (removed afterwards) and this tree's, runs
both through `qkv project` on the same seeded inputs, and compares q.npy, k.npy and v.npy byte
for byte. The shapes are ragged (no size a multiple of any tile): X [37, 53] through a fused
W [53, 45 + 2 x 27], without and with its bias, and X [3, 13, 53] through W [53, 45 + 2 x 9]
with a bias into the head layout (5 query heads and 1 key/value head of 9). Each variant runs
in f32, f16 and bf16; the cooperative-matrix kernel in each of its sources (tile 8 and 16, f32
and f16 accumulators, 4 x 2 and 4 x 4 matrices per subgroup), in one and two stages.

A run both binaries refuse alike (a storage type the variant does not read, a kernel the adapter
cannot run) is listed as not run, with the reason. Exit status 0 when every run's outputs are
the same, 1 when any differs or one binary refuses what the other runs.

The adapter is whatever `qkv` picks (QKV_BACKEND, QKV_ADAPTER). QKV_SAME_RUNNER, if set, is a
command both binaries run under, e.g. `chroot DIR` for another system's Vulkan driver (the
cooperative-matrix lane's Debian sid root, scripts/coopmat_lane.sh, with the temporary
directory bound into it at the same path).
"""

import json
import re
import os
import random
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
from array import array
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
D_MODEL = 53
# Fused output columns: q_width + 2 kv_width, for the row-major layout and for the head layout.
N_OUT, N_OUT_HEADS = 45 + 2 * 27, 45 + 2 * 9
DTYPES = ["f32", "f16", "bf16"]


def kernels():
    names = ["naive", "tiled", "regtile", "regtile(wgx=8,wgy=32)", "direct", "direct(wg=32)",
             "subgroup", "texture", "subgroup-texture", "blocktile", "splitk", "splitk(splits=3)"]
    for tile in (8, 16):
        for acc in (32, 16):
            for wn in (2, 4):
                for stages in (2, 1):
                    names.append(f"coopmat(tile={tile},acc={acc},bm={8 * tile},bn={8 * tile},"
                                 f"wm={4 * tile},wn={wn * tile},bk={2 * tile},stages={stages})")
    return names


def cases(inputs):
    return {
        "tokens": ["--input", f"{inputs}/x.npy", "--wqkv", "w"],
        "tokens+bias": ["--input", f"{inputs}/x.npy", "--wqkv", "w", "--bqkv", "b"],
        "heads+bias": ["--input", f"{inputs}/x3.npy", "--wqkv", "wh", "--bqkv", "bh",
                       "--heads", "5", "--kv-heads", "1", "--head-layout", "heads"],
    }


def write_inputs(out):
    """Seeded X as f32 .npy, the fused Ws [d_model, n_out] (in-out) and their biases as F32
    safetensors, with nothing but the standard library."""
    rng = random.Random(20260533)

    def floats(n):
        return array("f", (rng.uniform(-1.0, 1.0) for _ in range(n)))

    def npy(path, shape, data):
        text = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % ", ".join(map(str, shape))
        text += " " * (64 - (10 + len(text) + 1) % 64) + "\n"
        path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()
                         + data.tobytes())

    out.mkdir(parents=True)
    npy(out / "x.npy", (37, D_MODEL), floats(37 * D_MODEL))
    npy(out / "x3.npy", (3, 13, D_MODEL), floats(3 * 13 * D_MODEL))
    tensors = {
        "w": ([D_MODEL, N_OUT], floats(D_MODEL * N_OUT)),
        "b": ([N_OUT], floats(N_OUT)),
        "wh": ([D_MODEL, N_OUT_HEADS], floats(D_MODEL * N_OUT_HEADS)),
        "bh": ([N_OUT_HEADS], floats(N_OUT_HEADS)),
    }
    header, at = {}, 0
    for name, (shape, data) in tensors.items():
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [at, at + 4 * len(data)]}
        at += 4 * len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    body = b"".join(data.tobytes() for _, data in tensors.values())
    (out / "w.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + body)


def build(tmp, base_sha):
    """This tree's qkv and BASE_REV's, copied to tmp/qkv-new and tmp/qkv-base."""
    print("building this tree's qkv", flush=True)
    subprocess.run(["cargo", "build", "--quiet", "--bin", "qkv"], cwd=ROOT, check=True)
    shutil.copy2(ROOT / "target/debug/qkv", tmp / "qkv-new")
    print(f"building {base_sha} in a temporary worktree", flush=True)
    base = tmp / "base"
    subprocess.run(["git", "worktree", "add", "--quiet", "--detach", str(base), base_sha],
                   cwd=ROOT, check=True)
    try:
        # From this tree's compiled dependencies, so that only the crate itself is built again.
        target = tmp / "target"
        if (ROOT / "target/debug").is_dir():
            shutil.copytree(ROOT / "target/debug", target / "debug", symlinks=True,
                            ignore=shutil.ignore_patterns("incremental"))
        env = dict(os.environ, CARGO_TARGET_DIR=str(target))
        subprocess.run(["cargo", "build", "--quiet", "--bin", "qkv"], cwd=base, env=env, check=True)
        shutil.copy2(target / "debug/qkv", tmp / "qkv-base")
        shutil.rmtree(target)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)


def run(tmp, which, args, out):
    """Exit status and what `qkv project` wrote to stderr ending in `error`, `out` left out."""
    runner = shlex.split(os.environ.get("QKV_SAME_RUNNER", ""))
    p = subprocess.run(runner + [str(tmp / f"qkv-{which}"), "project", *args, "--out", str(out)],
                       capture_output=True, text=True)
    errors = [l.replace(str(out), "OUT") for l in (p.stdout + p.stderr).splitlines()
              if l.startswith("error")]
    return p.returncode, errors


def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python3 scripts/same_outputs.py BASE_REV")
    rev = sys.argv[1]
    base_sha = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT,
                              check=True, capture_output=True, text=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp())
    try:
        build(tmp, base_sha)
        write_inputs(tmp / "in")
        weights = ["--weights", f"{tmp}/in/w.safetensors", "--weight-layout", "in-out"]
        same, differ = 0, []
        # Not run by either: reason -> kernel -> the runs.
        refused = defaultdict(lambda: defaultdict(list))
        n = 0
        for kernel in kernels():
            for dtype in DTYPES:
                for case, args in cases(tmp / "in").items():
                    n += 1
                    label = f"{dtype} {case}"
                    argv = args + weights + ["--dtype", dtype, "--kernel", kernel]
                    outs = {w: tmp / "out" / str(n) / w for w in ("base", "new")}
                    (base_rc, base_err), (new_rc, new_err) = (
                        run(tmp, w, argv, outs[w]) for w in ("base", "new"))
                    if base_rc or new_rc:
                        if (base_rc, base_err) == (new_rc, new_err):
                            reason = (base_err or [f"exit {base_rc}"])[0]
                            reason = re.sub(r"kernel [^ ;]+", "the kernel", reason, count=1)
                            refused[reason][kernel].append(label)
                        else:
                            differ.append(f"{kernel} {label}: {rev} exit {base_rc} {base_err[:1]}, "
                                          f"this tree exit {new_rc} {new_err[:1]}")
                        continue
                    bad = [f for f in ("q.npy", "k.npy", "v.npy")
                           if (outs["base"] / f).read_bytes() != (outs["new"] / f).read_bytes()]
                    if bad:
                        differ.append(f"{kernel} {label}: {', '.join(bad)} differ")
                    else:
                        same += 1
                    shutil.rmtree(tmp / "out" / str(n))
        for line in differ:
            print(f"DIFFERS  {line}")
        skipped = 0
        for reason, by_kernel in refused.items():
            runs = sum(len(v) for v in by_kernel.values())
            skipped += runs
            print(f"not run by either ({runs} runs): {reason[:150]}")
            for kernel, labels in by_kernel.items():
                print(f"    {kernel}: {', '.join(labels)}")
        runner = shlex.split(os.environ.get("QKV_SAME_RUNNER", ""))
        adapters = subprocess.run(runner + [str(tmp / "qkv-new"), "adapters"],
                                  capture_output=True, text=True).stdout.splitlines()[:2]
        print("adapter:", " ".join(" ".join(l.split()) for l in adapters))
        print(f"{same} runs bit-identical to {rev} ({base_sha[:10]}), {len(differ)} differ, "
              f"{skipped} not run by either")
        return 1 if differ else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
