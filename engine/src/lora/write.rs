//! Writing an adapter in the two forms users ship: an HF PEFT directory (`adapter_config.json` +
//! `adapter_model.safetensors`, F32) and llama.cpp's LoRA GGUF (F32), laid out as PEFT and `convert_lora_to_gguf.py`
//! write them for Gemma (`golden/lora/`), so that this crate's readers, PEFT and llama.cpp load them.
//!
//! The bytes are built in memory ([`peft_bytes`], [`lora_gguf_bytes`]) because the browser build has no filesystem;
//! the native writers put each file in place atomically: a temporary name in the same directory, fsync, rename.

use super::{LoraAdapter, LoraError, LowRank, Target};
use crate::gguf::{GgufWriter, Value};
use crate::quant::QuantType;
use safetensors::{Dtype, tensor::TensorView};
use serde_json::{Map, json};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The updates in (layer, target) order, refused for what would make a file the readers reject or misread.
fn checked(adapter: &LoraAdapter) -> Result<Vec<&LowRank>, LoraError> {
    let mut updates: Vec<&LowRank> = adapter.updates.iter().collect();
    updates.sort_by_key(|u| (u.layer, u.target));
    super::check_sorted(&updates)?;
    Ok(updates)
}

/// The most frequent value; the earliest of equally frequent ones, so that the output is deterministic.
fn most_common<T: PartialEq + Copy>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: Vec<(T, usize)> = Vec::new();
    for v in values {
        match counts.iter_mut().find(|(seen, _)| *seen == v) {
            Some((_, n)) => *n += 1,
            None => counts.push((v, 1)),
        }
    }
    // max_by_key keeps the last of equal maxima; reversing makes it the first seen.
    counts.into_iter().rev().max_by_key(|&(_, n)| n).map(|(v, _)| v)
}

/// The α that gives an update its scale under the plain α/r rule (what the config below and llama.cpp use).
fn implied_alpha(u: &LowRank) -> f32 {
    u.scale * u.rank as f32
}

/// The module's path in the decoder, `layers.N.<block>.<module>`: HF Gemma 3 / Gemma 4 put attention under
/// `self_attn.`, the MLP under `mlp.`, and Gemma 4's per-layer-embedding gate and projection directly in the layer.
fn layer_path(u: &LowRank) -> String {
    let block = match u.target {
        Target::AttnQ | Target::AttnK | Target::AttnV | Target::AttnOutput => "self_attn.",
        Target::FfnGate | Target::FfnUp | Target::FfnDown => "mlp.",
        Target::InpGate | Target::Proj => "",
    };
    format!("layers.{}.{block}{}", u.layer, u.target.hf_module())
}

/// `adapter_config.json`. `r` and `lora_alpha` (plain α/r, no rsLoRA) give the most common (rank, scale); every
/// other update gets `rank_pattern` / `alpha_pattern` entries. PEFT takes a pattern key `k` to match a module whose
/// name matches `(.*\.)?(k)$`, so the key is the module name (`o_proj`) when all of a projection's updates agree,
/// and its path from `layers.` (`layers.3.self_attn.o_proj`) when they do not; the latter matches the module under
/// any prefix (`model.` or a multimodal `model.language_model.`) and no other. Each module matches one key at most.
fn peft_config(updates: &[&LowRank], base_model: Option<&str>) -> serde_json::Value {
    let (r, scale_bits) = most_common(updates.iter().map(|u| (u.rank, u.scale.to_bits()))).expect("checked: not empty");
    let lora_alpha = f32::from_bits(scale_bits) * r as f32;
    let mut by_target: BTreeMap<Target, Vec<&LowRank>> = BTreeMap::new();
    for u in updates {
        by_target.entry(u.target).or_default().push(u);
    }
    let (mut rank_pattern, mut alpha_pattern) = (Map::new(), Map::new());
    for (target, group) in &by_target {
        let form = |u: &LowRank| (u.rank, implied_alpha(u).to_bits());
        let uniform = group.windows(2).all(|w| form(w[0]) == form(w[1]));
        for u in group {
            let key = if uniform { target.hf_module().to_owned() } else { layer_path(u) };
            if u.rank != r {
                rank_pattern.insert(key.clone(), json!(u.rank));
            }
            if implied_alpha(u).to_bits() != lora_alpha.to_bits() {
                alpha_pattern.insert(key, json!(implied_alpha(u)));
            }
        }
    }
    let target_modules: BTreeSet<&str> = by_target.keys().map(|t| t.hf_module()).collect();
    json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": r,
        "lora_alpha": lora_alpha,
        "use_rslora": false,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "target_modules": target_modules,
        "layers_to_transform": null,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
    })
}

