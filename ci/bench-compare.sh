#!/usr/bin/env bash
# Same GPU, same model, same command: llama.cpp's llama-bench (CUDA; Vulkan too where glslc is installed) against
# `ferrogem bench`, printed as one table with ratios and the issue-7 targets. No llama.cpp code or binary is
# committed: llama.cpp is built from the llama-cpp-python 0.3.36 sdist's vendored tree.
#
#   bash ci/bench-compare.sh [MODEL.gguf]
#
# Environment (all optional):
#   MODEL         the GGUF to run (or the first argument); default: a synthetic Gemma 4 E2B Q4_K_M made with
#                 `ferrogem synth` in $WORK (3.4 GB)
#   LLAMA_SRC     the llama-cpp-python sdist: a .tar.gz or an unpacked directory (the device machine has no
#                 network; fetch it elsewhere with `pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36`).
#                 Default: that pip download, into $WORK
#   LLAMA_BENCH   a llama-bench binary already built (skips the CUDA build)
#   FERROGEM_BIN  a prebuilt ferrogem binary; default: `cargo build --release -p ferrogem-harness`
#   REPS (5), PROMPT (512), GEN (128), CUDA_ARCH (90), WORK (${TMPDIR:-/tmp}/ferrogem-bench-compare),
#   DEPTH (4096): also decode GEN tokens after DEPTH tokens of context (llama-bench -d; ferrogem bench --prompt
#                 DEPTH, whose decode starts there); 0 skips that row
#   HISTORY       the CSV history ferrogem appends to (default $WORK/history.csv)
# Needs: NVIDIA driver and CUDA toolkit (nvcc), cmake, a C++ compiler, python3; for ferrogem a Vulkan loader and the
# NVIDIA ICD (README: "On a real GPU", VK_DRIVER_FILES).
# Output: the table on stdout; llama.json, llama-vulkan.json, ferrogem.json and compare.json in $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${1:-${MODEL:-}}
REPS=${REPS:-5}
PROMPT=${PROMPT:-512}
GEN=${GEN:-128}
DEPTH=${DEPTH:-4096}
CUDA_ARCH=${CUDA_ARCH:-90}
WORK=${WORK:-${TMPDIR:-/tmp}/ferrogem-bench-compare}
HISTORY=${HISTORY:-$WORK/history.csv}
mkdir -p "$WORK"
say() { echo "bench-compare: $*" >&2; }
die() { say "$*"; exit 1; }
command -v python3 >/dev/null || die "python3 is needed to read the JSON results"

# 1. ferrogem.
if [ -z "${FERROGEM_BIN:-}" ]; then
    say "building ferrogem (release)"
    cargo build --release --locked -p ferrogem-harness >&2
    FERROGEM_BIN=$PWD/target/release/ferrogem
fi
[ -x "$FERROGEM_BIN" ] || die "FERROGEM_BIN=$FERROGEM_BIN is not an executable"
if [ -z "$MODEL" ]; then
    MODEL=$WORK/gemma4-e2b-Q4_K_M.gguf
    if [ ! -f "$MODEL" ]; then
        say "writing the synthetic Gemma 4 E2B Q4_K_M to $MODEL"
        "$FERROGEM_BIN" synth --arch gemma4 --preset e2b --quant Q4_K_M --out "$MODEL" >&2
    fi
fi
[ -f "$MODEL" ] || die "no model at $MODEL"

# 2. llama.cpp from the sdist's vendored tree, llama-bench only.
llama_tree() {
    local src=${LLAMA_SRC:-}
    if [ -z "$src" ]; then
        say "downloading the llama-cpp-python 0.3.36 sdist"
        python3 -m pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d "$WORK/sdist" >&2
        src=$(ls "$WORK"/sdist/llama_cpp_python-0.3.36.tar.gz)
    fi
    if [ -f "$src" ]; then
        mkdir -p "$WORK/src"
        tar -xzf "$src" -C "$WORK/src"
        src=$(ls -d "$WORK"/src/llama_cpp_python-*/ | head -n1)
        src=${src%/}
    fi
    for tree in "$src/vendor/llama.cpp" "$src"; do
        if [ -f "$tree/CMakeLists.txt" ] && [ -d "$tree/tools/llama-bench" ]; then
            echo "$tree"
            return
        fi
    done
    die "no llama.cpp tree (vendor/llama.cpp with tools/llama-bench) under $src"
}

