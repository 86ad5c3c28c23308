#!/usr/bin/env bash
# Runs the ferrogem command (release build) after making sure its system dependencies are installed.
# Usage: bash ci/ferrogem.sh check          # the built-in tiny model through every check
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
. ci/env.sh
exec cargo run --quiet --release -p ferrogem-harness -- "$@"
