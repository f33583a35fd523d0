#!/usr/bin/env bash
# The Python lane: a virtual environment made from nothing, the package built and installed
# by `pip install ./python` (maturin from PyPI, in pip's isolated build environment), then the
# tests with pytest on the adapter QKV_BACKEND names.
#
#   bash scripts/python.sh            make the environment, install, test
#   bash scripts/python.sh install    make the environment and install only
#
# The environment is target/py-venv (QKV_PY_VENV to put it elsewhere); it is made again from
# nothing each time, as on a new machine.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "python: $*" >&2; }
die() { say "$*"; exit 1; }
venv="${QKV_PY_VENV:-target/py-venv}"
command -v python3 >/dev/null 2>&1 || die "python3 not found: install Python 3.9 or later"
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  # Debian and Ubuntu ship venv and ensurepip apart from python3.
  say "python3 has no venv/ensurepip; installing python3-venv"
  if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq python3-venv >/dev/null ||
    die "cannot install python3-venv: install it (or a Python with venv) yourself"
fi
rm -rf "$venv"
python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip
start=$(date +%s)
say "pip install ./python (builds the extension with maturin: a few minutes the first time)"
"$py" -m pip install -q ./python
say "installed in $(( $(date +%s) - start )) s"
[ "${1:-}" = install ] && exit 0
"$py" -m pip install -q pytest safetensors ml_dtypes matplotlib gguf
QKV_BACKEND="${QKV_BACKEND:-vulkan}" "$py" -m pytest -q python/tests
