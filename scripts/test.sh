#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs the Rust test suite (cargo test: unit,
# GPU, CLI, file and shader tests). GPU tests fail, never skip, when no adapter is found. On
# Linux the backend is Vulkan unless QKV_BACKEND says otherwise, as in CI (so a missing
# Vulkan driver fails the tests instead of falling back to GL); QKV_ADAPTER picks an adapter.
# CI (.ci/run) runs this and more: formatting, clippy, the generated kernels' check, the
# cooperative-matrix lane (scripts/coopmat_lane.sh) and the browser test (scripts/web.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Mesa's Vulkan device-selection layer prints "XDG_RUNTIME_DIR is invalid" on every adapter
# enumeration when there is no desktop session. The qkv binary switches the layer off itself
# there (src/bin/qkv/main.rs); the test binaries, which use the library, get it from here.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export NODEVICE_SELECT="${NODEVICE_SELECT:-1}"
fi
if [ "$(uname -s)" = Linux ]; then
    export QKV_BACKEND="${QKV_BACKEND:-vulkan}"
fi
exec cargo test --locked "$@"
