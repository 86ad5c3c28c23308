#!/usr/bin/env bash
# Same GPU, same run: LoRA training tokens/s of `ferrogem finetune` on an E2B-shaped Gemma 4 against HF transformers +
# peft (golden/scripts/torch_train_bench.py: the same shapes, rank, α, targets, seq-len, batch, lr, clip, AdamW;
# bf16 base with random weights, LoRA in f32 under bf16 autocast), printed as one table with ratios and issue 13's
# target (ferrogem >= 0.5x PyTorch's tokens/s), both peaks, and the top kernels where they are measured.
#
#   bash ci/train-compare.sh [MODEL.gguf]
#
# Environment (all optional):
#   MODEL         the E2B-shaped GGUF ferrogem trains on (or the first argument); default: a synthetic Gemma 4 E2B
#                 Q4_K_M made with `ferrogem synth --arch gemma4 --preset e2b --quant Q4_K_M` in $WORK (3.4 GB)
#   FERROGEM_BIN  a prebuilt ferrogem binary; default: `cargo build --release -p ferrogem-harness`
#   PYTHON        the python with torch, transformers (5.x: Gemma4ForCausalLM) and peft (default python3)
#   STEPS (20)    timed steps on each side; SEQ_LEN (512), BATCH (1), RANK (8), ALPHA (16), LR (1e-4), CLIP (1)
#   WARMUP (3)    untimed first steps on each side (ferrogem: pipeline compilation; torch: autotuning, allocator)
#   ATTN (sdpa)   torch's attention implementation (sdpa or eager)
#   CHECKPOINTING (off)  ferrogem's `finetune --checkpointing` (off: keep every layer's activations, as torch without
#                 checkpointing; on: recompute each layer in the backward, as torch with it)
#   FERROGEM_COOP_MATRIX  passed on to ferrogem: 0 keeps the forward's tiled products off cooperative matrices
#                 (default: on where the adapter has them; README, "Environment")
#   TORCH_PROFILE (1)  also profile 3 extra torch steps (after the timed ones) for its top kernels
#   RUN_FERROGEM (1), RUN_TORCH (1)  0 reuses that side's JSON already in $WORK (split a run over several calls)
#   WORK          (${TMPDIR:-/tmp}/ferrogem-train-compare)
#   TINY=1        a smoke test of this script (any adapter, CPU torch): the tiny Gemma 4 fixture
#                 (golden/fixtures/tiny-gemma4-Q4_K_M.gguf, vocab 512) and torch_train_bench.py --tiny; its numbers
#                 compare nothing
# Needs: python3 with torch (CUDA), transformers and peft; for ferrogem a Vulkan loader and the NVIDIA ICD (README:
# "On a real GPU"; VK_DRIVER_FILES is pointed at nvidia_icd.json when unset and one is found; with no system loader,
# put an unpacked libvulkan.so.1 on LD_LIBRARY_PATH). The table warns when a side ran on the CPU.
#
# ferrogem's steady-state rate: `finetune`'s summary.json times from the first step to the last (after the model
# load, but the first steps compile every pipeline), so it is run twice, with WARMUP and with WARMUP + STEPS steps,
# and the rate is (tokens_long − tokens_short) / (seconds_long − seconds_short): the STEPS steps after the first
# WARMUP, as torch's timed steps are. The long run's own tokens_per_s (compilation included) is reported beside it.
# Both sides: a step is BATCH sequences of SEQ_LEN rows (SEQ_LEN + 1 random ids, each row predicting the next id),
# a fresh sample each step, the token-mean loss, global-norm clipping at CLIP, AdamW (weight decay 0) at a constant
# LR. ferrogem keeps its base quantized as MODEL is and checkpoints as CHECKPOINTING says; torch runs once without
# gradient checkpointing and once with it.
# Output: the table on stdout; ferrogem-short/, ferrogem-long/ and ferrogem-timed/ (finetune's outputs), torch.json,
# torch-ckpt.json and train-compare.json in $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/env.sh

