#!/usr/bin/env python3
"""LoRA goldens for the tiny Gemma 4 / Gemma 3 fixtures: HF transformers + peft logits and llama.cpp LoRA GGUFs.

Writes golden/lora/ (see its README.md). Everything is seeded; a rerun reproduces the files bit for bit on the
same versions (CPU, float32, eager attention, 1 thread).

Exact commands (CPU, about 2 minutes on 2 cores, plus the one-off venv install):

    python3 -m venv /work/lora-venv
    /work/lora-venv/bin/pip install numpy torch==2.15.0 transformers==5.23.0 peft==0.21.2 safetensors gguf \
        sentencepiece protobuf accelerate
    mkdir -p /work/lora-work/dl
    # sdist of llama-cpp-python 0.3.36 = llama.cpp commit 0c1e57098 under vendor/llama.cpp. pip download of an
    # sdist prepares its metadata, which builds cmake from source: interrupt it once the .tar.gz is in pip's
    # temporary folder, or fetch the same file from PyPI by another ordinary client.
    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /work/lora-work/dl
    tar xzf /work/lora-work/dl/llama_cpp_python-0.3.36.tar.gz -C /work/lora-work
    cd <repo root>
    /work/lora-venv/bin/python golden/scripts/make_lora_goldens.py \
        --llama-cpp /work/lora-work/llama_cpp_python-0.3.36/vendor/llama.cpp --work /work/lora-work

What it does, per arch in {gemma4, gemma3}:
  1. builds the tiny HF model with the fixtures' config (as make_tiny_gemma{4,3}.py, seed 0; code in tiny_hf.py,
     shared with make_training_goldens.py) and, per fixture GGUF,
     replaces its weights by the GGUF's weights dequantized by gguf-py (as quant_matrix.py's hf_logits_from_gguf);
     checks its logits on the fixture's `ids` against <fixture>.hf_dequant_logits.npy;
  2. makes adapters A and B with peft (fixed seeds, every lora_A / lora_B set to nonzero random values) and saves
     them with save_pretrained (float32 safetensors) to golden/lora/tiny-<arch>-lora-{a,b}/;
  3. logits: adapter A on every base; B, A+B and A at half scale on the f32 and Q4_K_M bases; each is also
     recomputed without peft by merging W + scale * B @ A into the base (scaling rule computed here from
     adapter_config.json) and the two must agree;
  4. converts both adapters with llama.cpp's convert_lora_to_gguf.py --outtype f32 (--base = the saved HF base
     dir, config only), reads the GGUFs back, checks lora_a/lora_b against the peft tensors, and computes the
     logits that llama.cpp's rule (scale = adapter.lora.alpha / rank, rank = lora_b.ne[0]) implies for them:
     `.lora-b.gguf-rule.hf_logits.npy` (differs from peft for adapter B: rslora / patterns are not in the GGUF);
  5. writes golden/lora/lora.golden.json and golden/lora/gguf_dump.txt (metadata + tensor names/shapes/types).
"""
import argparse, json, math, os, re, subprocess, sys, time
import numpy as np
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--llama-cpp", required=True, help="vendor/llama.cpp folder of the llama-cpp-python 0.3.36 sdist")
ap.add_argument("--work", default="/work/lora-work", help="scratch folder (HF base dirs for the converter)")
ap.add_argument("--fixtures", default="golden/fixtures")
ap.add_argument("--out", default="golden/lora")
ap.add_argument("--arch", default="gemma4,gemma3")
ap.add_argument("--trial", action="store_true", help="only measure adapter movement on the f32 base; write nothing")
args = ap.parse_args()

sys.path.insert(0, os.path.join(args.llama_cpp, "gguf-py"))   # the converter's own gguf-py (0.19.0)
import gguf
from gguf import GGUFReader, quants
import transformers, peft, safetensors
from safetensors.torch import load_file
from peft import LoraConfig, get_peft_model, PeftModel
from peft.tuners.lora import LoraLayer
from tiny_hf import make_config, new_model, dequant_state_dict, base_model, logits_of   # golden/scripts/tiny_hf.py

