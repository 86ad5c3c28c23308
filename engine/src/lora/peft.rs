//! HF PEFT LoRA: `adapter_config.json` (r, lora_alpha, use_rslora, rank_pattern, alpha_pattern, …) and
//! `adapter_model.safetensors` with `…layers.N.<block>.<module>.lora_A.weight` `[r][in]` and `lora_B.weight`
//! `[out][r]` (also under the `language_model` prefix of multimodal checkpoints). The scale of a module is
//! α/r (α/√r with rsLoRA), r and α taken from the first `rank_pattern` / `alpha_pattern` key matching the module's
//! name, as PEFT matches them (`(.*\.)?(key)$`). What PEFT can do that this engine does not apply is refused by
//! name: DoRA, biases, `modules_to_save`, adapters on other modules, other PEFT types.

use super::{AdapterFormat, LoraAdapter, LoraError, LowRank, Target};
use crate::quant::QuantType;
use safetensors::{Dtype, SafeTensors};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

const ADVICE: &str = "merge it into the base model with PEFT (`merge_and_unload`) and convert that instead";

/// The fields of `adapter_config.json` that decide the math.
#[derive(Debug, Clone)]
pub struct PeftConfig {
    pub r: u32,
    pub lora_alpha: f32,
    pub use_rslora: bool,
    pub rank_pattern: Vec<(String, u32)>,
    pub alpha_pattern: Vec<(String, f32)>,
    pub base_model: Option<String>,
}

fn config_err(field: &str, problem: impl Into<String>) -> LoraError {
    LoraError::Config { field: field.to_owned(), problem: problem.into() }
}

fn unsupported(field: &str, what: impl Into<String>) -> LoraError {
    LoraError::Unsupported { field: field.to_owned(), what: what.into(), advice: ADVICE }
}

fn positive_u32(field: &str, v: &Value) -> Result<u32, LoraError> {
    v.as_u64()
        .filter(|&r| r > 0)
        .and_then(|r| u32::try_from(r).ok())
        .ok_or_else(|| config_err(field, format!("is {v}; it must be a positive integer")))
}

fn finite_f32(field: &str, v: &Value) -> Result<f32, LoraError> {
    v.as_f64()
        .map(|a| a as f32)
        .filter(|a| a.is_finite())
        .ok_or_else(|| config_err(field, format!("is {v}; it must be a finite number")))
}

fn pattern_map<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Vec<(&'a String, &'a Value)>, LoraError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => Ok(m.iter().collect()),
        Some(other) => Err(config_err(field, format!("is {other}; it must be an object of module name → value"))),
    }
}

impl PeftConfig {
    pub fn parse(text: &str) -> Result<PeftConfig, LoraError> {
        let value: Value = serde_json::from_str(text).map_err(|e| config_err("adapter_config.json", e.to_string()))?;
        let Value::Object(obj) = value else {
            return Err(config_err("adapter_config.json", "is not a JSON object"));
        };
        let str_field = |f: &str| obj.get(f).and_then(Value::as_str);
        if let Some(t) = str_field("peft_type").filter(|t| *t != "LORA") {
            return Err(unsupported("peft_type", format!("PEFT type {t}")));
        }
        let truthy = |f: &str| obj.get(f).is_some_and(|v| v.as_bool() == Some(true));
        if truthy("use_dora") {
            return Err(unsupported("use_dora", "DoRA"));
        }
        if truthy("lora_bias") {
            return Err(unsupported("lora_bias", "LoRA biases"));
        }
        if let Some(b) = str_field("bias").filter(|b| *b != "none") {
            return Err(unsupported("bias", format!("trained biases (`{b}`)")));
        }
        let non_empty = |f: &str| match obj.get(f) {
            None | Some(Value::Null) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
            Some(Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        };
        for (field, what) in [
            ("modules_to_save", "fully trained extra modules"),
            ("layer_replication", "layer replication"),
            ("target_parameters", "LoRA on parameters rather than modules"),
        ] {
            if non_empty(field) {
                return Err(unsupported(field, what));
            }
        }
        let r = positive_u32("r", obj.get("r").ok_or_else(|| config_err("r", "is missing"))?)?;
        let lora_alpha =
            finite_f32("lora_alpha", obj.get("lora_alpha").ok_or_else(|| config_err("lora_alpha", "is missing"))?)?;
        let use_rslora = match obj.get("use_rslora") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(config_err("use_rslora", format!("is {other}; it must be true or false"))),
        };
        let rank_pattern = pattern_map(&obj, "rank_pattern")?
            .into_iter()
            .map(|(k, v)| Ok((k.clone(), positive_u32(&format!("rank_pattern.{k}"), v)?)))
            .collect::<Result<_, LoraError>>()?;
        let alpha_pattern = pattern_map(&obj, "alpha_pattern")?
            .into_iter()
            .map(|(k, v)| Ok((k.clone(), finite_f32(&format!("alpha_pattern.{k}"), v)?)))
            .collect::<Result<_, LoraError>>()?;
        let base_model = str_field("base_model_name_or_path").map(str::to_owned);
        Ok(PeftConfig { r, lora_alpha, use_rslora, rank_pattern, alpha_pattern, base_model })
    }

