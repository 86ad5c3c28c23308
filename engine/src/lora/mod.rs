//! LoRA adapters as users ship them: HF PEFT (`adapter_config.json` + `adapter_model.safetensors`) and llama.cpp's
//! LoRA GGUF (`general.type = adapter`), read into one form: per (layer, projection) a low-rank update
//! `ΔW = scale · B·A` with A `[rank][in]` and B `[out][rank]` in f32 (`docs/lora.md`).
//!
//! This module knows file formats and projection names only; whether an adapter fits a model, and how the update
//! is applied on the GPU, is the model's business (`models::gemma::lora`).

mod error;
mod gguf;
mod peft;
mod write;

pub use error::LoraError;
pub use gguf::from_gguf;
pub use peft::{PeftConfig, from_peft};
pub use write::{lora_gguf_bytes, peft_bytes};
#[cfg(not(target_arch = "wasm32"))]
pub use write::{write_lora_gguf, write_peft_dir};

use std::collections::BTreeSet;

/// A projection an adapter can update, by its GGUF stem (`blk.N.<stem>.weight`) and its HF module name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnGate,
    FfnUp,
    FfnDown,
    /// Gemma 4's per-layer-embedding gate and projection.
    InpGate,
    Proj,
}

impl Target {
    pub const ALL: [Target; 9] = [
        Target::AttnQ,
        Target::AttnK,
        Target::AttnV,
        Target::AttnOutput,
        Target::FfnGate,
        Target::FfnUp,
        Target::FfnDown,
        Target::InpGate,
        Target::Proj,
    ];

    pub fn gguf_stem(self) -> &'static str {
        match self {
            Target::AttnQ => "attn_q",
            Target::AttnK => "attn_k",
            Target::AttnV => "attn_v",
            Target::AttnOutput => "attn_output",
            Target::FfnGate => "ffn_gate",
            Target::FfnUp => "ffn_up",
            Target::FfnDown => "ffn_down",
            Target::InpGate => "inp_gate",
            Target::Proj => "proj",
        }
    }

    /// The module name in HF transformers' Gemma 3 / Gemma 4 decoder layers.
    pub fn hf_module(self) -> &'static str {
        match self {
            Target::AttnQ => "q_proj",
            Target::AttnK => "k_proj",
            Target::AttnV => "v_proj",
            Target::AttnOutput => "o_proj",
            Target::FfnGate => "gate_proj",
            Target::FfnUp => "up_proj",
            Target::FfnDown => "down_proj",
            Target::InpGate => "per_layer_input_gate",
            Target::Proj => "per_layer_projection",
        }
    }

    /// A projection by the short name `--targets` takes (q, k, v, o, gate, up, down, ple_gate, ple_proj), or its
    /// HF module name or GGUF stem.
    pub fn from_name(name: &str) -> Option<Target> {
        Some(match name {
            "q" => Target::AttnQ,
            "k" => Target::AttnK,
            "v" => Target::AttnV,
            "o" => Target::AttnOutput,
            "gate" => Target::FfnGate,
            "up" => Target::FfnUp,
            "down" => Target::FfnDown,
            "ple_gate" => Target::InpGate,
            "ple_proj" => Target::Proj,
            other => return Target::from_hf_module(other).or_else(|| Target::from_gguf_stem(other)),
        })
    }

    pub fn from_gguf_stem(stem: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.gguf_stem() == stem)
    }

    pub fn from_hf_module(module: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.hf_module() == module)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterFormat {
    Peft,
    LlamaCppGguf,
}

impl std::fmt::Display for AdapterFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AdapterFormat::Peft => "HF PEFT (safetensors)",
            AdapterFormat::LlamaCppGguf => "llama.cpp LoRA GGUF",
        })
    }
}

/// One projection's update `ΔW = scale · B·A`.
#[derive(Debug, Clone)]
pub struct LowRank {
    pub layer: u32,
    pub target: Target,
    pub rank: u32,
    /// A's columns (the projection's input width) and B's rows (its output width).
    pub in_dim: u32,
    pub out_dim: u32,
    /// α/r, or α/√r with rsLoRA, before the scale the user gives the adapter.
    pub scale: f32,
    /// `[rank][in_dim]` row-major.
    pub a: Vec<f32>,
    /// `[out_dim][rank]` row-major.
    pub b: Vec<f32>,
}

impl LowRank {
    /// The tensor names the update came from, for messages.
    pub fn describe(&self) -> String {
        format!("blk.{}.{} ({})", self.layer, self.target.gguf_stem(), self.target.hf_module())
    }
}

/// An adapter read from a file: its updates sorted by (layer, target), each pair checked (ranks agree, values
/// finite, no projection twice).
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    pub format: AdapterFormat,
    /// The architecture the adapter says it was made for (`gemma3`, `gemma4`), when it says.
    pub architecture: Option<String>,
    /// The base model the adapter names (PEFT `base_model_name_or_path`, GGUF `general.name`), for messages.
    pub base_model: Option<String>,
    /// The file's nominal α (PEFT `lora_alpha`, GGUF `adapter.lora.alpha`); the per-update scales are what apply.
    pub alpha: f32,
    pub updates: Vec<LowRank>,
}

