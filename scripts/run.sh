#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh), builds qkv in release mode and runs it.
# With no arguments it runs the main job, `qkv run`; otherwise it passes its arguments on:
#   scripts/run.sh                       # qkv run: GPT-2-small-shaped projection, checked
#   scripts/run.sh explain               # the worked example
#   scripts/run.sh run --tokens 1000 --d-model 768 --q-width 768 --kv-width 256 --bias
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked --quiet
[ $# -gt 0 ] || set -- run
exec ./target/release/qkv "$@"
