#!/usr/bin/env bash
# Runs the ferrogem command (release build) after making sure the Vulkan pieces it needs are installed.
# Usage: bash ci/ferrogem.sh check          # the built-in tiny model through every check
#        bash ci/ferrogem.sh <command> …    # any ferrogem command; `bash ci/ferrogem.sh --help` lists them
#        bash ci/ferrogem.sh serve --models DIR   # also builds the browser engine (ci/build-web.sh) it serves
# The build is cargo's own, with its progress on stderr; the first one takes several minutes, later ones only
# rebuild what changed. The command runs from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh vulkan
. ci/env.sh

target_dir=${CARGO_TARGET_DIR:-${CARGO_BUILD_TARGET_DIR:-target}}
bin=$target_dir/release/ferrogem
# Only for the message: cargo decides what to rebuild. The sources the binary is built from (build scripts embed
# shaders/, profiles/ and golden/ files), newer than the binary, mean a rebuild.
if [ ! -x "$bin" ]; then
    echo "ci/ferrogem.sh: building the ferrogem binary (release; the first build takes several minutes)" >&2
elif [ -n "$(find Cargo.toml Cargo.lock engine/Cargo.toml engine/build.rs engine/src harness/Cargo.toml \
    harness/build.rs harness/src web/www shaders profiles golden -newer "$bin" -print -quit 2>/dev/null)" ]; then
    echo "ci/ferrogem.sh: rebuilding the ferrogem binary (release)" >&2
fi
cargo build --release --locked -p ferrogem-harness
[ "${1:-}" != serve ] || bash ci/build-web.sh
exec "$bin" "$@"