MODEL=${1:-${MODEL:-}}
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-3}
SEQ_LEN=${SEQ_LEN:-512}
BATCH=${BATCH:-1}
RANK=${RANK:-8}
ALPHA=${ALPHA:-16}
LR=${LR:-1e-4}
CLIP=${CLIP:-1}
ATTN=${ATTN:-sdpa}
CHECKPOINTING=${CHECKPOINTING:-off}
TORCH_PROFILE=${TORCH_PROFILE:-1}
RUN_FERROGEM=${RUN_FERROGEM:-1}
RUN_TORCH=${RUN_TORCH:-1}
TINY=${TINY:-0}
VOCAB=262144
torch_model=()
if [ "$TINY" != 0 ]; then
    MODEL=${MODEL:-golden/fixtures/tiny-gemma4-Q4_K_M.gguf}
    VOCAB=512
    torch_model=(--tiny)
fi
WORK=${WORK:-${TMPDIR:-/tmp}/ferrogem-train-compare}
mkdir -p "$WORK"
say() { echo "train-compare: $*" >&2; }
die() { say "$*"; exit 1; }
command -v "$PYTHON" >/dev/null || die "$PYTHON is needed (torch, transformers, peft; and to read the JSON results)"
[ "$WARMUP" -ge 1 ] && [ "$STEPS" -ge 1 ] || die "WARMUP and STEPS must be at least 1"

# 1. ferrogem: two runs on the same data, the difference is the steady state.
if [ "$RUN_FERROGEM" != 0 ]; then
    if [ -z "${FERROGEM_BIN:-}" ]; then
        say "building ferrogem (release)"
        cargo build --release --locked -p ferrogem-harness >&2
        FERROGEM_BIN=$PWD/target/release/ferrogem
    fi
    [ -x "$FERROGEM_BIN" ] || die "FERROGEM_BIN=$FERROGEM_BIN is not an executable"
    if [ -z "${VK_DRIVER_FILES:-}" ]; then
        for icd in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json \
            /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; do
            if [ -f "$icd" ]; then
                export VK_DRIVER_FILES=$icd
                say "VK_DRIVER_FILES=$icd"
                break
            fi
        done
    fi
    if [ -z "$MODEL" ]; then
        MODEL=$WORK/gemma4-e2b-Q4_K_M.gguf
        if [ ! -f "$MODEL" ]; then
            say "writing the synthetic Gemma 4 E2B Q4_K_M to $MODEL"
            "$FERROGEM_BIN" synth --arch gemma4 --preset e2b --quant Q4_K_M --out "$WORK/partial.gguf" >&2
            mv "$WORK/partial.gguf" "$MODEL"
        fi
    fi
    [ -f "$MODEL" ] || die "no model at $MODEL"

    # WARMUP + STEPS samples of SEQ_LEN + 1 ids (each step takes BATCH of them), seeded; ids below the vocab.
    DATA=$WORK/train-ids.jsonl
    "$PYTHON" - "$DATA" "$(((WARMUP + STEPS) * BATCH))" "$SEQ_LEN" "$VOCAB" <<'PY'
import json, random, sys
path, n, seq_len, vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(0)
with open(path, "w") as f:
    for _ in range(n):
        f.write(json.dumps({"ids": [rng.randrange(vocab) for _ in range(seq_len + 1)]}) + "\n")
PY

    finetune() { # steps, out dir, extra flags
        rm -rf "$2"
        say "ferrogem finetune: $1 steps, seq-len $SEQ_LEN, batch $BATCH, rank $RANK -> $2"
        "$FERROGEM_BIN" finetune --model "$MODEL" --data "$DATA" --steps "$1" --seq-len "$SEQ_LEN" --batch "$BATCH" \
            --rank "$RANK" --alpha "$ALPHA" --targets q,k,v,o,gate,up,down --lr "$LR" --schedule constant \
            --clip "$CLIP" --weight-decay 0 --checkpointing "$CHECKPOINTING" --out "$2" "${@:3}" >&2
        [ -f "$2/summary.json" ] || die "ferrogem finetune wrote no $2/summary.json"
    }
    # Per-kernel GPU time from a run of its own (timestamps around every dispatch slow the step). It runs first:
    # the driver keeps compiled pipelines on disk, so the first process on a machine compiles for longer than the
    # next, and the short and long runs must pay the same compile time for their difference to hold none of it.
    finetune "$((WARMUP + 2))" "$WORK/ferrogem-timed" --time-kernels
    finetune "$WARMUP" "$WORK/ferrogem-short"
    finetune "$((WARMUP + STEPS))" "$WORK/ferrogem-long"
