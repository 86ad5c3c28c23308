//! llama.cpp's LoRA GGUF, as `convert_lora_to_gguf.py` writes it: `general.type = adapter`, `adapter.type = lora`,
//! `adapter.lora.alpha`, and per projection `blk.N.<stem>.weight.lora_a` (dims `[in, r]`) and `.lora_b` (dims
//! `[r, out]`). The scale is α/r as llama.cpp applies it (1 when α is 0 or absent).

use super::{AdapterFormat, LoraAdapter, LoraError, LowRank, Target};
use crate::gguf::{GgufError, GgufFile, TensorInfo};
use crate::source::ByteSource;
use std::collections::BTreeMap;

fn values(info: &TensorInfo, source: &dyn ByteSource) -> Result<Vec<f32>, LoraError> {
    let bytes = info.bytes(source)?;
    info.dtype().to_f32(&bytes).ok_or_else(|| LoraError::Tensor {
        tensor: info.name().to_owned(),
        problem: format!(
            "has type {}; adapters are read in F32, F16, BF16 or Q8_0 (convert_lora_to_gguf.py's --outtype)",
            info.dtype()
        ),
    })
}

/// `blk.N.<stem>.weight.lora_{a,b}` → (N, target, is_a).
fn parse_name(name: &str) -> Result<(u32, Target, bool), LoraError> {
    let (base, is_a) = if let Some(base) = name.strip_suffix(".weight.lora_a") {
        (base, true)
    } else if let Some(base) = name.strip_suffix(".weight.lora_b") {
        (base, false)
    } else {
        return Err(LoraError::Tensor { tensor: name.to_owned(), problem: "is not a .lora_a / .lora_b tensor".into() });
    };
    let no_target = |reason: String| LoraError::NoSuchTarget { tensor: name.to_owned(), reason };
    let rest = base
        .strip_prefix("blk.")
        .ok_or_else(|| no_target("only per-layer projections `blk.N.*` are applied".into()))?;
    let (layer, stem) = rest.split_once('.').ok_or_else(|| no_target("no projection name".into()))?;
    let layer = layer.parse::<u32>().map_err(|_| no_target(format!("`{layer}` is not a layer number")))?;
    let target = Target::from_gguf_stem(stem).ok_or_else(|| {
        no_target(format!(
            "`{stem}` is not a projection of a Gemma decoder layer; known: {}",
            Target::ALL.map(|t| t.gguf_stem()).join(", ")
        ))
    })?;
    Ok((layer, target, is_a))
}

/// An adapter from a parsed llama.cpp LoRA GGUF.
pub fn from_gguf(file: &GgufFile, source: &dyn ByteSource) -> Result<LoraAdapter, LoraError> {
    let kind = file.get_str("general.type").map_err(|_| LoraError::NotAnAdapter {
        reason: "the GGUF has no `general.type` (a model file? pass it as the model, not as --adapter)".into(),
    })?;
    if kind != "adapter" {
        return Err(LoraError::NotAnAdapter { reason: format!("the GGUF's general.type is `{kind}`, not `adapter`") });
    }
    match file.get_str("adapter.type") {
        Ok("lora") => {}
        Ok(other) => {
            return Err(LoraError::NotAnAdapter { reason: format!("adapter.type is `{other}`, not `lora`") });
        }
        Err(e) => return Err(e.into()),
    }
    let alpha = match file.get_f32("adapter.lora.alpha") {
        Ok(a) if a.is_finite() => a,
        Ok(a) => return Err(LoraError::Tensor { tensor: "adapter.lora.alpha".into(), problem: format!("is {a}") }),
        Err(GgufError::MissingKey { .. }) => 0.0,
        Err(e) => return Err(e.into()),
    };
    let mut pairs: BTreeMap<(u32, Target), [Option<&TensorInfo>; 2]> = BTreeMap::new();
    for info in file.tensors() {
        let (layer, target, is_a) = parse_name(info.name())?;
        let slot = &mut pairs.entry((layer, target)).or_default()[usize::from(!is_a)];
        if slot.replace(info).is_some() {
            return Err(LoraError::Duplicate { update: info.name().to_owned() });
        }
    }
    let mut updates = Vec::with_capacity(pairs.len());
    for ((layer, target), [a, b]) in pairs {
        let stem = format!("blk.{layer}.{}.weight", target.gguf_stem());
        let missing = |s: &str| LoraError::Tensor { tensor: format!("{stem}.{s}"), problem: "is missing".into() };
        let (a, b) = (a.ok_or_else(|| missing("lora_a"))?, b.ok_or_else(|| missing("lora_b"))?);
        let dims = |t: &TensorInfo| -> Result<(u32, u32), LoraError> {
            match t.dims() {
                [d0, d1] => match (u32::try_from(*d0), u32::try_from(*d1)) {
                    (Ok(x), Ok(y)) => Ok((x, y)),
                    _ => {
                        Err(LoraError::Tensor { tensor: t.name().into(), problem: format!("has dims {:?}", t.dims()) })
                    }
                },
                d => Err(LoraError::Tensor {
                    tensor: t.name().into(),
                    problem: format!("has dims {d:?}; LoRA A and B are 2-D"),
                }),
            }
        };
        let (in_dim, rank) = dims(a)?;
        let (b_rank, out_dim) = dims(b)?;
        if rank != b_rank {
            return Err(LoraError::Tensor {
                tensor: b.name().to_owned(),
                problem: format!("has rank {b_rank} but its lora_a has rank {rank}"),
            });
        }
        let scale = if alpha != 0.0 && rank > 0 { alpha / rank as f32 } else { 1.0 };
        updates.push(LowRank {
            layer,
            target,
            rank,
            in_dim,
            out_dim,
            scale,
            a: values(a, source)?,
            b: values(b, source)?,
        });
    }
    let architecture = file.architecture().ok().map(str::to_owned);
    let base_model = file.get_str("general.name").ok().map(str::to_owned);
    LoraAdapter::new(AdapterFormat::LlamaCppGguf, architecture, base_model, alpha, updates)
}