    /// PEFT's rule: the first pattern key `k` with `(.*\.)?(k)$` matching the module's full name.
    fn lookup<T: Copy>(patterns: &[(String, T)], module: &str) -> Result<Option<T>, LoraError> {
        for (key, value) in patterns {
            let re = regex::Regex::new(&format!(r"^(.*\.)?({key})$"))
                .map_err(|e| config_err(&format!("pattern `{key}`"), format!("is not a valid regex: {e}")))?;
            if re.is_match(module) {
                return Ok(Some(*value));
            }
        }
        Ok(None)
    }

    /// (r, α, scale) for the module named `module` (its name in the model, e.g. `model.layers.3.self_attn.o_proj`).
    pub fn module_scale(&self, module: &str) -> Result<(u32, f32, f32), LoraError> {
        let r = Self::lookup(&self.rank_pattern, module)?.unwrap_or(self.r);
        let alpha = Self::lookup(&self.alpha_pattern, module)?.unwrap_or(self.lora_alpha);
        let denom = if self.use_rslora { (r as f32).sqrt() } else { r as f32 };
        Ok((r, alpha, alpha / denom))
    }
}

/// Where a safetensors key points: the module's name in the model, its layer and target, and A or B.
struct Key {
    module: String,
    layer: u32,
    target: Target,
    is_a: bool,
}

/// Parses `base_model.model.<module>.lora_A[.<adapter>].weight` with `<module>` ending `layers.N.[block.]<name>`.
fn parse_key(key: &str) -> Result<Key, LoraError> {
    let not_lora = || {
        if key.contains("lora_magnitude_vector") {
            unsupported(key, "DoRA magnitude vectors")
        } else if key.contains("lora_embedding") {
            unsupported(key, "LoRA on embeddings")
        } else {
            LoraError::Tensor {
                tensor: key.to_owned(),
                problem: "is not a lora_A / lora_B weight (modules_to_save or a bias?)".into(),
            }
        }
    };
    let parts: Vec<&str> = key.split('.').collect();
    let ab = parts.iter().position(|p| *p == "lora_A" || *p == "lora_B").ok_or_else(not_lora)?;
    if parts.last() != Some(&"weight") || ab == 0 {
        return Err(not_lora());
    }
    let module_parts = &parts[..ab];
    let module = module_parts.join(".");
    let module = module.strip_prefix("base_model.model.").unwrap_or(&module).to_owned();
    if ["vision", "audio", "multi_modal", "embed_vision", "embed_audio"].iter().any(|t| module.contains(t)) {
        return Err(unsupported(key, "LoRA on the vision or audio towers (ferrogem runs the text decoder)"));
    }
    let name = module_parts[ab - 1];
    let target = Target::from_hf_module(name).ok_or_else(|| LoraError::NoSuchTarget {
        tensor: key.to_owned(),
        reason: format!(
            "`{name}` is not a projection of a Gemma decoder layer; known: {}",
            Target::ALL.map(|t| t.hf_module()).join(", ")
        ),
    })?;
    let layer =
        module_parts.windows(2).find(|w| w[0] == "layers").and_then(|w| w[1].parse::<u32>().ok()).ok_or_else(|| {
            LoraError::NoSuchTarget { tensor: key.to_owned(), reason: "its name has no `layers.N`".into() }
        })?;
    Ok(Key { module, layer, target, is_a: parts[ab] == "lora_A" })
}

