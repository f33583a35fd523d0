#!/usr/bin/env bash
# Makes this machine ready to build and run qkv-wgpu: checks for Rust, and on Linux makes
# sure a Vulkan loader and at least one Vulkan driver exist. Where no GPU driver is installed
# it installs Mesa's software Vulkan driver, lavapipe (Debian/Ubuntu: mesa-vulkan-drivers),
# which runs the same WGSL kernels on the CPU. Safe to run again: it installs only what is
# missing. macOS (Metal) and Windows (DX12/Vulkan) need nothing beyond their GPU drivers.
set -euo pipefail

say() { printf 'setup: %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo not found. Install Rust from https://rustup.rs, then run this again."
  exit 1
fi

[ "$(uname -s)" = Linux ] || exit 0

have_loader() { ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; }
have_driver() {
  local d
  for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d \
           ${VK_ICD_FILENAMES:+$(dirname "${VK_ICD_FILENAMES%%:*}")} \
           ${VK_DRIVER_FILES:+$(dirname "${VK_DRIVER_FILES%%:*}")}; do
    compgen -G "$d/*.json" >/dev/null 2>&1 && return 0
  done
  return 1
}

if have_loader && have_driver; then
  exit 0
fi

packages=(libvulkan1 mesa-vulkan-drivers)
say "no Vulkan loader or driver found; installing ${packages[*]} (Mesa's lavapipe: Vulkan on the CPU)"
if ! command -v apt-get >/dev/null 2>&1; then
  say "apt-get not found. Install your distribution's Vulkan loader and Mesa Vulkan drivers"
  say "(Fedora: vulkan-loader mesa-vulkan-drivers; Arch: vulkan-icd-loader vulkan-swrast), then run this again."
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    say "need root to install packages: run as root, or install ${packages[*]} yourself."
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
have_loader && have_driver || { say "installation finished but no Vulkan driver was found"; exit 1; }
say "installed: Vulkan now runs on the CPU through lavapipe"
