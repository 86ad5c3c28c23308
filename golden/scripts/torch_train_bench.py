"""LoRA training throughput of HF transformers + peft on a Gemma 4 with ferrogem's E2B shapes: the PyTorch side of
ci/train-compare.sh (issue 13: ferrogem's train tokens/s as a ratio of PyTorch's on the same GPU).

The model is Gemma4ForCausalLM (text only) with every hyperparameter of harness/src/cli/synth/presets.rs's E2b preset
(docs/gemma4.md §1.1), random weights from the model's own init, in bfloat16. The recipe is peft's standard one:
base weights bf16 and frozen, LoRA A/B in float32 (get_peft_model's autocast_adapter_dtype=True upcasts them),
the forward and backward under torch.autocast(bfloat16) (so the LoRA matmuls run in bf16 too, as with Trainer's
bf16=True), loss = token-mean cross entropy of the softcapped logits, global-norm clipping at --clip (ferrogem's
default 1), torch.optim.AdamW on the f32 LoRA parameters (f32 moments). Gradient checkpointing (non-reentrant) only
with --checkpointing; ferrogem always recomputes each layer from its saved input, so ci/train-compare.sh runs both.

A step trains --batch sequences of --seq-len rows: --seq-len + 1 random ids, the first --seq-len fed, each row
predicting the next id (exactly what ferrogem makes of a {"ids": [...]} line of --seq-len + 1 ids), a fresh batch
each step. --warmup-steps untimed steps first (cuBLAS/SDPA autotuning, allocator growth), then --steps steps between
torch.cuda.synchronize() calls. Prints one JSON line (also written to --json-out).

  python golden/scripts/torch_train_bench.py [--checkpointing] [--attn sdpa|eager] [--steps 20] ...
  python golden/scripts/torch_train_bench.py --tiny --steps 3 --warmup-steps 1 --seq-len 32   # CPU smoke test
  python golden/scripts/torch_train_bench.py --meta-check   # E2B on the meta device: shapes and parameter counts

--profile adds a torch.profiler pass over a few more steps and puts the top kernels (device time per step) in the JSON.
"""
import argparse, json, os, statistics, sys, time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# harness/src/cli/synth/presets.rs, Preset::new(Gemma4, E2b), and docs/gemma4.md §1.1.
E2B = dict(
    vocab=262_144, hidden=1536, n_layers=35, n_head=8, n_kv_head=1, head_dim_swa=256, head_dim_full=512,
    ffn=[6144] * 15 + [12288] * 20, full_every=5, shared_kv_layers=20, ple_dim=256, window=512, context=131_072,
    rope_base_full=1e6, rope_base_swa=1e4, partial_rotary_full=0.25, rms_eps=1e-6, final_softcap=30.0,
)


def e2b_layer_types(p=E2B):
    # presets.rs `pattern(35, 5)`: layer l is full when l % 5 == 4 (full = 4, 9, ..., 34).
    return ["full_attention" if l % p["full_every"] == p["full_every"] - 1 else "sliding_attention"
            for l in range(p["n_layers"])]


def e2b_config():
    from transformers import Gemma4TextConfig
    p = E2B
    ffn = p["ffn"]
    base_ffn = ffn[0]
    # HF has one intermediate_size; use_double_wide_mlp doubles it on exactly the KV-shared layers (Gemma4TextMLP).
    assert all(f == base_ffn for f in ffn[: p["n_layers"] - p["shared_kv_layers"]])
    assert all(f == 2 * base_ffn for f in ffn[p["n_layers"] - p["shared_kv_layers"]:])
    cfg = Gemma4TextConfig(
        vocab_size=p["vocab"],
        hidden_size=p["hidden"],
        intermediate_size=base_ffn,
        use_double_wide_mlp=True,
        num_hidden_layers=p["n_layers"],
        num_attention_heads=p["n_head"],
        num_key_value_heads=p["n_kv_head"],
        head_dim=p["head_dim_swa"],
        global_head_dim=p["head_dim_full"],          # popped by __post_init__ into per_layer_config (full layers)
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=p["context"],
        rms_norm_eps=p["rms_eps"],
        sliding_window=p["window"],
        layer_types=e2b_layer_types(),
        final_logit_softcapping=p["final_softcap"],
        tie_word_embeddings=True,
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": p["rope_base_swa"]},
            "full_attention": {"rope_type": "proportional", "partial_rotary_factor": p["partial_rotary_full"],
                               "rope_theta": p["rope_base_full"]},
        },
        vocab_size_per_layer_input=p["vocab"],
        hidden_size_per_layer_input=p["ple_dim"],
        num_kv_shared_layers=p["shared_kv_layers"],
        attention_k_eq_v=False,
        enable_moe_block=False,
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    return cfg


