"""llama.cpp's greedy continuations on the real Gemma 3 270M, run as a user runs it: `llama-completion` with its
default batch (n_batch 2048, n_ubatch 512), F16 K/V cache and 2 threads, `--temp 0` — the mode the issue's
done-criterion text comes from. `llama_greedy.json` holds the token-by-token (n_batch 1, F32 cache) run instead.

Per case: the text llama-completion prints, and from the llama_cpp Python binding in the same mode (prompt in one
batch, then one token per call, F16 cache) the greedy ids with llama.cpp's top-1 − top-2 logit margin at each step,
so a test can tell a real disagreement from a near-tie that llama.cpp itself decides differently across settings.

usage: python llama_completion_270m.py <llama-completion binary> <gguf> <out.json>   (in a venv with llama_cpp)
"""

import hashlib
import json
import subprocess
import sys

import llama_cpp
import numpy as np

CASES = [
    ("capital", "The capital of France is", 20),
    ("recipe", "To make a good cup of tea, you", 20),
    ("code", "def fibonacci(n):", 20),
]


def completion_text(binary, gguf, prompt, n):
    args = [binary, "-m", gguf, "-p", prompt, "-n", str(n), "--temp", "0", "-no-cnv", "-t", "2", "--no-display-prompt"]
    text = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    # llama-completion ends its output with "\n\n" of its own after the generated text.
    assert text.endswith("\n\n"), repr(text)
    return text[:-2]


def greedy_with_margins(model, prompt, n):
    model.reset()
    ids = model.tokenize(prompt.encode(), add_bos=True, special=True)
    model.eval(ids)
    greedy, margins = [], []
    for _ in range(n):
        logits = np.array(model.scores[model.n_tokens - 1])
        top2 = np.argsort(-logits)[:2]
        greedy.append(int(top2[0]))
        margins.append(round(float(logits[top2[0]] - logits[top2[1]]), 5))
        model.eval([int(top2[0])])
    return ids, greedy, margins


def main():
    binary, gguf, out = sys.argv[1:4]
    sha = hashlib.sha256(open(gguf, "rb").read()).hexdigest()
    model = llama_cpp.Llama(gguf, n_ctx=128, n_batch=512, n_ubatch=512, logits_all=True, n_threads=2, verbose=False)
    cases = []
    for name, prompt, n in CASES:
        ids, greedy, margins = greedy_with_margins(model, prompt, n)
        text = completion_text(binary, gguf, prompt, n)
        decoded = model.detokenize(greedy).decode()
        cases.append({"name": name, "prompt": prompt, "n": n, "text": text, "ids": ids, "greedy": greedy,
                      "margins": margins, "greedy_text": decoded})
    settings = ("llama-completion defaults (n_batch 2048, n_ubatch 512, F16 K/V, flash attention auto), --temp 0, -t 2, "
                "-no-cnv, --no-display-prompt; ids/margins: llama_cpp.Llama(n_batch=512, n_ubatch=512, F16 K/V, "
                "n_threads=2), prompt in one batch then one token per eval")
    json.dump({"model": {"sha256": sha}, "llama_cpp_commit": "0c1e57098 (llama-cpp-python 0.3.36 sdist)",
               "settings": settings, "cases": cases}, open(out, "w"), indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
