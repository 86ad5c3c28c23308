#!/usr/bin/env bash
# Seeds a fuzz target's corpus with the golden files (valid models and adapters), so that mutations reach past the
# GGUF reader: `bash fuzz/seed.sh model_load` then `cargo +nightly fuzz run model_load -- -max_len=1100000`.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: seed.sh TARGET}
mkdir -p "corpus/$target"
cp ../golden/fixtures/*.gguf ../golden/lora/*.gguf "corpus/$target/"
ls "corpus/$target" | wc -l