fn to_f32(key: &str, view: &safetensors::tensor::TensorView) -> Result<Vec<f32>, LoraError> {
    let dense = match view.dtype() {
        Dtype::F32 => QuantType::F32,
        Dtype::F16 => QuantType::F16,
        Dtype::BF16 => QuantType::BF16,
        Dtype::F64 => {
            let wide = view.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("chunks of 8")));
            return Ok(wide.map(|v| v as f32).collect());
        }
        other => {
            return Err(LoraError::Tensor {
                tensor: key.to_owned(),
                problem: format!("has dtype {other:?}; F32, F16, BF16 and F64 are read"),
            });
        }
    };
    Ok(dense.dense_to_f32(view.data()).expect("a dense type"))
}

fn dims2(key: &str, shape: &[usize]) -> Result<(u32, u32), LoraError> {
    match shape {
        [rows, cols] => match (u32::try_from(*rows), u32::try_from(*cols)) {
            (Ok(r), Ok(c)) => Ok((r, c)),
            _ => Err(LoraError::Tensor { tensor: key.to_owned(), problem: format!("has shape {shape:?}") }),
        },
        _ => Err(LoraError::Tensor {
            tensor: key.to_owned(),
            problem: format!("has shape {shape:?}; LoRA A and B are 2-D"),
        }),
    }
}

/// A module's name in the model and the keys of its lora_A and lora_B.
type KeyPair = (String, Option<String>, Option<String>);

/// An adapter from the text of `adapter_config.json` and the bytes of `adapter_model.safetensors`.
pub fn from_peft(config_json: &str, safetensors_bytes: &[u8]) -> Result<LoraAdapter, LoraError> {
    let config = PeftConfig::parse(config_json)?;
    let file = SafeTensors::deserialize(safetensors_bytes).map_err(|e| LoraError::Safetensors(e.to_string()))?;
    let mut pairs: BTreeMap<(u32, Target), KeyPair> = BTreeMap::new();
    for name in file.names() {
        let key = parse_key(name)?;
        let entry = pairs.entry((key.layer, key.target)).or_insert_with(|| (key.module.clone(), None, None));
        if entry.0 != key.module {
            return Err(LoraError::Duplicate { update: format!("{} (as `{}` and `{}`)", key.module, entry.0, name) });
        }
        let slot = if key.is_a { &mut entry.1 } else { &mut entry.2 };
        if slot.replace(name.to_owned()).is_some() {
            return Err(LoraError::Duplicate { update: name.to_owned() });
        }
    }
    let mut updates = Vec::with_capacity(pairs.len());
    for ((layer, target), (module, a_key, b_key)) in pairs {
        let missing = |which: &str| LoraError::Tensor {
            tensor: format!("{module}.{which}.weight"),
            problem: "is missing (each module needs both lora_A and lora_B)".into(),
        };
        let a_key = a_key.ok_or_else(|| missing("lora_A"))?;
        let b_key = b_key.ok_or_else(|| missing("lora_B"))?;
        let tensor = |k: &str| file.tensor(k).map_err(|e| LoraError::Safetensors(format!("{k}: {e}")));
        let (a, b) = (tensor(&a_key)?, tensor(&b_key)?);
        let (rank, in_dim) = dims2(&a_key, a.shape())?;
        let (out_dim, b_rank) = dims2(&b_key, b.shape())?;
        if rank != b_rank {
            return Err(LoraError::Tensor {
                tensor: b_key,
                problem: format!("has rank {b_rank} but its lora_A has rank {rank}"),
            });
        }
        let (config_rank, _, scale) = config.module_scale(&module)?;
        if config_rank != rank {
            return Err(LoraError::Tensor {
                tensor: a_key,
                problem: format!("has rank {rank}, but adapter_config.json gives this module r = {config_rank}"),
            });
        }
        updates.push(LowRank {
            layer,
            target,
            rank,
            in_dim,
            out_dim,
            scale,
            a: to_f32(&a_key, &a)?,
            b: to_f32(&b_key, &b)?,
        });
    }
    LoraAdapter::new(AdapterFormat::Peft, None, config.base_model, config.lora_alpha, updates)
}
