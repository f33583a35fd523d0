#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs the whole test suite. GPU tests run on
# whatever adapter wgpu finds (lavapipe where there is no GPU) and fail, never skip, when
# none is found. QKV_BACKEND / QKV_ADAPTER choose the adapter, as for the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo test --locked "$@"
