#!/usr/bin/env bash
# The Ray lane: Ray from PyPI (its CPU wheel, installed once per run into the Python lane's
# environment), then python/tests_ray: a head node and a worker node started on 127.0.0.1
# by `ray start`, a corpus of shards projected through them with qkv_wgpu.ray and compared
# byte for byte with `qkv project`, a worker killed mid-shard. Every Ray process is stopped
# at the end, whatever happens.
#
#   bash scripts/ray_lane.sh
#
# Needs the Python lane's environment (target/py-venv, or QKV_PY_VENV; made by
# scripts/python.sh install where missing) and builds the release `qkv` binary the tests
# compare with.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "ray: $*" >&2; }
# venv, py, and the module installed where missing.
. scripts/lane_env.sh
# Pinned: the tests drive Ray's command line and Ray Data's actor pools.
start=$(date +%s)
"$py" -m pip install -q "ray[data]==2.60.0" pytest safetensors
say "Ray installed in $(( $(date +%s) - start )) s"
cargo build --locked --release --bin qkv
export QKV_BIN="$PWD/target/release/qkv" RAY_USAGE_STATS_ENABLED=0
export QKV_BACKEND="${QKV_BACKEND:-vulkan}"
trap '"$venv/bin/ray" stop --force >/dev/null 2>&1 || true' EXIT
timeout 1200 "$py" -m pytest -q -p no:cacheprovider python/tests_ray
