#!/usr/bin/env bash
# Makes this machine ready to build and run qkv-wgpu: checks for Rust, and on Linux makes
# sure a Vulkan loader and at least one Vulkan driver exist. Where no GPU driver is installed
# it installs Mesa's software Vulkan driver, lavapipe (Debian/Ubuntu: mesa-vulkan-drivers),
# which runs the same WGSL kernels on the CPU, and where no EGL driver is installed, Mesa's
# (a GL adapter, the second one `qkv project --adapters` is tested with). Safe to run again:
# it installs only what is missing. macOS (Metal) and Windows (DX12/Vulkan) need nothing
# beyond their GPU drivers.
#
# `bash scripts/setup.sh --wasm` also readies the build of the browser page (web/,
# scripts/web.sh, which runs this itself): the wasm32-unknown-unknown Rust target and
# wasm-bindgen-cli at the version Cargo.lock has. `--web` adds the browser test's npm
# packages (npm ci in web/, no browser download) and, on Debian/Ubuntu, Chromium and its
# WebDriver. Again only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

web=none
for arg in "$@"; do
  case "$arg" in
    --web|web) web=all ;;
    --wasm) [ "$web" = all ] || web=wasm ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) say "unknown argument '$arg' (usage: bash scripts/setup.sh [--wasm | --web])"; exit 2 ;;
  esac
done

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo not found. Install Rust from https://rustup.rs, then run this again."
  exit 1
fi

