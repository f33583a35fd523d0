#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs the whole test suite. GPU tests run on
# whatever adapter wgpu finds (lavapipe where there is no GPU) and fail, never skip, when
# none is found. QKV_BACKEND / QKV_ADAPTER choose the adapter, as for the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Mesa's Vulkan device-selection layer prints "XDG_RUNTIME_DIR is invalid" on every adapter
# enumeration when there is no desktop session. The qkv binary switches the layer off itself
# there (src/bin/qkv/main.rs); the test binaries, which use the library, get it from here.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export NODEVICE_SELECT="${NODEVICE_SELECT:-1}"
fi
exec cargo test --locked "$@"
