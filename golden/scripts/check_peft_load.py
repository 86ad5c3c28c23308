#!/usr/bin/env python3
"""Loads a PEFT adapter directory written by ferrogem (`ferrogem::lora::write_peft_dir`) with HF peft on the tiny
Gemma 4 / Gemma 3 base and prints how far peft's logits are from the manual merge W + scale·B·A, the scale
computed here from adapter_config.json by peft's rule. A small figure (~1e-6) means peft reads the config and
every tensor as the writer meant them; keys peft did not match would leave their LoRA at its init (B = 0) and
show as a large one.

Same venv and llama.cpp sdist as make_lora_goldens.py (see its header). Writing the directories and checking one:

    FERROGEM_PEFT_OUT=/tmp/peft-out cargo test -p ferrogem --test lora_write
    /work/lora-venv/bin/python golden/scripts/check_peft_load.py --adapter /tmp/peft-out/tiny-gemma4-lora-b \
        --arch gemma4 --llama-cpp /work/lora-work/llama_cpp_python-0.3.36/vendor/llama.cpp \
        --reference golden/lora/tiny-gemma4-f32.lora-b.hf_logits.npy

--reference: logits peft gave for the adapter the directory was written from (golden/lora's .hf_logits.npy on the
f32 base); the written adapter should reproduce them.
"""
import argparse, json, math, os, re, sys
import numpy as np
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--adapter", required=True, help="PEFT directory (adapter_config.json + adapter_model.safetensors)")
ap.add_argument("--arch", required=True, choices=["gemma4", "gemma3"])
ap.add_argument("--llama-cpp", required=True, help="vendor/llama.cpp folder of the llama-cpp-python 0.3.36 sdist")
ap.add_argument("--fixtures", default="golden/fixtures")
ap.add_argument("--base", default="f32", help="fixture quantization of the base (tiny-<arch>-<base>.gguf)")
ap.add_argument("--reference", help="logits .npy the written adapter should reproduce")
ap.add_argument("--save", help="write peft's logits (float32 [33, vocab] .npy) here: a golden for the adapter")
args = ap.parse_args()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_hf
tiny_hf.use_gguf_py(args.llama_cpp)  # the converter's own gguf-py dequantizes the base, as for the goldens
from peft import PeftModel
from safetensors.torch import load_file

torch.set_num_threads(1)
fixture = os.path.join(args.fixtures, f"tiny-{args.arch}-{args.base}")
ids = json.load(open(fixture + ".golden.json"))["ids"]
base_sd, _, _ = tiny_hf.dequant_state_dict(args.arch, tiny_hf.new_model(args.arch), fixture + ".gguf")
base = tiny_hf.logits_of(tiny_hf.base_model(args.arch, base_sd), ids)
sanity = float(np.abs(base - np.load(fixture + ".hf_dequant_logits.npy")).max())
assert sanity <= 2e-5, f"base differs from {fixture}.hf_dequant_logits.npy by {sanity}"

peft_model = PeftModel.from_pretrained(tiny_hf.base_model(args.arch, base_sd), args.adapter).eval()
peft_logits = tiny_hf.logits_of(peft_model, ids)


def pattern_get(patterns, module, default):
    # peft.utils.other.get_pattern_key: the first key k for which "(.*\.)?(k)$" matches the module's name
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


config = json.load(open(os.path.join(args.adapter, "adapter_config.json")))
tensors = load_file(os.path.join(args.adapter, "adapter_model.safetensors"))
merged = {k: v.clone() for k, v in base_sd.items()}
for key, a in tensors.items():
    if not key.endswith(".lora_A.weight"):
        continue
    module = key[len("base_model.model."):-len(".lora_A.weight")]
    r = pattern_get(config.get("rank_pattern") or {}, module, config["r"])
    alpha = pattern_get(config.get("alpha_pattern") or {}, module, config["lora_alpha"])
    assert a.shape[0] == r, (key, a.shape, r)
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    b = tensors[key.replace(".lora_A.", ".lora_B.")]
    merged[module + ".weight"] = merged[module + ".weight"] + scale * (b.double() @ a.double()).float()
manual = tiny_hf.logits_of(tiny_hf.base_model(args.arch, merged), ids)

print(f"{args.adapter}: {len(tensors) // 2} modules on tiny-{args.arch}-{args.base}")
print(f"  max |peft - base|          = {np.abs(peft_logits - base).max():.3e}  (how much the adapter moves)")
print(f"  max |peft - manual merge|  = {np.abs(peft_logits - manual).max():.3e}")
if args.reference:
    print(f"  max |peft - reference|     = {np.abs(peft_logits - np.load(args.reference)).max():.3e}  ({args.reference})")
if args.save:
    np.save(args.save, peft_logits.astype(np.float32))
    print(f"  peft logits written to {args.save}")