build_llama_bench() { # build dir, extra cmake flags...
    local dir=$1
    shift
    if [ ! -x "$dir/bin/llama-bench" ]; then
        local tree
        tree=$(llama_tree)
        say "building llama-bench in $dir ($*)"
        cmake -S "$tree" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
            -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF "$@" >&2
        cmake --build "$dir" --target llama-bench -j "$(nproc)" >&2
    fi
    echo "$dir/bin/llama-bench"
}

run_llama_bench() { # binary, output json
    say "llama-bench ($1): pp$PROMPT, tg$GEN, $REPS reps"
    "$1" -m "$MODEL" -ngl 99 -p "$PROMPT" -n "$GEN" -r "$REPS" -o json >"$2"
}

if [ -z "${LLAMA_BENCH:-}" ]; then
    command -v nvcc >/dev/null || die "the CUDA toolkit (nvcc) is needed to build llama.cpp's CUDA backend; or set LLAMA_BENCH"
    command -v cmake >/dev/null || die "cmake is needed to build llama.cpp (apt-get install cmake, or pip install cmake); or set LLAMA_BENCH"
    LLAMA_BENCH=$(build_llama_bench "$WORK/llama-cuda" -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH")
fi
run_llama_bench "$LLAMA_BENCH" "$WORK/llama.json"
rm -f "$WORK/llama-depth.json" "$WORK/ferrogem-depth.json"
if [ "$DEPTH" != 0 ]; then
    say "llama-bench: tg$GEN at depth $DEPTH, $REPS reps"
    "$LLAMA_BENCH" -m "$MODEL" -ngl 99 -p 0 -n "$GEN" -d "$DEPTH" -r "$REPS" -o json >"$WORK/llama-depth.json"
fi
rm -f "$WORK/llama-vulkan.json"
if command -v glslc >/dev/null && [ "${LLAMA_VULKAN:-1}" != 0 ]; then
    run_llama_bench "$(build_llama_bench "$WORK/llama-vulkan" -DGGML_VULKAN=ON)" "$WORK/llama-vulkan.json"
else
    say "no glslc: skipping llama.cpp's Vulkan backend"
fi

# 3. ferrogem on the same model and shapes.
say "ferrogem bench: prompt $PROMPT, gen $GEN, $REPS reps"
"$FERROGEM_BIN" bench --model "$MODEL" --prompt "$PROMPT" --gen "$GEN" --reps "$REPS" \
    --json "$WORK/ferrogem.json" --csv "$HISTORY" >&2
if [ "$DEPTH" != 0 ]; then
    say "ferrogem bench: decode $GEN tokens at depth $DEPTH, $REPS reps"
    "$FERROGEM_BIN" bench --model "$MODEL" --prompt "$DEPTH" --gen "$GEN" --ctx $((DEPTH + GEN)) --reps "$REPS" \
        --json "$WORK/ferrogem-depth.json" --csv "$HISTORY" >&2
fi

# 4. One table.
python3 - "$WORK" <<'PY'
import json, os, sys

work = sys.argv[1]
def load(name):
    path = os.path.join(work, name)
    return json.load(open(path)) if os.path.exists(path) else None

def tests(runs):
    pp = next((r for r in runs if r["n_prompt"] > 0 and r["n_gen"] == 0), None)
    tg = next((r for r in runs if r["n_gen"] > 0 and r["n_prompt"] == 0), None)
    return pp, tg

fg = load("ferrogem.json")
pp, tg = tests(load("llama.json"))
vk = load("llama-vulkan.json")
bytes_per_token = fg["decode_bytes"]["total_bytes"]
read_bw = fg["read_gb_per_s"] * 1e9
roofline = lambda tok_s: tok_s * bytes_per_token / read_bw

rows = []  # metric, llama.cpp, ferrogem, ratio, target, met
def add(metric, llama, ours, target, met, ratio=None):
    rows.append([metric, llama, ours, ratio if ratio is not None else "-", target, met])
def yes(ok):
    return "yes" if ok else "NO"

dec, pre = fg["decode_tok_s"]["median"], fg["prefill_tok_s"]["median"]
add(f"decode tok/s (tg{fg['gen_tokens']})", f"{tg['avg_ts']:.1f}", f"{dec:.1f}", ">= 1.0x", yes(dec >= tg["avg_ts"]), f"{dec / tg['avg_ts']:.2f}x")
add(f"prefill tok/s (pp{fg['prompt_tokens']})", f"{pp['avg_ts']:.0f}", f"{pre:.0f}", ">= 0.5x", yes(pre >= 0.5 * pp["avg_ts"]), f"{pre / pp['avg_ts']:.2f}x")
fd, ld = load("ferrogem-depth.json"), load("llama-depth.json")
if fd and ld:
    dtg = next(r for r in ld if r["n_gen"] > 0)
    ddec = fd["decode_tok_s"]["median"]
    add(f"decode tok/s at depth {fd['prompt_tokens']} (tg{fd['gen_tokens']} @ d{dtg.get('n_depth', '?')})", f"{dtg['avg_ts']:.1f}", f"{ddec:.1f}", ">= 1.0x", yes(ddec >= dtg["avg_ts"]), f"{ddec / dtg['avg_ts']:.2f}x")
add("decode % of bandwidth roofline", f"{100 * roofline(tg['avg_ts']):.1f}%", f"{100 * fg['roofline_fraction']:.1f}%", ">= 40%", yes(fg["roofline_fraction"] >= 0.4))
add("dispatches per layer per token", "-", f"{fg['decode_dispatches_per_layer']:.2f}", "<= 10", yes(fg["decode_dispatches_per_layer"] <= 10))
add("submissions per token", "-", f"{fg['decode']['submissions']:.2f}", "1", yes(fg["decode"]["submissions"] <= 1.0))
if vk:
    vpp, vtg = tests(vk)
    add("decode tok/s vs llama.cpp Vulkan", f"{vtg['avg_ts']:.1f}", f"{dec:.1f}", "-", "-", f"{dec / vtg['avg_ts']:.2f}x")
    add("prefill tok/s vs llama.cpp Vulkan", f"{vpp['avg_ts']:.0f}", f"{pre:.0f}", "-", "-", f"{pre / vpp['avg_ts']:.2f}x")

env = fg["environment"]
print(f"device: {tg.get('gpu_info') or tg.get('cpu_info', '?')} (llama.cpp {tg.get('backends', '?')}, build {tg.get('build_commit', '?')}); "
      f"ferrogem on {env['adapter']} ({env['backend']}, driver {env['driver']} {env['driver_info']}), commit {env['commit']}")
print(f"model: {fg['model']['name']} ({tg.get('model_type', '?')}, {tg.get('model_size', 0) / 1e9:.2f} GB); "
      f"decode reads {bytes_per_token / 1e9:.3f} GB/token; shader read bandwidth (stream_read) {fg['read_gb_per_s']:.0f} GB/s; "
      f"llama.cpp {len(tg.get('samples_ts', []))} reps (mean), ferrogem {fg['reps']} reps (median)")
header = ["metric", "llama.cpp", "ferrogem", "ratio", "target", "met?"]
widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
print(line(header))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in rows:
    print(line(r))
timing = fg["gpu_timing"]
if timing["status"] == "measured":
    kernels = {}
    for k in timing["decode"]["kernels"]:
        kernels[k["kernel"]] = kernels.get(k["kernel"], 0.0) + k["gpu_ns"]
    timed_tokens = fg["gen_tokens"] * fg["reps"]
    step_ns = sum(timing["decode_s"]) * 1e9 / timed_tokens  # the wall time of the reps the GPU times come from
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:8]
    width = max(len(name) for name, _ in top)
    print(f"top decode kernels (GPU µs per token, % of the {step_ns / 1e3:.1f} µs timed step):")
    for name, ns in top:
        per_token = ns / timed_tokens
        print(f"  {name:<{width}} {per_token / 1e3:9.1f} {100 * per_token / step_ns:6.1f}%")
else:
    print(f"per-kernel GPU time: unavailable ({timing['reason']})")
json.dump({"rows": [dict(zip(header, r)) for r in rows]}, open(os.path.join(work, "compare.json"), "w"), indent=1)
PY
