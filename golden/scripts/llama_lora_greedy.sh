#!/usr/bin/env bash
# llama.cpp's greedy continuation of the golden prompt on the tiny F32 models, without and with the golden LoRA
# adapter A (`--lora golden/lora/tiny-<arch>-lora-a.gguf`), written to golden/lora/llama_greedy.json.
#
#   LLAMA_COMPLETION=/path/to/llama-completion bash golden/scripts/llama_lora_greedy.sh
#
# llama-completion built from the llama-cpp-python 0.3.36 sdist's vendored llama.cpp (commit 0c1e57098), CPU only:
#   cmake -S vendor/llama.cpp -B build -DGGML_CUDA=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
#     -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DCMAKE_BUILD_TYPE=Release
#   cmake --build build --target llama-completion -j
# The text is kept as bytes: a random model emits partial UTF-8 sequences.
set -euo pipefail
cd "$(dirname "$0")/../.."
L=${LLAMA_COMPLETION:?set LLAMA_COMPLETION to a llama-completion binary}
PROMPT="The capital of France is Paris. This License applies to any program or other work."
N=10
out=golden/lora/llama_greedy.json
{
  printf '{\n  "llama_cpp": "0c1e57098 (llama-cpp-python 0.3.36 sdist), CPU, llama-completion --temp 0 --top-k 1 -n %s -no-cnv --no-display-prompt --simple-io -s 1; stdout, trailing newlines included",\n' "$N"
  printf '  "prompt": "%s",\n  "n_tokens": %s,\n  "runs": [\n' "$PROMPT" "$N"
  first=1
  for arch in gemma4 gemma3; do
    for adapter in none "golden/lora/tiny-$arch-lora-a.gguf"; do
      lora=(); [ "$adapter" != none ] && lora=(--lora "$adapter")
      bytes=$("$L" -m "golden/fixtures/tiny-$arch-f32.gguf" "${lora[@]}" -p "$PROMPT" -n "$N" --temp 0 --top-k 1 \
        -no-cnv --no-display-prompt --no-warmup --simple-io -t 2 -s 1 2>/dev/null </dev/null \
        | od -An -tu1 -v | tr -s ' \n' ' ' | sed 's/^ //; s/ $//; s/ /, /g')
      [ $first = 1 ] || printf ',\n'
      first=0
      printf '    {"model": "golden/fixtures/tiny-%s-f32.gguf", "adapter": "%s", "text_bytes": [%s]}' "$arch" "$adapter" "$bytes"
    done
  done
  printf '\n  ]\n}\n'
} > "$out"
echo "wrote $out"