def tiny_config():
    sys.path.insert(0, HERE)
    from tiny_hf import make_config  # the tiny Gemma 4 of make_tiny_gemma4.py (variant e2b, hidden 128)
    return make_config("gemma4")


def check_shapes(model, cfg, p=E2B):
    """The built HF model has the preset's per-layer shapes (raises otherwise)."""
    layers = model.model.layers
    assert len(layers) == p["n_layers"]
    first_shared = p["n_layers"] - p["shared_kv_layers"]
    for l, layer in enumerate(layers):
        hd = p["head_dim_full"] if cfg.layer_types[l] == "full_attention" else p["head_dim_swa"]
        a = layer.self_attn
        assert tuple(a.q_proj.weight.shape) == (p["n_head"] * hd, p["hidden"]), (l, a.q_proj.weight.shape)
        assert tuple(a.o_proj.weight.shape) == (p["hidden"], p["n_head"] * hd)
        if l < first_shared:
            assert tuple(a.k_proj.weight.shape) == (p["n_kv_head"] * hd, p["hidden"])
            assert tuple(a.v_proj.weight.shape) == (p["n_kv_head"] * hd, p["hidden"])
        else:
            assert not hasattr(a, "k_proj"), l  # HF builds no K/V on KV-shared layers
        assert a.sliding_window == (p["window"] if cfg.layer_types[l] == "sliding_attention" else None)
        assert tuple(layer.mlp.gate_proj.weight.shape) == (p["ffn"][l], p["hidden"]), (l, layer.mlp.gate_proj.weight.shape)
        assert tuple(layer.mlp.down_proj.weight.shape) == (p["hidden"], p["ffn"][l])
        assert tuple(layer.per_layer_input_gate.weight.shape) == (p["ple_dim"], p["hidden"])
    assert tuple(model.model.embed_tokens.weight.shape) == (p["vocab"], p["hidden"])
    assert tuple(model.model.embed_tokens_per_layer.weight.shape) == (p["vocab"], p["n_layers"] * p["ple_dim"])
    assert model.lm_head.weight is model.model.embed_tokens.weight or model.config.tie_word_embeddings


