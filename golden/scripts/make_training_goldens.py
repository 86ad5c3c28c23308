#!/usr/bin/env python3
"""LoRA training goldens for the tiny Gemma 4 / Gemma 3 fixtures: loss, every LoRA gradient of one batch, and the
adapter after 3 torch.optim.AdamW steps, by HF transformers + peft + torch (autograd), in float64.

Writes golden/training/ (see its README.md). Nothing random is drawn (the adapter is golden/lora's adapter A,
lora_dropout 0, eval mode); a rerun reproduces the safetensors files bit for bit and the json files except their
`runtime_s` (CPU, 1 thread, same versions).

Exact commands (CPU, about 15 s on 2 cores, plus the one-off venv install; the venv and the llama.cpp sdist are
the ones of make_lora_goldens.py):

    python3 -m venv /work/lora-venv
    /work/lora-venv/bin/pip install numpy torch==2.15.0 transformers==5.23.0 peft==0.21.2 safetensors gguf \
        sentencepiece protobuf accelerate
    mkdir -p /work/lora-work/dl
    # sdist of llama-cpp-python 0.3.36 (sha256 832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e),
    # for its vendored gguf-py 0.19.0 = the one that made the fixtures. `pip download --no-deps --no-binary :all:
    # llama-cpp-python==0.3.36 -d /work/lora-work/dl` works but builds cmake while preparing metadata (interrupt it
    # once the .tar.gz is there); or take the file's URL from https://pypi.org/simple/llama-cpp-python/ and fetch it.
    tar xzf /work/lora-work/dl/llama_cpp_python-0.3.36.tar.gz -C /work/lora-work
    cd <repo root>
    /work/lora-venv/bin/python golden/scripts/make_training_goldens.py \
        --llama-cpp /work/lora-work/llama_cpp_python-0.3.36/vendor/llama.cpp

What it does, per arch in {gemma4, gemma3} and base in {f32, Q4_K_M} (case tiny-<arch>-<base>):
  1. base = the tiny HF model with the fixture GGUF's weights dequantized by gguf-py (tiny_hf.py, shared with
     make_lora_goldens.py); its float32 logits on the fixture's `ids` are checked against
     <fixture>.hf_dequant_logits.npy (<= 2e-5).
  2. the same base in float64: built and run under Float64Only (below), so that HF's float32 islands (RMSNorm,
     attention softmax, RoPE cos/sin and inv_freq) are float64 too; `model.double()` alone leaves them float32.
     PeftModel.from_pretrained(base, golden/lora/tiny-<arch>-lora-a, is_trainable=True), then .double(), eval mode.
  3. batch: input = the 33 ids; position i (0..31) predicts ids[i+1]; positions 0..3 are ignored (prompt mask),
     28 targets. loss = mean over them of -log_softmax(logits[0, :32] in float64)[i, target_i], computed here from
     model(input_ids).logits (HF's labels argument is not used).
  4. grads of the first loss (backward) -> <case>.grads.safetensors; 3 steps of torch.optim.AdamW(lr 1e-3,
     betas (0.9, 0.999), eps 1e-8, weight_decay 0.01, foreach=False), the same batch each step, a fresh forward each
     step -> losses, <case>.after3.safetensors. Keys = the adapter file's keys; float32.
  5. checks: central finite differences of the float64 loss along two directions vs the gradient; the same
     training in plain float32 HF and in `model.double()`-only HF, compared with the golden (the agreement an f32
     engine can expect); the three losses decrease; every gradient is nonzero; gemma4: the gradients again with the
     KV-shared layers' borrowed K/V detached (how much of each gradient comes through KV sharing).
"""
import argparse, collections, hashlib, json, os, sys, time, warnings
import numpy as np
import torch
from torch.overrides import TorchFunctionMode

ap = argparse.ArgumentParser()
ap.add_argument("--llama-cpp", required=True, help="vendor/llama.cpp folder of the llama-cpp-python 0.3.36 sdist")
ap.add_argument("--fixtures", default="golden/fixtures")
ap.add_argument("--lora", default="golden/lora")
ap.add_argument("--out", default="golden/training")
ap.add_argument("--arch", default="gemma4,gemma3")
ap.add_argument("--bases", default="f32,Q4_K_M")
args = ap.parse_args()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_hf
gguf = tiny_hf.use_gguf_py(args.llama_cpp)       # the converter's own gguf-py (0.19.0), not the pip one
assert os.path.abspath(gguf.__file__).startswith(os.path.abspath(args.llama_cpp)), gguf.__file__
import transformers, peft, safetensors
from safetensors.torch import load_file, save_file
from peft import PeftModel

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=FutureWarning)   # peft on transformers 5: is_gradient_checkpointing
N_POS, N_PROMPT = 32, 4          # 32 predicting positions; the first 4 targets are ignored
STEPS = 3
OPT = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False, maximize=False,
           foreach=False, fused=False, capturable=False, differentiable=False)