torch.set_num_threads(1)
QUANTS = ["f32", "Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"]
EXTRA_BASES = ["f32", "Q4_K_M"]
STD_A, STD_B = 0.02, 0.02        # lora_A / lora_B entries ~ N(0, std^2); chosen so max|dlogits| = O(0.1-1)
SEED_INIT, SEED_A, SEED_B = 1234, 1, 2
TARGETS_A = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def randomize_lora(pm, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in sorted(pm.named_parameters(), key=lambda kv: kv[0]):
            if ".lora_A." in n:
                p.copy_(torch.randn(p.shape, generator=g) * STD_A)
            elif ".lora_B." in n:
                p.copy_(torch.randn(p.shape, generator=g) * STD_B)


def lora_config(which, arch):
    if which == "a":
        return LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS_A, lora_dropout=0.0, bias="none")
    tm = ["q_proj", "o_proj", "up_proj", "down_proj"]
    if arch == "gemma4":
        tm += ["per_layer_input_gate", "per_layer_projection"]
    return LoraConfig(r=4, lora_alpha=8, use_rslora=True, target_modules=tm, layers_to_transform=[1, 3, 4],
                      rank_pattern={"o_proj": 2}, alpha_pattern={"down_proj": 4}, lora_dropout=0.0, bias="none")


def pattern_get(patterns, key, default):
    # same rule as peft.utils.other.get_pattern_key: key matches "(.*\.)?(pattern)$"
    for p, v in patterns.items():
        if re.match(rf"(.*\.)?({p})$", key):
            return v
    return default


def peft_scales(adir):
    """Per-module scale implied by adapter_config.json (computed here, not by peft)."""
    c = json.load(open(os.path.join(adir, "adapter_config.json")))
    sd = load_file(os.path.join(adir, "adapter_model.safetensors"))
    out = {}
    for k, A in sd.items():
        if not k.endswith(".lora_A.weight"):
            continue
        mod = k[len("base_model.model."):-len(".lora_A.weight")]
        r = pattern_get(c.get("rank_pattern") or {}, mod, c["r"])
        alpha = pattern_get(c.get("alpha_pattern") or {}, mod, c["lora_alpha"])
        assert A.shape[0] == r, (k, A.shape, r)
        s = alpha / math.sqrt(r) if c.get("use_rslora") else alpha / r
        out[mod] = dict(A=A, B=sd[k.replace("lora_A", "lora_B")], r=r, alpha=alpha, scale=s)
    return c, out


def merged_sd(base_sd, adapters):
    """adapters: list of (per-module dict from peft_scales, factor). W' = W + sum factor * scale * B @ A."""
    sd = {k: v.clone() for k, v in base_sd.items()}
    for mods, f in adapters:
        for mod, d in mods.items():
            sd[mod + ".weight"] = sd[mod + ".weight"] + (f * d["scale"]) * (d["B"].double() @ d["A"].double()).float()
    return sd


def load_peft(base_sd, arch, adapters):
    pm = None
    for name, adir in adapters:
        if pm is None:
            pm = PeftModel.from_pretrained(base_model(arch, base_sd), adir, adapter_name=name)
        else:
            pm.load_adapter(adir, adapter_name=name)
    pm.base_model.set_adapter([n for n, _ in adapters])
    return pm.eval()


def stats(lg, base):
    return dict(max_abs_vs_base=float(np.abs(lg - base).max()),
                argmax_agree_with_base=int((lg.argmax(-1) == base.argmax(-1)).sum()))


def read_gguf(path):
    r = GGUFReader(path)
    meta = {}
    for f in r.fields.values():
        if f.name.startswith("GGUF."):
            continue
        v = f.contents()
        meta[f.name] = v
    tens = [(t.name, [int(x) for x in t.shape], t.tensor_type.name,
             np.array(t.data, dtype=np.float32).reshape([int(x) for x in reversed(t.shape)])) for t in r.tensors]
    return meta, tens


results = {"versions": dict(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
                            safetensors=safetensors.__version__, numpy=np.__version__,
                            gguf_py=getattr(gguf, "__version__", "0.19.0 (llama.cpp vendor gguf-py)"),
                            llama_cpp="0c1e57098 (llama-cpp-python 0.3.36 sdist vendor/llama.cpp)"),
           "settings": dict(std_A=STD_A, std_B=STD_B, seed_peft_init=SEED_INIT, seed_A=SEED_A, seed_B=SEED_B,
                            dtype="float32", attn_implementation="eager", torch_threads=1),
           "sanity": {}, "adapters": {}, "gguf": {}, "logits": {}}
os.makedirs(args.out, exist_ok=True)
t_start = time.time()