/// What every adapter must be, checked on updates in (layer, target) order: some updates, no projection twice,
/// rank above 0, finite scales and values, A and B as long as rank and dims say.
pub(crate) fn check_sorted(updates: &[&LowRank]) -> Result<(), LoraError> {
    if updates.is_empty() {
        return Err(LoraError::Empty);
    }
    for pair in updates.windows(2) {
        if (pair[0].layer, pair[0].target) == (pair[1].layer, pair[1].target) {
            return Err(LoraError::Duplicate { update: pair[0].describe() });
        }
    }
    for u in updates {
        let bad = |problem: String| LoraError::Tensor { tensor: u.describe(), problem };
        if u.rank == 0 {
            return Err(bad("has rank 0".into()));
        }
        if !u.scale.is_finite() {
            return Err(bad(format!("has scale {}", u.scale)));
        }
        let (rank, in_dim, out_dim) = (u64::from(u.rank), u64::from(u.in_dim), u64::from(u.out_dim));
        for (which, values, rows, cols) in [("A", &u.a, rank, in_dim), ("B", &u.b, out_dim, rank)] {
            if values.len() as u64 != rows * cols {
                return Err(bad(format!("has {} values in {which}, which is {rows}×{cols}", values.len())));
            }
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(bad(format!("has {} at element {i} of {which}", values[i])));
            }
        }
    }
    Ok(())
}

impl LoraAdapter {
    /// Checks and orders updates from a reader (or a fresh initialization); every adapter ends here.
    pub(crate) fn new(
        format: AdapterFormat,
        architecture: Option<String>,
        base_model: Option<String>,
        alpha: f32,
        mut updates: Vec<LowRank>,
    ) -> Result<Self, LoraError> {
        updates.sort_by_key(|u| (u.layer, u.target));
        check_sorted(&updates.iter().collect::<Vec<_>>())?;
        Ok(LoraAdapter { format, architecture, base_model, alpha, updates })
    }

    /// f32 bytes of every A and B.
    pub fn size_bytes(&self) -> u64 {
        self.updates.iter().map(|u| 4 * (u.a.len() + u.b.len()) as u64).sum()
    }

    pub fn targets(&self) -> BTreeSet<Target> {
        self.updates.iter().map(|u| u.target).collect()
    }

    pub fn layers(&self) -> BTreeSet<u32> {
        self.updates.iter().map(|u| u.layer).collect()
    }

    /// The smallest and largest rank.
    pub fn rank_range(&self) -> (u32, u32) {
        let ranks = self.updates.iter().map(|u| u.rank);
        (ranks.clone().min().unwrap_or(0), ranks.max().unwrap_or(0))
    }
}

/// Reads an adapter from disk: a PEFT directory (or its `adapter_config.json` / `.safetensors` file), or a
/// llama.cpp LoRA GGUF.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(path: &std::path::Path) -> Result<LoraAdapter, LoraError> {
    let io = |message: String| LoraError::Io { path: path.display().to_string(), message };
    let meta = std::fs::metadata(path).map_err(|e| io(e.to_string()))?;
    let dir = if meta.is_dir() {
        path.to_path_buf()
    } else if !meta.is_file() {
        return Err(io("not a regular file or directory".into()));
    } else if is_gguf(path).map_err(|e| io(e.to_string()))? {
        return open_gguf(path);
    } else {
        path.parent().unwrap_or(std::path::Path::new(".")).to_path_buf()
    };
    let read = |name: &str, max_bytes: u64| -> Result<Vec<u8>, LoraError> {
        let file = dir.join(name);
        let io = |message: String| LoraError::Io { path: file.display().to_string(), message };
        let len = std::fs::metadata(&file).map_err(|e| io(e.to_string()))?.len();
        if len > max_bytes {
            return Err(io(format!("is {len} bytes, over the limit of {max_bytes}")));
        }
        std::fs::read(&file).map_err(|e| io(e.to_string()))
    };
    // adapter_config.json is a few KB; anything near a MiB is not one.
    let config = read("adapter_config.json", 1 << 20)?;
    let config = String::from_utf8(config)
        .map_err(|_| LoraError::Config { field: "adapter_config.json".into(), problem: "is not UTF-8".into() })?;
    let tensors = read("adapter_model.safetensors", u64::MAX)?;
    from_peft(&config, &tensors)
}

/// Reads a llama.cpp LoRA GGUF from disk (what an Ollama ADAPTER layer holds).
#[cfg(not(target_arch = "wasm32"))]
pub fn open_gguf(path: &std::path::Path) -> Result<LoraAdapter, LoraError> {
    let source = crate::source::MmapSource::open(path)
        .map_err(|e| LoraError::Io { path: path.display().to_string(), message: e.to_string() })?;
    let file = crate::gguf::GgufFile::read(&source)?;
    from_gguf(&file, &source)
}

#[cfg(not(target_arch = "wasm32"))]
fn is_gguf(path: &std::path::Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(path)?.read(&mut magic)?;
    Ok(n == 4 && &magic == b"GGUF")
}
