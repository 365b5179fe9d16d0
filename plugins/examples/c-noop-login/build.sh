#!/usr/bin/env bash
# Builds the C login plugin: wit-bindgen generates the bindings, clang compiles for wasm32 without a libc, and
# wasm-tools wraps the core module into a component.
#   plugins/examples/c-noop-login/build.sh [out.wasm]
# Needs clang + lld (Debian: apt-get install clang lld), wit-bindgen-cli 0.63 and wasm-tools 1.263 (cargo install).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/noop.wasm}")"
gen="$(mktemp -d)"
trap 'rm -rf "$gen"' EXIT
wit-bindgen c "$here/../../wit" --world gatehouse:plugin/login --out-dir "$gen" >/dev/null 2>&1
clang --target=wasm32-unknown-unknown -O2 -nostdlib -mbulk-memory -I"$here/libc" -I"$gen" \
  -Wl,--no-entry -Wl,--export-dynamic -o "$gen/core.wasm" \
  "$here/noop.c" "$here/mini_libc.c" "$gen/login.c" "$gen/login_component_type.o"
wasm-tools component new "$gen/core.wasm" -o "$out"
echo "$out: $(wc -c < "$out") bytes"