def ferrogem_counts(rank, p=E2B):
    """Element counts of the tensors `ferrogem synth --preset e2b` writes (harness/src/cli/synth/tensors.rs `plan`),
    and of the fresh rank-r adapter `ferrogem finetune` trains (train/init.rs: no k/v updates on KV-shared layers)."""
    h, v, ple, L = p["hidden"], p["vocab"], p["ple_dim"], p["n_layers"]
    n = {"token_embd": h * v, "output_norm": h, "per_layer_token_embd": L * ple * v,
         "per_layer_model_proj": h * L * ple, "per_layer_proj_norm": ple, "rope_freqs": p["head_dim_full"] // 2}
    layers = unused_kv = 0
    lora = 0
    first_shared = L - p["shared_kv_layers"]
    for l in range(L):
        hd = p["head_dim_full"] if l % p["full_every"] == p["full_every"] - 1 else p["head_dim_swa"]
        q, kv, f = p["n_head"] * hd, p["n_kv_head"] * hd, p["ffn"][l]
        blk = h + h * q + 2 * h * kv + q * h + 2 * hd + h + h + 3 * h * f + h + 1 + h * ple + ple * h + h
        layers += blk
        shared = l >= first_shared
        if shared:
            unused_kv += 2 * h * kv + hd  # attn_k, attn_v, attn_k_norm: in the file, never read
        for (i, o, kv_proj) in [(h, q, False), (h, kv, True), (h, kv, True), (q, h, False), (h, f, False),
                                (h, f, False), (f, h, False)]:
            if kv_proj and shared:
                continue
            lora += rank * (i + o)
    n["blocks"] = layers
    total = sum(n.values())
    return {"gguf_total": total, "gguf_unused_shared_kv": unused_kv, "ple_table": n["per_layer_token_embd"],
            "lora_params": lora}


def meta_check(args):
    from transformers import Gemma4ForCausalLM
    from peft import LoraConfig, get_peft_model
    cfg = e2b_config()
    cfg._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = Gemma4ForCausalLM(cfg)
    check_shapes(model, cfg)
    hf_total = sum(t.numel() for t in model.parameters())  # tied lm_head counted once
    ple = model.model.embed_tokens_per_layer.weight.numel()
    buffers = {n: b.numel() for n, b in model.named_buffers() if "layer_scalar" in n}
    peft_model = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=args.alpha, target_modules=TARGETS,
                                                  lora_dropout=0.0, bias="none", task_type="CAUSAL_LM"))
    lora = sum(t.numel() for t in peft_model.parameters() if t.requires_grad)
    n_lora_modules = sum(1 for n, _ in peft_model.named_modules() if n.endswith("lora_A.default"))
    fg = ferrogem_counts(args.rank)
    # HF keeps the per-layer scale as a buffer (layer_scalar), and has no rope_freqs; ferrogem's file also keeps
    # the unused K/V (and K norm) of the KV-shared layers.
    fg_comparable = fg["gguf_total"] - fg["gguf_unused_shared_kv"] - len(buffers) - E2B["head_dim_full"] // 2
    out = {
        "hf_params": hf_total, "hf_params_without_ple_table": hf_total - ple, "ple_table": ple,
        "ferrogem_gguf_params": fg["gguf_total"], "ferrogem_gguf_unused_shared_kv": fg["gguf_unused_shared_kv"],
        "ferrogem_comparable": fg_comparable, "match": fg_comparable == hf_total,
        "hf_lora_params": lora, "ferrogem_lora_params": fg["lora_params"], "lora_match": lora == fg["lora_params"],
        "lora_modules": n_lora_modules, "layer_types": "".join("f" if t == "full_attention" else "s" for t in cfg.layer_types),
        "kv_sharing_modes": cfg.kv_sharing_modes,
    }
    print(json.dumps(out))
    return 0 if out["match"] and out["lora_match"] else 1


