"""The Python module's overhead, measured (issue #25's must-shows):

1. End to end against the CLI: `qkv run` on GPT-2's shape (768 -> 3 x 768, bias) at 2048
   tokens, then the module on the same shape with the same kernel, one after the other on
   one machine: the CLI's end-to-end median (`gpu_total_ms`: upload X, dispatch, read Q, K, V
   back, wall clock) against the module's `p(x)` wall clock (median of the same number of
   calls: X checked, output arrays allocated, the stream, the arrays shaped) and its
   `p.time(x)["end_to_end_ms"]` (the library's own wall clock of the stream).
2. No copy of X beyond the upload: a run of a 1 GiB X (349525 x 768 float32) through a
   narrow projection (Q, K, V 64 wide each, so the outputs are 268 MB) in a fresh process;
   its peak RSS against the RSS with X, the weights and the outputs' size accounted for.

    target/py-venv/bin/python scripts/python_overhead.py [--qkv target/release/qkv]
        [--repeats 15] [--kernel CONFIG] [--skip-rss]

Run it after `bash scripts/python.sh install` (or any venv with the module) and
`cargo build --release`; QKV_BACKEND picks the adapter as for the CLI.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import qkv_wgpu


def cli_run(qkv, kernel, repeats):
    out = subprocess.run([qkv, "run", "--tokens", "2048", "--d-model", "768", "--q-width", "768",
                          "--kv-width", "768", "--bias", "--kernel", kernel,
                          "--repeats", str(repeats), "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def module_run(kernel, repeats):
    rng = np.random.default_rng(42)
    ws = [rng.uniform(-1, 1, (768, 768)).astype(np.float32) for _ in range(3)]
    bs = [rng.uniform(-1, 1, 768).astype(np.float32) for _ in range(3)]
    x = rng.uniform(-1, 1, (2048, 768)).astype(np.float32)
    p = qkv_wgpu.Projector(*ws, *bs, kernel=kernel)
    p(x)  # made, and warmed up, as the CLI's untimed first run
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        p(x)
        walls.append((time.perf_counter() - start) * 1e3)
    timed = p.time(x, repeats=repeats)
    return statistics.median(walls), timed


RSS_CHILD = r"""
import resource, sys, numpy as np, qkv_wgpu
def rss_mb():
    with open("/proc/self/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS")).split()[1]) / 1024
def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
tokens, d, w = 349525, 768, 64
rng = np.random.default_rng(0)
ws = [rng.uniform(-1, 1, (d, w)).astype(np.float32) for _ in range(3)]
p = qkv_wgpu.Projector(*ws, kernel=sys.argv[1])
p(np.ones((8, d), np.float32))       # the context and a pipeline made
x = np.empty((tokens, d), np.float32)
block = rng.uniform(-1, 1, (4096, d)).astype(np.float32)
for i in range(0, tokens, 4096):     # filled in place: no temporary as large as X
    x[i:i + 4096] = block[:tokens - i]
before, peak_before = rss_mb(), peak_mb()
q, k, v = p(x)
print(f"{x.nbytes / 2**20:.0f} {3 * q.nbytes / 2**20:.0f} {before:.0f} {peak_before:.0f} "
      f"{peak_mb():.0f}")
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qkv", default="target/release/qkv")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--kernel", default=None,
                    help="configuration (default: the one `qkv run` autotunes for gpt2)")
    ap.add_argument("--skip-rss", action="store_true")
    args = ap.parse_args()
    adapter = qkv_wgpu.adapters()[0]["name"]
    kernel = args.kernel or cli_run(args.qkv, "auto", 1)["config"]
    cli = cli_run(args.qkv, kernel, args.repeats)
    wall, timed = module_run(kernel, args.repeats)
    cli_ms = cli["gpu_total_ms"]
    print(f"adapter: {adapter}; GPT-2 768 -> 3 x 768 + bias, 2048 tokens, kernel {kernel}, "
          f"medians of {args.repeats}")
    print(f"  CLI `qkv run` end to end (gpu_total_ms):   {cli_ms:9.2f} ms "
          f"(kernel {cli['gpu_kernel_ms']:.2f} ms; its source generates X, "
          f"{cli['input_ms']:.1f} ms busy)")
    print(f"  module p(x), wall clock around the call:   {wall:9.2f} ms "
          f"({100 * (wall / cli_ms - 1):+.1f}% against the CLI)")
    print(f"  module p.time(x)['end_to_end_ms']:         {timed['end_to_end_ms']:9.2f} ms "
          f"({100 * (timed['end_to_end_ms'] / cli_ms - 1):+.1f}%; kernel "
          f"{timed['kernel_ms']:.2f} ms)")
    if not args.skip_rss:
        out = subprocess.run([sys.executable, "-c", RSS_CHILD, kernel], capture_output=True,
                             text=True, check=True).stdout.split()
        x_mb, out_mb, before, peak_before, peak = map(float, out)
        assert peak_before <= before + 1, "a temporary before the call hides its peak"
        print(f"  1 GiB X ({x_mb:.0f} MiB, 349525 x 768 float32) -> Q, K, V of {out_mb:.0f} "
              f"MiB: RSS {before:.0f} MiB with X in memory before the call (its peak so far "
              f"{peak_before:.0f}), peak {peak:.0f} MiB after: the call added "
              f"{peak - before:.0f} MiB = outputs {out_mb:.0f} + "
              f"{peak - before - out_mb:.0f} MiB of chunk buffers and staging (GPU memory is "
              f"host memory on a CPU driver); a copy of X would add {x_mb:.0f}")


if __name__ == "__main__":
    main()