/// An adapter as HF PEFT saves it: the text of `adapter_config.json` and the bytes of `adapter_model.safetensors`
/// (F32, keys `base_model.model.model.layers.N.<block>.<module>.lora_{A,B}.weight`, A `[r, in]`, B `[out, r]`).
pub fn peft_bytes(adapter: &LoraAdapter, base_model: Option<&str>) -> crate::Result<(String, Vec<u8>)> {
    let updates = checked(adapter)?;
    let config = serde_json::to_string_pretty(&peft_config(&updates, base_model)).expect("a JSON value serializes");
    let st = |e: safetensors::SafeTensorError| LoraError::Safetensors(e.to_string());
    let mut tensors = Vec::with_capacity(2 * updates.len());
    for u in &updates {
        let module = format!("base_model.model.model.{}", layer_path(u));
        let (rank, in_dim, out_dim) = (u.rank as usize, u.in_dim as usize, u.out_dim as usize);
        let a = TensorView::new(Dtype::F32, vec![rank, in_dim], bytemuck::cast_slice(&u.a)).map_err(st)?;
        let b = TensorView::new(Dtype::F32, vec![out_dim, rank], bytemuck::cast_slice(&u.b)).map_err(st)?;
        tensors.push((format!("{module}.lora_A.weight"), a));
        tensors.push((format!("{module}.lora_B.weight"), b));
    }
    // What PEFT's save_pretrained records; transformers' loaders look for it.
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    let tensors = safetensors::serialize(tensors, Some(metadata)).map_err(st)?;
    Ok((config, tensors))
}

/// An adapter as a llama.cpp LoRA GGUF for the architecture `arch` (`gemma4`, `gemma3`): `blk.N.<stem>.weight.lora_a`
/// (ggml dims `[in, r]`) and `.lora_b` (`[r, out]`), F32, the same bytes as PEFT's row-major A and B.
///
/// llama.cpp scales every update by α/r with the file's one `adapter.lora.alpha`. α is the one most updates imply
/// (scale·r); an update whose scale that α does not give has its scale folded into B, written as
/// `B · scale / (α/r)`, so that the file applies the same `scale·B·A` as the adapter (read back, such an update
/// has the folded B and the scale α/r).
pub fn lora_gguf_bytes(adapter: &LoraAdapter, arch: &str) -> crate::Result<Vec<u8>> {
    let updates = checked(adapter)?;
    // llama.cpp reads α = 0 as "scale 1", so 0 is never chosen; if every scale is 0, any α will do (every B is 0).
    let alpha =
        most_common(updates.iter().map(|u| implied_alpha(u).to_bits()).filter(|&bits| f32::from_bits(bits) != 0.0))
            .map_or(1.0, f32::from_bits);
    let mut w = GgufWriter::new(3);
    w.add_metadata("general.architecture", Value::String(arch.to_owned()));
    w.add_metadata("general.type", Value::String("adapter".into()));
    w.add_metadata("adapter.type", Value::String("lora".into()));
    w.add_metadata("adapter.lora.alpha", Value::F32(alpha));
    for u in updates {
        let b = if implied_alpha(u).to_bits() == alpha.to_bits() {
            Cow::Borrowed(&u.b)
        } else {
            let fold = u.scale / (alpha / u.rank as f32);
            Cow::Owned(u.b.iter().map(|v| v * fold).collect())
        };
        let name = format!("blk.{}.{}.weight", u.layer, u.target.gguf_stem());
        let (rank, in_dim, out_dim) = (u64::from(u.rank), u64::from(u.in_dim), u64::from(u.out_dim));
        w.add_tensor(format!("{name}.lora_a"), &[in_dim, rank], QuantType::F32, bytemuck::cast_slice(&u.a).to_vec());
        w.add_tensor(format!("{name}.lora_b"), &[rank, out_dim], QuantType::F32, bytemuck::cast_slice(&b).to_vec());
    }
    Ok(w.to_bytes().map_err(LoraError::from)?)
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::{write_lora_gguf, write_peft_dir};

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::{LoraAdapter, lora_gguf_bytes, peft_bytes};
    use crate::atomic_file::{Staged, sync_dir, write_atomic};
    use std::path::Path;

    /// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir`, which must exist; each file is
    /// replaced whole or not at all. The config goes in last, since it is what marks the directory as an adapter;
    /// a failure between the two renames leaves the new tensors beside the old config.
    pub fn write_peft_dir(adapter: &LoraAdapter, dir: &Path, base_model: Option<&str>) -> crate::Result<()> {
        let (config, tensors) = peft_bytes(adapter, base_model)?;
        let tensors = Staged::new(&dir.join("adapter_model.safetensors"), &tensors)?;
        let config = Staged::new(&dir.join("adapter_config.json"), config.as_bytes())?;
        tensors.commit()?;
        config.commit()?;
        sync_dir(dir)
    }

    /// Writes a llama.cpp LoRA GGUF ([`lora_gguf_bytes`](super::lora_gguf_bytes)) to `path`, whole or not at all.
    pub fn write_lora_gguf(adapter: &LoraAdapter, path: &Path, arch: &str) -> crate::Result<()> {
        write_atomic(path, &lora_gguf_bytes(adapter, arch)?)
    }
}