# Root for apt-get: nothing when root, else sudo.
sudo=()
need_root() {
  [ "$(id -u)" -ne 0 ] || return 0
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    say "need root to install packages: run as root, or install $* yourself."
    exit 1
  fi
}
apt_updated=0
apt_install() {
  need_root "$*"
  export DEBIAN_FRONTEND=noninteractive
  if [ "$apt_updated" -eq 0 ]; then
    "${sudo[@]}" apt-get update -qq
    apt_updated=1
  fi
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# grep without -q reads all of ldconfig's output: with -q it can stop early, ldconfig then dies
# of SIGPIPE, and pipefail turns a found loader into a missing one.
have_loader() { ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1' >/dev/null; }
have_driver() {
  local d
  for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d \
           ${VK_ICD_FILENAMES:+$(dirname "${VK_ICD_FILENAMES%%:*}")} \
           ${VK_DRIVER_FILES:+$(dirname "${VK_DRIVER_FILES%%:*}")}; do
    compgen -G "$d/*.json" >/dev/null 2>&1 && return 0
  done
  return 1
}

setup_vulkan() {
  [ "$(uname -s)" = Linux ] || return 0
  if have_loader && have_driver; then
    return 0
  fi

  local packages=(libvulkan1 mesa-vulkan-drivers)
  say "no Vulkan loader or driver found; installing ${packages[*]} (Mesa's lavapipe: Vulkan on the CPU)"
  if ! command -v apt-get >/dev/null 2>&1; then
    say "apt-get not found. Install your distribution's Vulkan loader and Mesa Vulkan drivers"
    say "(Fedora: vulkan-loader mesa-vulkan-drivers; Arch: vulkan-icd-loader vulkan-swrast), then run this again."
    exit 1
  fi
  apt_install "${packages[@]}"
  have_loader && have_driver || { say "installation finished but no Vulkan driver was found"; exit 1; }
  say "installed: Vulkan now runs on the CPU through lavapipe"
}

# A GL adapter (wgpu's GL backend goes through EGL): the second adapter of a machine without
# a GPU (Mesa's llvmpipe), for the tests of `qkv project --adapters` (shards spread over
# adapters). Where an EGL driver is installed already (Mesa's, or a GPU vendor's), nothing.
have_egl() {
  ldconfig -p 2>/dev/null | grep 'libEGL\.so\.1' >/dev/null &&
    compgen -G '/usr/share/glvnd/egl_vendor.d/*.json' >/dev/null 2>&1
}

setup_gl() {
  [ "$(uname -s)" = Linux ] || return 0
  have_egl && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    say "no EGL driver found: install your distribution's Mesa EGL and GL drivers for a GL adapter"
    exit 1
  fi
  say "no EGL driver found; installing Mesa's (a GL adapter on the CPU: llvmpipe)"
  apt_install libegl1 libegl-mesa0 libgl1-mesa-dri
  have_egl || { say "installation finished but no EGL driver was found"; exit 1; }
}

# The wasm-bindgen crate's version in Cargo.lock (empty when there is none).
lock_wasm_bindgen_version() {
  awk '/^\[\[package\]\]/ { name = "" }
       /^name = /        { name = $3 }
       /^version = /     { if (name == "\"wasm-bindgen\"") { gsub(/"/, "", $3); print $3 } }' \
    Cargo.lock 2>/dev/null | sort -u
}

# What building the page needs: the wasm32 target and wasm-bindgen-cli.
setup_wasm() {
  # The Rust target the page's crate builds for.
  local target=wasm32-unknown-unknown
  if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -x "$target" >/dev/null; then
      say "adding the Rust target $target"
      rustup target add "$target"
    fi
  elif [ ! -d "$(rustc --print sysroot)/lib/rustlib/$target" ]; then
    say "rustup not found and $(rustc --version) has no $target target: add it the way this Rust was installed"
    exit 1
  fi
  setup_wasm_bindgen
}

# What the browser test needs besides: its npm packages and Chromium.
setup_browser() {
  # The browser test's npm packages (playwright-core, which drives the system's Chromium).
  if [ -f web/package-lock.json ]; then
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
      say "node and npm not found: the browser test needs Node.js 20 or newer (https://nodejs.org)"
      exit 1
    fi
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    if [ "$major" -lt 20 ]; then
      say "Node.js $(node --version) is too old: the browser test (playwright-core) needs Node.js 20 or newer"
      exit 1
    fi
    local want have
    want="$(node -p 'require("./web/package-lock.json").packages["node_modules/playwright-core"]?.version ?? ""')"
    have="$(node -p 'try { require("./web/node_modules/playwright-core/package.json").version } catch { "" }')"
    if [ -z "$have" ] || [ "$have" != "$want" ]; then
      say "installing the browser test's npm packages (npm ci in web/: playwright-core ${want}, no browser download)"
      (cd web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    fi
  fi

  # Chromium, which the browser test runs headless (SwiftShader's WebGPU where there is no GPU).
  if [ "$(uname -s)" = Linux ]; then
    local missing=() p
    for p in chromium chromium-driver; do
      if command -v dpkg-query >/dev/null 2>&1; then
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
      fi
    done
    if [ ! -x "${QKV_CHROMIUM:-/usr/bin/chromium}" ] && ! command -v apt-get >/dev/null 2>&1; then
      say "no Chromium at ${QKV_CHROMIUM:-/usr/bin/chromium} and no apt-get: install Chromium or Chrome"
      say "and point QKV_CHROMIUM at it for the browser test (bash scripts/web.sh test)"
    elif [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing ${missing[*]} (the browser test's headless browser)"
      if ! apt_install "${missing[@]}"; then
        say "apt-get could not install ${missing[*]} (Ubuntu ships Chromium as a snap): install"
        say "Chromium or Chrome yourself and point QKV_CHROMIUM at it for bash scripts/web.sh test"
        [ -x "${QKV_CHROMIUM:-/usr/bin/chromium}" ] || exit 1
      fi
    fi
  elif [ ! -x "${QKV_CHROMIUM:-/usr/bin/chromium}" ]; then
    say "the browser test needs Chromium or Chrome: set QKV_CHROMIUM to its executable"
  fi
}

# wasm-bindgen-cli, at exactly the wasm-bindgen crate's version. Without its default features
# (the test runner's HTTPS downloads, which the page's build never uses) and with a profile
# that compiles fast: it is built from source on every new machine, CI's included.
setup_wasm_bindgen() {
  local version have
  version="$(lock_wasm_bindgen_version)"
  if [ -z "$version" ]; then
    say "Cargo.lock has no wasm-bindgen crate yet: skipping wasm-bindgen-cli"
  elif [ "$(printf '%s\n' "$version" | wc -l)" -gt 1 ]; then
    say "Cargo.lock has more than one wasm-bindgen version ($(printf "%s " $version)): cannot choose a wasm-bindgen-cli"
    exit 1
  elif [ "$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }')" != "$version" ]; then
    say "installing wasm-bindgen-cli $version (cargo install, a few minutes)"
    local log
    log="$(mktemp)"
    local fast=(env CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
                CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=false)
    if ! "${fast[@]}" cargo install wasm-bindgen-cli --version "$version" --no-default-features \
        --locked 2>&1 | tee "$log" >&2; then
      # wasm-bindgen-cli's own lock file can name a dependency version that a registry mirror
      # does not carry yet; then resolve afresh rather than fail.
      if grep -Eq 'failed to select a version|could not find .* in registry' "$log"; then
        say "its locked dependencies are not all in this registry; installing without --locked"
        "${fast[@]}" cargo install wasm-bindgen-cli --version "$version" --no-default-features
      else
        rm -f "$log"
        exit 1
      fi
    fi
    rm -f "$log"
    have="$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }')"
    if [ "$have" != "$version" ]; then
      say "installed wasm-bindgen-cli $version, but the wasm-bindgen on PATH ($(command -v wasm-bindgen || echo none)) is ${have:-missing}:"
      say "put ${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin first on PATH"
      exit 1
    fi
  fi
}

# The page and its browser test need no system GPU driver (Chromium brings SwiftShader).
[ "$web" != none ] || { setup_vulkan; setup_gl; }
case "$web" in
  wasm) setup_wasm ;;
  all) setup_wasm; setup_browser ;;
esac
