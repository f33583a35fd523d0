#!/usr/bin/env bash
# The browser page (web/): builds the qkv-web crate to WebAssembly and runs wasm-bindgen on it,
# serves the page on 127.0.0.1, or tests it in headless Chromium through Playwright.
#
#   bash scripts/web.sh build           cargo build (wasm32-unknown-unknown) + wasm-bindgen -> web/pkg
#   bash scripts/web.sh serve [PORT]    build, then serve web/ on http://127.0.0.1:PORT/ (8000)
#   bash scripts/web.sh test            build, serve on a free port, run web/test/browser.mjs
#   bash scripts/web.sh [PORT]          the same as serve [PORT]
#
# What it needs, installed where missing by scripts/setup.sh, which it runs (--wasm to build,
# --web to test; QKV_WEB_NO_SETUP=1 skips that): the wasm32-unknown-unknown Rust target,
# wasm-bindgen-cli at the version of the wasm-bindgen crate in Cargo.lock, python3 to serve;
# for `test` also node, web/node_modules (npm ci in web/) and Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'web: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

target=wasm32-unknown-unknown
target_dir="${CARGO_TARGET_DIR:-target}"
wasm_in="$target_dir/$target/release/qkv_web.wasm"
out_dir=web/pkg
wasm_out="$out_dir/qkv_web_bg.wasm"