fi
[ -f "$WORK/ferrogem-long/summary.json" ] && [ -f "$WORK/ferrogem-short/summary.json" ] ||
    die "no ferrogem results in $WORK (RUN_FERROGEM=0 reuses earlier ones)"

# 2. torch + peft on the same GPU, without and with gradient checkpointing.
if [ "$RUN_TORCH" != 0 ]; then
    torch_bench() { # output json, extra flags...
        local out=$1
        shift
        say "torch + peft: $STEPS steps after $WARMUP, seq-len $SEQ_LEN, batch $BATCH, rank $RANK, attn $ATTN $*"
        "$PYTHON" golden/scripts/torch_train_bench.py --steps "$STEPS" --warmup-steps "$WARMUP" --seq-len "$SEQ_LEN" \
            --batch "$BATCH" --rank "$RANK" --alpha "$ALPHA" --lr "$LR" --clip "$CLIP" --attn "$ATTN" \
            --json-out "$out" "${torch_model[@]}" "$@" >&2
    }
    profile_flag=()
    [ "$TORCH_PROFILE" = 0 ] || profile_flag=(--profile)
    torch_bench "$WORK/torch.json" "${profile_flag[@]}"
    torch_bench "$WORK/torch-ckpt.json" --checkpointing
fi
[ -f "$WORK/torch.json" ] && [ -f "$WORK/torch-ckpt.json" ] || die "no torch results in $WORK (RUN_TORCH=0 reuses earlier ones)"

# 3. One table.
"$PYTHON" - "$WORK" <<'PY'
import json, os, sys

work = sys.argv[1]
load = lambda name: json.load(open(os.path.join(work, name)))
short, long_ = load("ferrogem-short/summary.json"), load("ferrogem-long/summary.json")
tr, trc = load("torch.json"), load("torch-ckpt.json")

d_tokens = long_["tokens"] - short["tokens"]
d_seconds = long_["seconds"] - short["seconds"]
steady = d_tokens / d_seconds if d_seconds > 0 else float("nan")
steady_steps = long_["steps"] - short["steps"]
fg_step_ms = 1e3 * d_seconds / steady_steps if steady_steps else float("nan")
gib = lambda b: "-" if b is None else f"{b / 2**30:.2f} GiB"
yes = lambda ok: "yes" if ok else "NO"

rows = []  # metric, ferrogem, torch, torch (ckpt), ratio vs torch, ratio vs torch (ckpt), target, met
def ratio(ours, theirs):
    return f"{ours / theirs:.2f}x" if theirs else "-"
rows.append(["train tok/s (steady state)", f"{steady:.0f}", f"{tr['tokens_per_s']:.0f}", f"{trc['tokens_per_s']:.0f}",
             ratio(steady, tr["tokens_per_s"]), ratio(steady, trc["tokens_per_s"]), ">= 0.5x",
             f"{yes(steady >= 0.5 * tr['tokens_per_s'])} / {yes(steady >= 0.5 * trc['tokens_per_s'])}"])
rows.append(["ms per step", f"{fg_step_ms:.1f}", f"{tr['step_ms']:.1f}", f"{trc['step_ms']:.1f}", "-", "-", "-", "-"])
rows.append([f"train tok/s, all {long_['steps']} steps (compile incl.)", f"{long_['tokens_per_s']:.0f}", "-", "-", "-",
             "-", "-", "-"])
plan = f" (plan {gib(long_['planned_bytes'])})" if long_.get("planned_bytes") else ""
rows.append(["GPU peak (ferrogem: accountant; torch: max allocated)", gib(long_["peak_gpu_bytes"]) + plan,
             gib(tr["peak_mem_bytes"]), gib(trc["peak_mem_bytes"]), "-", "-", "-", "-"])

adapter = long_.get("adapter", "")
if tr["model"] != "tiny" and ("Cpu" in adapter or "llvmpipe" in adapter or tr["device"] == "cpu"):
    print("WARNING: a side ran on the CPU (no Vulkan GPU adapter or no CUDA): these numbers compare nothing; "
          "check the Vulkan loader and VK_DRIVER_FILES, or torch.cuda.is_available()")
