# Sourced (not run) by the lanes that test on the Python lane's environment, ray_lane.sh and
# torch_lane.sh, from the repository root: sets `venv` (target/py-venv, or QKV_PY_VENV) and
# `py`, its Python, and installs the qkv_wgpu module there (scripts/python.sh install) where
# it is missing.
venv="${QKV_PY_VENV:-target/py-venv}"
py="$venv/bin/python"
if ! "$py" -c 'import qkv_wgpu' >/dev/null 2>&1; then
  bash scripts/python.sh install
fi