for arch in args.arch.split(","):
    fx = lambda q: os.path.join(args.fixtures, f"tiny-{arch}-{q}")
    ids = json.load(open(fx("f32") + ".golden.json"))["ids"]
    base_sd, base_ref, hf2gguf_all = {}, {}, {}
    for q in QUANTS:
        m = new_model(arch)
        sd, missing, hf2gguf = dequant_state_dict(arch, m, fx(q) + ".gguf")
        base_sd[q] = sd
        hf2gguf_all.update(hf2gguf)
        lg = logits_of(base_model(arch, sd), ids)
        ref = np.load(fx(q) + ".hf_dequant_logits.npy")
        base_ref[q] = ref
        d = float(np.abs(lg - ref).max())
        results["sanity"][f"tiny-{arch}-{q}"] = dict(max_abs_vs_hf_dequant_logits=d, missing_keys=missing)
        print(f"[{arch} {q}] base vs hf_dequant_logits max abs {d:.3e}  missing {missing}", flush=True)
        assert d <= 2e-5, d

    # HF base dir for the converter (config.json is all it reads) = the f32 fixture's weights
    hf_base = os.path.join(args.work, f"hf-base-{arch}")
    if not args.trial:
        base_model(arch, base_sd["f32"]).save_pretrained(hf_base, safe_serialization=True)

    adirs = {}
    for which, seed in [("a", SEED_A), ("b", SEED_B)]:
        torch.manual_seed(SEED_INIT)
        pm = get_peft_model(base_model(arch, base_sd["f32"]), lora_config(which, arch))
        randomize_lora(pm, seed)
        adir = os.path.join(args.out if not args.trial else args.work, f"tiny-{arch}-lora-{which}")
        pm.save_pretrained(adir, safe_serialization=True)
        # peft keeps target_modules as a set: sort it so that the saved config is the same on every run
        cpath = os.path.join(adir, "adapter_config.json")
        c = json.load(open(cpath))
        c["target_modules"] = sorted(c["target_modules"])
        with open(cpath, "w") as f:
            json.dump(c, f, indent=2, sort_keys=True)
            f.write("\n")
        adirs[which] = adir
        targeted = sorted({n.rsplit(".lora_A", 1)[0].replace("base_model.model.", "")
                           for n, _ in pm.named_parameters() if ".lora_A." in n})
        lg = logits_of(pm.eval(), ids)
        print(f"[{arch}] adapter {which}: {len(targeted)} modules; f32 base movement {stats(lg, base_ref['f32'])}",
              flush=True)
        c, mods = peft_scales(adir)
        results["adapters"][f"tiny-{arch}-lora-{which}"] = dict(
            config={k: c.get(k) for k in ["r", "lora_alpha", "use_rslora", "target_modules", "layers_to_transform",
                                          "rank_pattern", "alpha_pattern", "lora_dropout", "bias"]},
            n_modules=len(targeted), modules={m: dict(r=d["r"], alpha=d["alpha"], scale=d["scale"],
                                                      A_shape=list(d["A"].shape), B_shape=list(d["B"].shape))
                                              for m, d in mods.items()})
    if args.trial:
        continue

    _, mods_a = peft_scales(adirs["a"])
    _, mods_b = peft_scales(adirs["b"])

    def emit(q, tag, adapters_desc, lg, lg_manual, extra=None):
        fn = f"tiny-{arch}-{q}.{tag}.hf_logits.npy"
        np.save(os.path.join(args.out, fn), lg.astype(np.float32))
        e = dict(base_fixture=f"golden/fixtures/tiny-{arch}-{q}.gguf", adapters=adapters_desc,
                 **stats(lg, base_ref[q]), max_abs_vs_manual_merge=float(np.abs(lg - lg_manual).max()))
        e.update(extra or {})
        results["logits"][fn] = e
        print(f"  {fn}: {e}", flush=True)
        assert e["max_abs_vs_manual_merge"] < 1e-4, e
        return e

    for q in QUANTS:
        pm = load_peft(base_sd[q], arch, [("a", adirs["a"])])
        lg_a = logits_of(pm, ids)
        lg_man = logits_of(base_model(arch, merged_sd(base_sd[q], [(mods_a, 1.0)])), ids)
        emit(q, "lora-a", [dict(adapter=f"tiny-{arch}-lora-a", scale=1.0)], lg_a, lg_man)
        if q not in EXTRA_BASES:
            continue
        # B alone
        pm_b = load_peft(base_sd[q], arch, [("b", adirs["b"])])
        lg_b = logits_of(pm_b, ids)
        lg_man = logits_of(base_model(arch, merged_sd(base_sd[q], [(mods_b, 1.0)])), ids)
        emit(q, "lora-b", [dict(adapter=f"tiny-{arch}-lora-b", scale=1.0)], lg_b, lg_man)
        # A and B both active
        pm_ab = load_peft(base_sd[q], arch, [("a", adirs["a"]), ("b", adirs["b"])])
        assert sorted(pm_ab.base_model.active_adapters) == ["a", "b"], pm_ab.base_model.active_adapters
        lg_ab = logits_of(pm_ab, ids)
        lg_man = logits_of(base_model(arch, merged_sd(base_sd[q], [(mods_a, 1.0), (mods_b, 1.0)])), ids)
        # layer-level check that the outputs add: one module targeted by both
        mod_name = "model.layers.1.self_attn.q_proj"
        layer = pm_ab.get_submodule("base_model.model." + mod_name)
        x = torch.randn(3, layer.in_features, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            y_ab = layer(x)
            y0 = layer.base_layer(x)
            da = layer.lora_B["a"](layer.lora_A["a"](x)) * layer.scaling["a"]
            db = layer.lora_B["b"](layer.lora_A["b"](x)) * layer.scaling["b"]
        layer_err = float((y_ab - (y0 + da + db)).abs().max())
        e = emit(q, "lora-ab", [dict(adapter=f"tiny-{arch}-lora-a", scale=1.0),
                                dict(adapter=f"tiny-{arch}-lora-b", scale=1.0)], lg_ab, lg_man,
                 dict(layer_sum_check=dict(module=mod_name, max_abs_err=layer_err,
                                           scaling_a=layer.scaling["a"], scaling_b=layer.scaling["b"]),
                      max_abs_vs_lora_a=float(np.abs(lg_ab - lg_a).max()),
                      max_abs_vs_lora_b=float(np.abs(lg_ab - lg_b).max())))
        assert layer_err < 1e-5 and e["max_abs_vs_lora_a"] > 1e-3 and e["max_abs_vs_lora_b"] > 1e-3
        # A at half scale
        pm_h = load_peft(base_sd[q], arch, [("a", adirs["a"])])
        n_scaled = 0
        for mod in pm_h.modules():
            if isinstance(mod, LoraLayer):
                mod.scale_layer(0.5)
                n_scaled += 1
        lg_h = logits_of(pm_h, ids)
        lg_man = logits_of(base_model(arch, merged_sd(base_sd[q], [(mods_a, 0.5)])), ids)
        e = emit(q, "lora-a-half", [dict(adapter=f"tiny-{arch}-lora-a", scale=0.5)], lg_h, lg_man,
                 dict(n_lora_layers_scaled=n_scaled, max_abs_vs_lora_a=float(np.abs(lg_h - lg_a).max())))
        assert e["max_abs_vs_lora_a"] > 1e-3 and e["max_abs_vs_base"] > 1e-3

    # llama.cpp converter. Adapter A also as Q8_0 (the converter quantizes A; B, whose rows of r = 8 are not a
    # whole 32-block, falls back to F16): ferrogem reads it and is checked against A's logits within its rounding.
    outq = os.path.join(args.out, f"tiny-{arch}-lora-a.q8_0.gguf")
    subprocess.run([sys.executable, os.path.join(args.llama_cpp, "convert_lora_to_gguf.py"), "--outtype", "q8_0",
                    "--base", hf_base, "--outfile", outq, adirs["a"]], check=True, capture_output=True)
    tmap = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.upper()), 6)
    gguf2hf = {v: k for k, v in hf2gguf_all.items()}
    for which in ["a", "b"]:
        outf = os.path.join(args.out, f"tiny-{arch}-lora-{which}.gguf")
        cmd = [sys.executable, os.path.join(args.llama_cpp, "convert_lora_to_gguf.py"), "--outtype", "f32",
               "--base", hf_base, "--outfile", outf, adirs[which]]
        p = subprocess.run(cmd, capture_output=True, text=True)
        log = (p.stdout + p.stderr)
        print(f"[{arch}] convert {which}: rc {p.returncode}\n" + "\n".join(log.splitlines()[-6:]), flush=True)
        key = f"tiny-{arch}-lora-{which}.gguf"
        if p.returncode != 0:
            results["gguf"][key] = dict(error=log[-3000:], command=" ".join(cmd))
            continue
        meta, tens = read_gguf(outf)
        mods = mods_a if which == "a" else mods_b
        # check tensors == peft tensors, and compute the llama.cpp rule: scale = alpha / rank, rank = lora_b.ne[0]
        alpha = float(meta["adapter.lora.alpha"])
        tdict = {n: a for n, _, _, a in tens}
        gg_mods, max_tensor_err = {}, 0.0
        for n, a in tdict.items():
            if not n.endswith(".lora_a"):
                continue
            base = n[:-len(".lora_a")]
            A, B = a, tdict[base + ".lora_b"]
            hf = gguf2hf[base]
            d = mods[hf[:-len(".weight")]]
            max_tensor_err = max(max_tensor_err, float(np.abs(A - d["A"].numpy()).max()),
                                 float(np.abs(B - d["B"].numpy()).max()))
            rank = B.shape[1]
            gg_mods[hf[:-len(".weight")]] = dict(A=torch.from_numpy(A.copy()), B=torch.from_numpy(B.copy()),
                                                  scale=alpha / rank, peft_scale=d["scale"])
        assert len(gg_mods) == len(mods), (len(gg_mods), len(mods))
        results["gguf"][key] = dict(
            command="python convert_lora_to_gguf.py --outtype f32 --base <hf base dir> --outfile " + key +
                    f" golden/lora/tiny-{arch}-lora-{which}",
            metadata={k: (v if not isinstance(v, (list, tuple)) or len(v) < 20 else f"[{len(v)} items]")
                      for k, v in meta.items()},
            n_tensors=len(tens), max_abs_diff_vs_peft_tensors=max_tensor_err,
            llama_cpp_rule_scales={m: dict(gguf=v["scale"], peft=v["peft_scale"]) for m, v in gg_mods.items()
                                   if abs(v["scale"] - v["peft_scale"]) > 1e-9},
            tensors=[(n, s, t) for n, s, t, _ in tens])
        for q in EXTRA_BASES:
            lg = logits_of(base_model(arch, merged_sd(base_sd[q], [(gg_mods, 1.0)])), ids)
            peft_file = f"tiny-{arch}-{q}.lora-{which}.hf_logits.npy"
            peft_lg = np.load(os.path.join(args.out, peft_file))
            dpe = float(np.abs(lg - peft_lg).max())
            results["gguf"][key][f"rule_logits_vs_peft_{q}"] = dpe
            print(f"  [{arch} {which} {q}] GGUF rule logits vs peft logits max abs {dpe:.3e}", flush=True)
            if dpe > 1e-4:   # the GGUF means something else than the peft adapter: keep what llama.cpp should give
                fn = f"tiny-{arch}-{q}.lora-{which}.gguf-rule.hf_logits.npy"
                np.save(os.path.join(args.out, fn), lg.astype(np.float32))
                results["logits"][fn] = dict(
                    base_fixture=f"golden/fixtures/tiny-{arch}-{q}.gguf",
                    adapters=[dict(adapter=f"golden/lora/tiny-{arch}-lora-{which}.gguf", scale=1.0,
                                   rule="llama.cpp: alpha(adapter.lora.alpha) / rank(lora_b.ne[0])")],
                    **stats(lg, base_ref[q]), max_abs_vs_peft_logits=dpe)