ckpt = {True: "on", False: "off"}.get(long_.get("gradient_checkpointing"), "?")
print(f"device: {tr['device']}; ferrogem on {long_.get('adapter', '?')}, commit {long_.get('commit', '?')}, "
      f"gradient checkpointing {ckpt}; "
      f"torch {tr['torch']}, transformers {tr['transformers']}, peft {tr['peft']}")
s = long_.get("settings", {})
print(f"run: seq-len {tr['seq_len']}, batch {tr['batch']}, rank {tr['rank']} (alpha {tr['alpha']}), targets "
      f"{','.join(t.replace('_proj', '') for t in tr['targets'])}, lr {s.get('lr', '?')}, clip {tr['clip']}; "
      f"{steady_steps} timed steps after {short['steps']} (ferrogem: long − short run; torch: after "
      f"{tr['warmup_steps']} warm-up steps); ferrogem base {os.path.basename(long_.get('model', '?'))}, torch base "
      f"{tr['dtype']}, attn {tr['attn']}")
fl = lambda x: "-" if x is None else f"{x:.4f}"
print(f"losses: ferrogem {fl(long_.get('first_loss'))} -> {fl(long_.get('last_loss'))}; torch {tr['first_loss']:.4f} -> "
      f"{tr['last_loss']:.4f}; torch (ckpt) {trc['first_loss']:.4f} -> {trc['last_loss']:.4f}")
header = ["metric", "ferrogem", "torch", "torch (ckpt)", "ratio", "ratio (ckpt)", "target", "met?"]
widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
print(line(header))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in rows:
    print(line(r))
if long_.get("peak_by_category"):
    print("ferrogem GPU peak by category: " + ", ".join(f"{c} {gib(b)}" for c, b in long_["peak_by_category"] if b))

# Where ferrogem's time goes: `finetune --time-kernels` (GPU time per kernel per step from step 2 on).
timed_path = os.path.join(work, "ferrogem-timed/summary.json")
fg_kernels = json.load(open(timed_path)).get("kernels") if os.path.exists(timed_path) else None
if fg_kernels:
    total = sum(k["ms_per_step"] for k in fg_kernels)
    top = fg_kernels[:12]
    width = max(len(k["kernel"]) for k in top)
    print(f"top ferrogem training kernels (GPU ms per step of {total:.1f} ms kernel time, % of it):")
    for k in top:
        print(f"  {k['kernel']:<{width}} {k['ms_per_step']:9.2f} {100 * k['ms_per_step'] / total:6.1f}%  "
              f"x{k['dispatches_per_step']:.0f}")
else:
    print("ferrogem per-kernel GPU time: unavailable (no ferrogem-timed/summary.json with kernels)")
if tr.get("top_kernels"):
    ks = [k for k in tr["top_kernels"] if k["kernel"] != "(total)"][:12]
    tot = next(k["us_per_step"] for k in tr["top_kernels"] if k["kernel"] == "(total)")
    print(f"top torch kernels (no ckpt; GPU ms per step of {tot / 1e3:.1f} ms kernel time, % of it):")
    for k in ks:
        print(f"  {k['kernel'][:90]:<90} {k['us_per_step'] / 1e3:8.2f} {k['pct']:6.1f}%  x{k['calls_per_step']}")

json.dump({
    "ferrogem": {"steady_tokens_per_s": steady, "gradient_checkpointing": long_.get("gradient_checkpointing"),
                 "steady_step_ms": fg_step_ms, "steady_steps": steady_steps,
                 "all_steps_tokens_per_s": long_["tokens_per_s"], "peak_gpu_bytes": long_["peak_gpu_bytes"],
                 "peak_by_category": long_.get("peak_by_category"), "adapter": long_.get("adapter"),
                 "commit": long_.get("commit"), "short": short, "long": long_},
    "torch": tr, "torch_ckpt": trc,
    "ratio": steady / tr["tokens_per_s"], "ratio_ckpt": steady / trc["tokens_per_s"],
    "target": 0.5, "met": steady >= 0.5 * tr["tokens_per_s"], "met_ckpt": steady >= 0.5 * trc["tokens_per_s"],
    "rows": [dict(zip(header, r)) for r in rows],
}, open(os.path.join(work, "train-compare.json"), "w"), indent=1)
PY
