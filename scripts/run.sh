#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh), builds qkv in release mode and runs it.
# With no arguments it runs the main job, `qkv run`; otherwise it passes its arguments on:
#   scripts/run.sh                       # qkv run: GPT-2-small-shaped projection, checked
#   scripts/run.sh explain               # the worked example
#   scripts/run.sh run --tokens 1000 --d-model 768 --q-width 768 --kv-width 256 --bias
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The first build compiles wgpu and the rest (about 3 to 5 minutes on 2 cores); later ones
# take seconds. Cargo shows its progress.
if [ ! -x target/release/qkv ]; then
    printf 'run.sh: building qkv (release) for the first time: about 3 to 5 minutes on 2 cores\n' >&2
fi
cargo build --release --locked
[ $# -gt 0 ] || set -- run
exec ./target/release/qkv "$@"
