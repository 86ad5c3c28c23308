#!/usr/bin/env bash
# Builds the browser engine: web/ for wasm32 in release, then wasm-bindgen's ES module and wasm into target/web/pkg,
# with its TypeScript types (ferrogem_web.d.ts), which `ferrogem serve` serves at /pkg/. Installs what it needs (ci/setup.sh browser) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh browser
target_dir=${CARGO_TARGET_DIR:-${CARGO_BUILD_TARGET_DIR:-target}}
echo "ci/build-web.sh: building web/ for wasm32 (release; several minutes the first time)" >&2
cargo build --locked --release -p ferrogem-web --target wasm32-unknown-unknown
wasm-bindgen --target web --out-dir "$target_dir/web/pkg" \
    "$target_dir/wasm32-unknown-unknown/release/ferrogem_web.wasm"
echo "ci/build-web.sh: wrote $target_dir/web/pkg ($(du -sh "$target_dir/web/pkg" | cut -f1))" >&2
