#!/usr/bin/env bash
# The cooperative-matrix test lane: tests/coopmat.rs on Mesa >= 25's lavapipe, which offers
# VK_KHR_cooperative_matrix (Debian 12's Mesa 22 does not). That Mesa needs Debian sid's
# glibc, so it runs in a Debian sid root made once with debootstrap from the mirror this
# machine's apt already uses, and kept (QKV_SID_ROOT, default /var/cache/qkv-wgpu/sid). The
# test binary is built here and runs inside unchanged; with QKV_COOPMAT_LANE=1 every test
# fails, never skips, when the adapter there offers no cooperative matrices. Needs root
# (debootstrap, chroot, mount).
set -euo pipefail
cd "$(dirname "$0")/.."
root="${QKV_SID_ROOT:-/var/cache/qkv-wgpu/sid}"
say() { printf 'coopmat lane: %s\n' "$*" >&2; }

if [ ! -e "$root/.qkv-ready" ]; then
    command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
    mirror=$(grep -hoE '^(URIs:|deb) +[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | awk '{print $2}' | grep -v security | head -1 || true)
    mirror="${mirror:-http://deb.debian.org/debian}"
    say "making a Debian sid root in $root from $mirror (once; kept for later runs)"
    rm -rf "$root.partial"
    mkdir -p "$(dirname "$root")"
    debootstrap --variant=minbase --include=mesa-vulkan-drivers,libvulkan1 sid "$root.partial" "$mirror" >/dev/null
    touch "$root.partial/.qkv-ready"
    rm -rf "$root" && mv "$root.partial" "$root"
fi

mesa=$(chroot "$root" dpkg-query -W -f='${Version}' mesa-vulkan-drivers)
say "Mesa (mesa-vulkan-drivers) in the sid root: $mesa"
case "$mesa" in
    2[5-9].*|[3-9][0-9].*) ;;
    *) say "Mesa $mesa is older than 25: no VK_KHR_cooperative_matrix in lavapipe"; exit 1 ;;
esac

bin=$(cargo test --locked --test coopmat --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "coopmat":
        print(m["executable"])' | tail -1)
cargo build --locked --quiet
mkdir -p "$root/opt/qkv"
cp "$bin" "$root/opt/qkv/coopmat-tests"
cp target/debug/qkv "$root/opt/qkv/qkv"
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true' EXIT
run() { chroot "$root" env QKV_BACKEND=vulkan NODEVICE_SELECT=1 QKV_COOPMAT_LANE=1 HOME=/tmp "$@"; }
run /opt/qkv/qkv adapters
# The measured peak of this lavapipe, cooperative matrices included (a CPU driver's figures).
run env QKV_CACHE_DIR=/tmp/qkv-lane-cache /opt/qkv/qkv peak --refresh
run /opt/qkv/qkv run --kernel coopmat --dtype f16 --tokens 300 --d-model 100 --q-width 64 --kv-width 32 --bias --repeats 2
run /opt/qkv/coopmat-tests