FD_H = 1e-4                      # central-difference step along unit directions (global L2 over all LoRA params)


class Float64Only(TorchFunctionMode):
    """Every torch call made under it computes in float64: a float32 dtype argument (.to(torch.float32),
    softmax(dtype=torch.float32), arange(dtype=torch.float)) becomes float64 and Tensor.float() becomes .double().
    Counts any floating result that is not float64 (must stay 0)."""

    def __init__(self):
        super().__init__()
        self.low = collections.Counter()
        self.upcast = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if func is torch.Tensor.float:
            func = torch.Tensor.double
            self.upcast["Tensor.float"] += 1
        if any(a is torch.float32 for a in args) or any(v is torch.float32 for v in kwargs.values()):
            self.upcast[name + "(float32)"] += 1
        args = tuple(torch.float64 if a is torch.float32 else a for a in args)
        kwargs = {k: (torch.float64 if v is torch.float32 else v) for k, v in kwargs.items()}
        out = func(*args, **kwargs)
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64:
                self.low[name] += 1
        return out


class f64_env:
    """Default dtype float64 + Float64Only, for building and running the float64 model."""

    def __init__(self, mode):
        self.mode = mode

    def __enter__(self):
        self.prev = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        self.mode.__enter__()

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)
        torch.set_default_dtype(self.prev)


def saved_key(param_name):
    # peft parameter name -> adapter_model.safetensors key (peft drops the adapter name "default")
    assert ".default." in param_name, param_name
    return param_name.replace(".default.", ".")


def peft_model(arch, sd, adir, variant):
    """variant: 'f32' (HF as is), 'double' (model.double() only), 'f64' (built and run under Float64Only)."""
    if variant == "f64":
        mode = Float64Only()
        with f64_env(mode):      # built under the mode: RoPE inv_freq, embed scale etc. computed in float64
            base = tiny_hf.base_model(arch, sd).double()
        # not under the mode: safetensors reinterprets float32 bytes; the LoRA tensors are then cast to float64
        pm = PeftModel.from_pretrained(base, adir, is_trainable=True).double()
    else:
        mode = None
        pm = PeftModel.from_pretrained(tiny_hf.base_model(arch, sd), adir, is_trainable=True)
        if variant == "double":
            pm = pm.double()
    pm.eval()
    lora = {saved_key(n): p for n, p in pm.named_parameters() if ".lora_A." in n or ".lora_B." in n}
    trainable = {n for n, p in pm.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in pm.named_parameters() if ".lora_A." in n or ".lora_B." in n}, \
        sorted(trainable)[:5]
    want = torch.float32 if variant == "f32" else torch.float64
    assert all(p.dtype == want for p in pm.parameters()), variant
    return pm, lora, mode


def run_ctx(mode):
    return f64_env(mode) if mode is not None else torch.enable_grad()


def loss_fn(pm, mode, x, tgt):
    with run_ctx(mode):
        logits = pm(input_ids=x, use_cache=False).logits[0, :N_POS]
        logp = torch.log_softmax(logits.double(), dim=-1)
        m = tgt >= 0
        return -logp[torch.nonzero(m)[:, 0], tgt[m]].mean()


def train(pm, lora, mode, x, tgt, keys):
    """Step-0 gradients, the loss before each step, the loss after the last, and the final LoRA tensors."""
    params = [lora[k] for k in keys]
    opt = torch.optim.AdamW(params, **OPT)
    losses, grads = [], None
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(pm, mode, x, tgt)
        losses.append(loss.item())
        loss.backward()
        if step == 0:
            grads = {k: (None if lora[k].grad is None else lora[k].grad.detach().clone()) for k in keys}
        opt.step()
    with torch.no_grad():
        loss_after = loss_fn(pm, mode, x, tgt).item()
    return losses, loss_after, grads, {k: lora[k].detach().clone() for k in keys}