if not args.trial:
    # converter metadata on each logits entry
    for fn, e in results["logits"].items():
        conv = {}
        for a in e["adapters"]:
            name = os.path.basename(a["adapter"]).replace(".gguf", "") + ".gguf"
            g = results["gguf"].get(name, {})
            md = g.get("metadata", {})
            conv[name] = {k: md.get(k) for k in ["adapter.lora.alpha", "general.type", "adapter.type",
                                                  "general.architecture"]} if md else {"error": g.get("error")}
        e["converter_metadata"] = conv
    with open(os.path.join(args.out, "lora.golden.json"), "w") as f:
        gg = {k: {kk: vv for kk, vv in v.items() if kk != "tensors"} for k, v in results["gguf"].items()}
        json.dump({**{k: v for k, v in results.items() if k != "gguf"}, "gguf": gg}, f, indent=1, default=str)
    with open(os.path.join(args.out, "gguf_dump.txt"), "w") as f:
        for k, v in results["gguf"].items():
            f.write(f"== {k}\n")
            if "error" in v:
                f.write("ERROR\n" + v["error"] + "\n")
                continue
            for mk, mv in v["metadata"].items():
                f.write(f"  meta {mk} = {mv!r}\n")
            for n, s, t in v["tensors"]:
                f.write(f"  {n:40s} {t:4s} ne={s}\n")
print(f"done in {time.time() - t_start:.1f}s")