def build(args, device):
    from transformers import Gemma4ForCausalLM
    from peft import LoraConfig, get_peft_model
    cfg = tiny_config() if args.tiny else e2b_config()
    cfg._attn_implementation = args.attn
    cfg.use_cache = False
    torch.manual_seed(args.seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # init straight into bf16: no f32 copy of E2B's 4.6 G parameters
    try:
        with torch.device(device):
            model = Gemma4ForCausalLM(cfg)
    finally:
        torch.set_default_dtype(default)
    model.to(torch.bfloat16)
    if not args.tiny:
        check_shapes(model, cfg)
    if args.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lcfg = LoraConfig(r=args.rank, lora_alpha=args.alpha, target_modules=TARGETS, lora_dropout=0.0, bias="none",
                      task_type="CAUSAL_LM")
    model = get_peft_model(model, lcfg, autocast_adapter_dtype=True)  # LoRA A/B in f32 over the bf16 base
    model.train()
    return model, cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="the tiny Gemma 4 fixture config instead of E2B")
    ap.add_argument("--meta-check", action="store_true", help="build E2B on the meta device, check shapes and counts")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--clip", type=float, default=1.0, help="global gradient-norm clip (0: none)")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup-steps", type=int, default=3)
    ap.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (non-reentrant)")
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="also profile --profile-steps steps: top kernels")
    ap.add_argument("--profile-steps", type=int, default=3)
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    if args.meta_check:
        return meta_check(args)

    import peft, transformers
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    t_build = time.perf_counter()
    model, cfg = build(args, device)
    build_s = time.perf_counter() - t_build
    params = [p for p in model.parameters() if p.requires_grad]
    lora_dtypes = sorted({str(p.dtype).replace("torch.", "") for p in params})
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    n_steps = args.warmup_steps + args.steps + (args.profile_steps if args.profile else 0)
    data = torch.randint(0, cfg.vocab_size, (n_steps, args.batch, args.seq_len + 1), generator=gen).to(device)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def step(i):
        ids = data[i]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            out = model(input_ids=ids[:, :-1], labels=ids[:, :-1], shift_labels=ids[:, 1:], use_cache=False)
        out.loss.backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(params, args.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss.detach()

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    losses = []
    for i in range(args.warmup_steps):
        losses.append(step(i))
    sync()
    step_times = []
    t0 = time.perf_counter()
    for i in range(args.warmup_steps, args.warmup_steps + args.steps):
        if args.steps <= 50:  # per-step times cost a sync each; fine for a short bench
            s0 = time.perf_counter()
            losses.append(step(i))
            sync()
            step_times.append(time.perf_counter() - s0)
        else:
            losses.append(step(i))
    sync()
    elapsed = time.perf_counter() - t0
    tokens = args.steps * args.batch * args.seq_len
    result = {
        "tokens_per_s": tokens / elapsed,
        "step_ms": 1e3 * elapsed / args.steps,
        "step_ms_median": 1e3 * statistics.median(step_times) if step_times else None,
        "peak_mem_bytes": torch.cuda.max_memory_allocated(device) if cuda else None,
        "peak_reserved_bytes": torch.cuda.max_memory_reserved(device) if cuda else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "dtype": "bfloat16 base, autocast bfloat16, LoRA " + "/".join(lora_dtypes),
        "model": "tiny" if args.tiny else "e2b",
        "seq_len": args.seq_len,
        "batch": args.batch,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "rank": args.rank,
        "alpha": args.alpha,
        "targets": TARGETS,
        "lora_params": sum(p.numel() for p in params),
        "checkpointing": args.checkpointing,
        "attn": args.attn,
        "clip": args.clip,
        "first_loss": float(losses[0]) if losses else None,
        "last_loss": float(losses[-1]) if losses else None,
        "build_s": build_s,
    }
    if args.profile:
        result["top_kernels"] = profile(step, range(n_steps - args.profile_steps, n_steps), sync, cuda)
    line = json.dumps(result)
    print(line)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(line + "\n")
    return 0


def profile(step, steps, sync, cuda, top=20):
    """Device time per step of the most expensive kernels (CUDA) or ops (CPU) over `steps`."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync()
    with torch_profile(activities=activities) as prof:
        for i in steps:
            step(i)
        sync()
    n = len(steps)
    rows = []
    for evt in prof.key_averages():
        if cuda:
            if evt.device_type != torch.autograd.DeviceType.CUDA:
                continue
            us = getattr(evt, "self_device_time_total", None)
            if us is None:
                us = evt.self_cuda_time_total
        else:
            us = evt.self_cpu_time_total
        if us > 0:
            rows.append((evt.key, us / n, evt.count // n))
    total = sum(us for _, us, _ in rows)
    rows.sort(key=lambda r: -r[1])
    return [{"kernel": k[:160], "us_per_step": us, "calls_per_step": c, "pct": 100 * us / total if total else 0}
            for k, us, c in rows[:top]] + [{"kernel": "(total)", "us_per_step": total, "calls_per_step": None,
                                            "pct": 100.0}]


if __name__ == "__main__":
    sys.exit(main())
