"""The tiny HF Gemma 4 / Gemma 3 base models of the fixtures, with a fixture GGUF's weights dequantized by gguf-py.

Shared by make_lora_goldens.py and make_training_goldens.py. Parses no arguments and imports gguf only when a
function needs it: the caller puts llama.cpp's own gguf-py first on sys.path (use_gguf_py) before calling
dequant_state_dict, so that the converter's gguf-py (0.19.0), not a pip-installed one, dequantizes.
"""
import os, sys
import numpy as np
import torch


def use_gguf_py(llama_cpp):
    """Put <llama_cpp>/gguf-py first on sys.path and import gguf from there."""
    sys.path.insert(0, os.path.join(llama_cpp, "gguf-py"))
    import gguf
    return gguf


def make_config(arch):
    """Exactly the configs of make_tiny_gemma4.py (variant e2b, hidden 128) and make_tiny_gemma3.py."""
    if arch == "gemma4":
        from transformers import Gemma4TextConfig
        layer_types = ["sliding_attention", "sliding_attention", "sliding_attention",
                       "full_attention", "sliding_attention", "full_attention"]
        kw = dict(
            vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=6,
            num_attention_heads=4, num_key_value_heads=2, head_dim=32, global_head_dim=64,
            hidden_activation="gelu_pytorch_tanh", max_position_embeddings=4096, rms_norm_eps=1e-6,
            sliding_window=8, layer_types=layer_types, final_logit_softcapping=30.0,
            pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=True,
            rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                             "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                                "rope_theta": 1000000.0}},
        )
        kw.update(vocab_size_per_layer_input=512, hidden_size_per_layer_input=16,
                  num_kv_shared_layers=2, use_double_wide_mlp=True, attention_k_eq_v=False)
        cfg = Gemma4TextConfig(**kw)
    else:
        from transformers import Gemma3TextConfig
        cfg = Gemma3TextConfig(
            vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=6,
            num_attention_heads=4, num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=32,
            hidden_activation="gelu_pytorch_tanh", max_position_embeddings=4096, rms_norm_eps=1e-6,
            sliding_window=8, sliding_window_pattern=6,
            final_logit_softcapping=None, attn_logit_softcapping=None,
            pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=True,
            rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                             "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}},
        )
    cfg._attn_implementation = "eager"
    return cfg


def new_model(arch):
    from transformers import Gemma4ForCausalLM, Gemma3ForCausalLM
    torch.manual_seed(0)
    cls = Gemma4ForCausalLM if arch == "gemma4" else Gemma3ForCausalLM
    return cls(make_config(arch)).eval().float()


def dequant_state_dict(arch, model, path):
    """quant_matrix.py's hf_logits_from_gguf mapping: gguf-py name map, dequantize, Gemma 3 norms stored as 1+w."""
    import gguf
    from gguf import GGUFReader, quants
    sd = model.state_dict()
    tmap = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.upper()), model.config.num_hidden_layers)
    tens = {t.name: t for t in GGUFReader(path).tensors}
    new_sd, hf2gguf = {}, {}
    for k in sd:
        kk = k + ".weight" if k.endswith("layer_scalar") else k
        g = tmap.get_name(kk, try_suffixes=(".weight", ".bias"))
        if g is None or g not in tens:
            continue
        t = tens[g]
        w = quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = torch.from_numpy(w.reshape(sd[k].shape).copy())
        if arch == "gemma3" and k.endswith("norm.weight"):
            w = w - 1.0
        new_sd[k] = w
        hf2gguf[k] = g
    if "lm_head.weight" in sd and "lm_head.weight" not in new_sd:
        new_sd["lm_head.weight"] = new_sd["model.embed_tokens.weight"]
    missing = [k for k in sd if k not in new_sd]
    return new_sd, missing, hf2gguf


def base_model(arch, sd):
    m = new_model(arch)
    m.load_state_dict(sd, strict=False)
    return m.eval()


@torch.no_grad()
def logits_of(model, ids):
    return model(torch.tensor([ids])).logits[0].float().numpy().copy()
