#!/usr/bin/env bash
# The torch lane: PyTorch and Hugging Face transformers into the Python lane's environment
# (installed once per run), then python/tests_torch: Q and K after RoPE and QK-norm against
# the models' own code (Llama 3, Qwen3, Gemma 3: tiny configs, random weights, on the CPU).
#
#   bash scripts/torch_lane.sh
#
# Needs the Python lane's environment (target/py-venv, or QKV_PY_VENV; made by
# scripts/python.sh install where missing). PyTorch's CPU wheel comes from its own index where
# that can be reached; else PyPI's wheel (which carries CUDA's libraries, unused here).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "torch: $*" >&2; }
# venv, py, and the module installed where missing.
. scripts/lane_env.sh
# Pinned: the tests register an attention function and read the models' modules.
start=$(date +%s)
if ! "$py" -c 'import torch' >/dev/null 2>&1; then
  "$py" -m pip install -q --retries 0 --timeout 10 "torch==2.15.0" \
      --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
    || "$py" -m pip install -q "torch==2.15.0"
fi
"$py" -m pip install -q "transformers==5.25.0" pytest
say "torch and transformers installed in $(( $(date +%s) - start )) s"
export QKV_BACKEND="${QKV_BACKEND:-vulkan}"
timeout 900 "$py" -m pytest -q -s -p no:cacheprovider python/tests_torch