def fd_check(pm, lora, mode, x, tgt, keys, grads, direction, seed):
    """Central difference of the loss along a unit direction vs <grad, direction>."""
    if direction == "grad":
        v = {k: (grads[k] if grads[k] is not None else torch.zeros_like(lora[k])) for k in keys}
    else:
        g = torch.Generator().manual_seed(seed)
        v = {k: torch.randn(lora[k].shape, generator=g, dtype=torch.float64).to(lora[k].dtype) for k in keys}
    nv = torch.sqrt(sum((t.double() ** 2).sum() for t in v.values()))
    v = {k: t / nv for k, t in v.items()}
    exact = float(sum((grads[k].double() * v[k].double()).sum() for k in keys if grads[k] is not None))
    orig = {k: lora[k].detach().clone() for k in keys}
    vals = []
    with torch.no_grad():
        for s in (+1, -1):
            for k in keys:
                lora[k].copy_(orig[k] + s * FD_H * v[k])
            vals.append(loss_fn(pm, mode, x, tgt).item())
        for k in keys:
            lora[k].copy_(orig[k])
    fd = (vals[0] - vals[1]) / (2 * FD_H)
    return dict(direction=direction if direction == "grad" else f"randn seed {seed}", h=FD_H, directional=exact,
                finite_difference=fd, rel_err=abs(fd - exact) / abs(exact))


def masked_max(ref, other, grads, keys, thr):
    """max |other - ref| over the elements whose step-0 |grad| >= thr (Adam's first step is g / (|g| + eps):
    elements with |g| near eps move by an amount that depends on g's last digits)."""
    d = torch.cat([(other[k].double() - ref[k].double()).flatten() for k in keys if grads[k] is not None]).abs()
    g = torch.cat([grads[k].double().flatten() for k in keys if grads[k] is not None]).abs()
    return dict(max_abs_diff=float(d[g >= thr].max()), n_elements_left_out=int((g < thr).sum()))


def kv_share_part(arch, sd, adir, x, tgt, keys, grads):
    """Gemma 4: how much of each step-0 gradient comes through the KV-shared layers' use of the K/V of the layers
    they share from: the gradients again with those K/V detached inside the shared layers' attention (float64).
    Returns max |grad - grad_detached| / max |grad| for every key where it is not 0."""
    pm, lora, mode = peft_model(arch, sd, adir, "f64")
    layers = pm.base_model.model.model.layers
    shared = [i for i, l in enumerate(layers) if l.self_attn.is_kv_shared_layer]
    for i in shared:
        att = layers[i].self_attn

        def fwd(*a, _orig=att.forward, _lt=att.layer_type, **kw):
            k, v = kw["shared_kv_states"][_lt]
            kw["shared_kv_states"][_lt] = (k.detach(), v.detach())
            return _orig(*a, **kw)
        att.forward = fwd
    loss_fn(pm, mode, x, tgt).backward()
    out = {}
    for k in keys:
        if grads[k] is None:
            continue
        d = float((grads[k] - lora[k].grad).abs().max()) / float(grads[k].abs().max())
        if d > 0:
            out[k] = d
    return dict(kv_shared_layers=shared, rel_change_by_key=out)


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def to_f32(d, keys, like):
    return {k: (d[k] if d[k] is not None else torch.zeros_like(like[k])).detach().float().contiguous() for k in keys}


def compare(ref, other, keys):
    """max |other - ref| and max |other - ref| / max |ref| over all tensors."""
    da = max(float((other[k].double() - ref[k].double()).abs().max()) for k in keys)
    ma = max(float(ref[k].double().abs().max()) for k in keys)
    return dict(max_abs_diff=da, max_abs_diff_over_max_abs=da / ma)


versions = dict(python=sys.version.split()[0], torch=torch.__version__, transformers=transformers.__version__,
                peft=peft.__version__, safetensors=safetensors.__version__, numpy=np.__version__,
                gguf_py="0.19.0 (llama.cpp 0c1e57098, llama-cpp-python 0.3.36 sdist vendor/llama.cpp/gguf-py)",
                torch_wheel="PyPI torch==2.15.0 (the CUDA-enabled wheel; run on CPU)")