# The wasm-bindgen crate's version in Cargo.lock: the CLI must be exactly this version, as the
# crate and the CLI agree on an unversioned format between them.
lock_wasm_bindgen_version() {
  awk '/^\[\[package\]\]/ { name = "" }
       /^name = /        { name = $3 }
       /^version = /     { if (name == "\"wasm-bindgen\"") { gsub(/"/, "", $3); print $3 } }' \
    Cargo.lock | sort -u
}

check_build_tools() {
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust from https://rustup.rs"
  if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed | grep -x "$target" >/dev/null ||
      die "the Rust target $target is not installed: run 'rustup target add $target' (or bash scripts/setup.sh --web)"
  elif [ ! -d "$(rustc --print sysroot)/lib/rustlib/$target" ]; then
    die "the Rust target $target is not installed for $(rustc --version) (bash scripts/setup.sh --web adds it through rustup)"
  fi

  local want have
  want="$(lock_wasm_bindgen_version)"
  [ -n "$want" ] || die "Cargo.lock has no wasm-bindgen package: is web/ (qkv-web) a member of the workspace?"
  [ "$(printf '%s\n' "$want" | wc -l)" -eq 1 ] ||
    die "Cargo.lock has more than one wasm-bindgen version ($(printf "%s " $want)); wasm-bindgen-cli can match only one"
  if ! command -v wasm-bindgen >/dev/null 2>&1; then
    die "wasm-bindgen not found. Install it with: cargo install wasm-bindgen-cli --version $want --locked (or bash scripts/setup.sh --web, which drops --locked when a registry mirror lacks one of the CLI's locked dependencies)"
  fi
  have="$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }')"
  [ "$have" = "$want" ] ||
    die "wasm-bindgen is version ${have:-unknown} but Cargo.lock has wasm-bindgen $want. Install the matching CLI with: cargo install wasm-bindgen-cli --version $want --locked --force (or bash scripts/setup.sh --web)"
}

build() {
  # Installs what is missing (the wasm32 target, wasm-bindgen-cli at Cargo.lock's version);
  # QKV_WEB_NO_SETUP=1 only checks.
  [ -n "${QKV_WEB_NO_SETUP:-}" ] || bash scripts/setup.sh --wasm
  check_build_tools
  say "cargo build --locked --release --target $target -p qkv-web"
  cargo build --locked --release --target "$target" -p qkv-web
  [ -f "$wasm_in" ] || die "the build finished but $wasm_in is missing"
  say "wasm-bindgen --target web --no-typescript --out-dir $out_dir $wasm_in"
  wasm-bindgen --target web --no-typescript --out-dir "$out_dir" "$wasm_in"
  local bytes gz raw
  bytes="$(wc -c <"$wasm_out" | tr -d ' ')"
  gz="$(gzip -9c "$wasm_out" | wc -c | tr -d ' ')"
  raw="$(wc -c <"$wasm_in" | tr -d ' ')"
  say "$(awk -v b="$bytes" -v g="$gz" -v r="$raw" -v f="$wasm_out" \
    'BEGIN { printf "%s: %d bytes (%.1f KiB; %.1f KiB gzipped; cargo wrote %.1f KiB)", f, b, b / 1024, g / 1024, r / 1024 }')"
}

check_python() {
  command -v python3 >/dev/null 2>&1 || die "python3 not found: it serves the page (web/test/serve.py)"
}

serve() {
  local port="${1:-8000}"
  case "$port" in ''|*[!0-9]*) die "serve: the port must be a number, not '$port'" ;; esac
  check_python
  build
  say "open http://127.0.0.1:$port/ (Ctrl-C stops the server)"
  say "the page needs WebGPU: Chrome or Edge 113+ (Windows, macOS, ChromeOS; Android from 121;"
  say "on Linux it may still need chrome://flags/#enable-unsafe-webgpu, depending on version and GPU),"
  say "Safari 26 (macOS, iOS, iPadOS 26), or Firefox 141+ on Windows (Firefox elsewhere: newer"
  say "versions, or behind dom.webgpu.enabled)"
  exec python3 web/test/serve.py --port "$port" --directory web
}

test_page() {
  # The browser test's npm packages and Chromium too (--web includes --wasm).
  [ -n "${QKV_WEB_NO_SETUP:-}" ] || bash scripts/setup.sh --web
  QKV_WEB_NO_SETUP=1
  check_python
  command -v node >/dev/null 2>&1 || die "node not found: the browser test runs on Node.js 20+ (bash scripts/setup.sh does not install Node)"
  [ -f web/node_modules/playwright-core/package.json ] ||
    die "web/node_modules lacks playwright-core: run (cd web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci) (or bash scripts/setup.sh --web)"
  local chromium="${QKV_CHROMIUM:-/usr/bin/chromium}"
  [ -x "$chromium" ] ||
    die "no Chromium at $chromium: install it (Debian: apt-get install chromium, or bash scripts/setup.sh --web) or set QKV_CHROMIUM"
  build

  local tmp server_pid="" port="" rc=0
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "[ -n \"\${server_pid:-}\" ] && kill \"\$server_pid\" 2>/dev/null; wait 2>/dev/null; rm -rf '$tmp'" EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  python3 web/test/serve.py --port 0 --directory web --port-file "$tmp/port" --quiet >"$tmp/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    [ -s "$tmp/port" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; die "the server exited before listening"; }
    sleep 0.1
  done
  [ -s "$tmp/port" ] || { cat "$tmp/server.log" >&2; die "the server did not start listening within 10 s"; }
  port="$(cat "$tmp/port")"
  say "serving web/ on http://127.0.0.1:$port/ (pid $server_pid); running web/test/browser.mjs"
  node web/test/browser.mjs "http://127.0.0.1:$port/" || rc=$?
  if [ "$rc" -ne 0 ]; then
    say "the browser test failed (exit $rc)"
    [ -s "$tmp/server.log" ] && { say "server log:"; cat "$tmp/server.log" >&2; }
  fi
  exit "$rc"
}

case "${1:-serve}" in
  build) [ $# -le 1 ] || die "build takes no arguments"; build ;;
  serve) shift $(( $# > 0 ? 1 : 0 )); [ $# -le 1 ] || die "usage: bash scripts/web.sh serve [PORT]"; serve "$@" ;;
  test) [ $# -le 1 ] || die "test takes no arguments"; test_page ;;
  [0-9]*) [ $# -le 1 ] || die "usage: bash scripts/web.sh [serve] [PORT]"; serve "$1" ;;
  -h|--help|help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1': use build, serve [PORT] or test (bash scripts/web.sh --help)" ;;
esac