os.makedirs(args.out, exist_ok=True)
for arch in args.arch.split(","):
    adir = os.path.join(args.lora, f"tiny-{arch}-lora-a")
    acfg = json.load(open(os.path.join(adir, "adapter_config.json")))
    assert acfg["lora_dropout"] == 0.0 and not acfg["use_rslora"] and not acfg["use_dora"], acfg
    init = load_file(os.path.join(adir, "adapter_model.safetensors"))
    keys = list(init.keys())
    for q in args.bases.split(","):
        t0 = time.time()
        case = f"tiny-{arch}-{q}"
        fx = os.path.join(args.fixtures, case)
        ids = json.load(open(fx + ".golden.json"))["ids"]
        assert len(ids) == N_POS + 1, len(ids)
        targets = [-1] * N_PROMPT + ids[N_PROMPT + 1:]
        assert len(targets) == N_POS
        x, tgt = torch.tensor([ids]), torch.tensor(targets)

        sd, missing, _ = tiny_hf.dequant_state_dict(arch, tiny_hf.new_model(arch), fx + ".gguf")
        assert not missing, missing
        ref = np.load(fx + ".hf_dequant_logits.npy")
        base32 = tiny_hf.base_model(arch, sd)
        d32 = float(np.abs(tiny_hf.logits_of(base32, ids) - ref).max())
        assert d32 <= 2e-5, d32
        mode = Float64Only()
        with f64_env(mode):
            base64 = tiny_hf.base_model(arch, sd).double()
            mode.upcast.clear()
            with torch.no_grad():
                lg64 = base64(torch.tensor([ids])).logits[0]
        assert sum(mode.low.values()) == 0, mode.low
        upcasts = dict(sorted(mode.upcast.items()))
        d64 = float(np.abs(lg64.numpy() - ref).max())
        del base32, base64

        # the golden: float64 throughout
        pm, lora, mode = peft_model(arch, sd, adir, "f64")
        assert sorted(lora) == sorted(keys), (sorted(set(lora) ^ set(keys)))[:6]
        for k in keys:
            assert torch.equal(lora[k].detach(), init[k].double()), k
        mode.low.clear()
        losses, loss_after, grads, after = train(pm, lora, mode, x, tgt, keys)
        assert sum(mode.low.values()) == 0, mode.low
        no_grad = [k for k in keys if grads[k] is None]
        zero_grad = [k for k in keys if grads[k] is not None and float(grads[k].abs().max()) == 0.0]
        assert not zero_grad, zero_grad
        assert all(np.isfinite(losses)) and losses[0] > losses[1] > losses[2] > loss_after, losses
        grad_norm = float(torch.sqrt(sum((g ** 2).sum() for g in grads.values() if g is not None)))
        max_abs = {k: (0.0 if grads[k] is None else float(grads[k].abs().max())) for k in keys}
        min_abs_el = min(float(grads[k].abs().min()) for k in keys if grads[k] is not None)
        # finite differences at the init adapter (fresh model: `train` moved this one)
        pm_fd, lora_fd, mode_fd = peft_model(arch, sd, adir, "f64")
        with f64_env(mode_fd), torch.no_grad():
            max_abs_logit = float(pm_fd(input_ids=x, use_cache=False).logits[0, :N_POS].abs().max())
        fd = [fd_check(pm_fd, lora_fd, mode_fd, x, tgt, keys, grads, "grad", 0),
              fd_check(pm_fd, lora_fd, mode_fd, x, tgt, keys, grads, "randn", 11)]
        assert all(f["rel_err"] < 1e-6 for f in fd), fd
        del pm_fd

        kvs = kv_share_part(arch, sd, adir, x, tgt, keys, grads) if arch == "gemma4" else None
        g32, a32 = to_f32(grads, keys, init), to_f32(after, keys, init)
        gpath, apath = os.path.join(args.out, f"{case}.grads.safetensors"), os.path.join(args.out, f"{case}.after3.safetensors")
        save_file(g32, gpath, metadata={"format": "pt"})
        save_file(a32, apath, metadata={"format": "pt"})

        # the same training in plain float32 HF and in model.double()-only HF, against the golden
        others = {}
        for variant in ["f32", "double"]:
            pmv, lorav, _ = peft_model(arch, sd, adir, variant)
            lv, lav, gv, av = train(pmv, lorav, None, x, tgt, keys)
            others[variant] = dict(
                losses=lv, max_abs_loss_diff=max(abs(a - b) for a, b in zip(lv + [lav], losses + [loss_after])),
                grads=compare({k: grads[k] for k in keys if grads[k] is not None},
                              {k: gv[k] for k in keys if grads[k] is not None}, [k for k in keys if grads[k] is not None]),
                after3=compare(after, av, keys),
                after3_minus_init_rel=compare({k: after[k] - init[k].double() for k in keys},
                                              {k: av[k].double() - init[k].double() for k in keys}, keys),
                after3_where_abs_grad0_ge={str(t): masked_max(after, av, grads, keys, t) for t in (1e-7, 1e-6)})
            del pmv
        moved = compare({k: init[k].double() for k in keys}, after, keys)["max_abs_diff"]

        rec = dict(
            case=case, fixture=f"golden/fixtures/{case}.gguf", init_adapter=f"golden/lora/tiny-{arch}-lora-a",
            adapter=dict(r=acfg["r"], lora_alpha=acfg["lora_alpha"], scale=acfg["lora_alpha"] / acfg["r"],
                         lora_dropout=acfg["lora_dropout"], use_rslora=acfg["use_rslora"],
                         target_modules=acfg["target_modules"], n_modules=len(keys) // 2, n_keys=len(keys)),
            ids=ids, targets=targets, n_trained_targets=sum(t >= 0 for t in targets),
            loss_definition="mean over i with targets[i] >= 0 of -log_softmax(logits[0, :32], float64)[i, targets[i]]; "
                            "logits = model(input_ids=ids[None]).logits (HF: final softcap included for gemma4)",
            dtype="float64",
            dtype_note="model, LoRA params, activations and gradients all float64: built and run under a torch "
                       "function mode that turns every float32 cast into float64 (HF's RMSNorm, attention softmax "
                       "and RoPE compute in float32 even after model.double()); 0 non-float64 results counted. "
                       "Files are stored float32.",
            mode="eval (no dropout: lora_dropout 0.0, attention_dropout 0.0); LoRA params requires_grad, base frozen",
            optimizer=dict(name="torch.optim.AdamW", **{k: (list(v) if isinstance(v, tuple) else v) for k, v in OPT.items()},
                           lr_schedule="constant", grad_clipping=None, params="every lora_A / lora_B tensor",
                           update="p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; "
                                  "p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps), t = 1, 2, 3"),
            steps=STEPS, losses=losses, loss_after_steps=loss_after,
            grad_norm=grad_norm, max_abs_grad=max_abs, min_abs_grad_element=min_abs_el,
            no_grad=no_grad, max_abs_change_after3=moved,
            files={os.path.basename(gpath): dict(what="d loss(step 0) / d param at the init adapter", sha256=sha256(gpath)),
                   os.path.basename(apath): dict(what="LoRA params after 3 AdamW steps", sha256=sha256(apath))},
            n_grad_elements=sum(v.numel() for v in init.values()),
            n_grad_elements_abs_lt={str(t): int(sum((grads[k].abs() < t).sum() for k in keys if grads[k] is not None))
                                    for t in (1e-7, 1e-6, 1e-5)},
            max_abs_logit_step0=max_abs_logit,
            checks=dict(base_f32_logits_vs_hf_dequant_logits=d32, base_f64_logits_vs_hf_dequant_logits=d64,
                        float32_casts_made_float64_per_base_forward=upcasts,
                        finite_differences=fd, plain_float32_hf=others["f32"], model_double_only_hf=others["double"],
                        **({} if kvs is None else dict(grads_without_kv_sharing_path=kvs))),
            versions=versions, seeds=dict(note="nothing random is drawn: new_model's torch.manual_seed(0) init is "
                                               "overwritten by the GGUF weights (no key missing); the adapter is read "
                                               "from disk; finite-difference random direction: torch.Generator seed 11"),
            torch_threads=1, attn_implementation="eager", device="cpu",
            runtime_s=round(time.time() - t0, 1))
        with open(os.path.join(args.out, f"{case}.train.json"), "w") as f:
            json.dump(rec, f, indent=1)
            f.write("\n")
        print(f"[{case}] losses {losses} -> {loss_after}  grad_norm {grad_norm:.6g}  no_grad {no_grad}  "
              f"base d32 {d32:.2e} d64 {d64:.2e}  fd {['%.1e' % f['rel_err'] for f in fd]}  "
              f"f32 run: loss {others['f32']['max_abs_loss_diff']:.1e} grads {others['f32']['grads']['max_abs_diff_over_max_abs']:.1e} "
              f"after3 {others['f32']['after3']['max_abs_diff']:.1e}  double-only: grads "
              f"{others['double']['grads']['max_abs_diff_over_max_abs']:.1e}  {rec['runtime_s']}s", flush=True)
