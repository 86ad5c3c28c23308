//! The memory plan of a Gemma model: the GPU bytes a load will allocate, by category, worked out from the GGUF's
//! tensor table, the options and the device's binding limits before anything is allocated. Loading refuses a model
//! whose plan does not fit under the device profile's ceiling and says what to change.
//!
//! The KV cache and scratch come from the same sizing functions the allocating code uses ([`KvSizes`],
//! [`ScratchSizes`], [`Sizing`]); weights follow the loader's rules (matrices in their file encoding split on rows
//! under the binding limit, vectors converted to f32, KV weights of KV-shared layers and the PLE table not
//! uploaded); the PLE scratch follows `gemma/ple.rs`. Bind-group uniforms are an estimate (see
//! [`UNIFORM_BYTES_PER_LAYER`]).

use super::{GemmaOptions, KvSizes, PLE_TABLE_NAME, ScratchSizes, logit_rows};
use crate::error::{Error, Result};
use crate::gguf::{GgufError, GgufFile, TensorInfo};
use crate::gpu::{Capabilities, Category, SplitPlan, human_bytes, upload_size_bytes};
use crate::models::{Arch, TextConfig, skipped_by_text_model};
use crate::ops::attention::CacheType;
use serde::Serialize;

/// Bind-group uniform bytes per layer (plus one layer's worth for the embedding and head): one cache entry per
/// distinct dispatch of the prefill and decode graphs, each with its own uniform rounded up to 16 bytes. Measured
/// with `ferrogem profile` on lavapipe (Other's peak ÷ (layers + 1)): 683 bytes on the tiny Gemma 4, 523 on the
/// tiny Gemma 3, 639 on the E2B-shaped Q4_K_M. Kernel fusion moves these; at tens of KiB against megabytes of
/// scratch the estimate barely matters, so it takes the largest, rounded up.
pub const UNIFORM_BYTES_PER_LAYER: u64 = 704;

/// Bind-group uniform bytes per layer that a training step adds to inference's ([`UNIFORM_BYTES_PER_LAYER`]): the
/// unfused forward and the backward dispatch about ten times as many kernels per layer, each with its own cache
/// entry. Measured with `ferrogem finetune` (Other's peak ÷ (layers + 1), minus inference's): see docs/training.md.
pub const TRAIN_UNIFORM_BYTES_PER_LAYER: u64 = 4096;

/// The context and chunk sizes a load settles on: one derivation for the loader and the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sizing {
    /// Positions the full layers' caches hold: the asked-for context, capped at the file's `context_length`.
    pub n_ctx: u32,
    pub max_chunk: u32,
    pub logit_rows: u32,
}

impl Sizing {
    pub fn new(cfg: &TextConfig, options: &GemmaOptions, max_binding_bytes: u64) -> Sizing {
        let n_ctx = options.n_ctx.min(cfg.context_length).max(1);
        let max_chunk = options.max_chunk.clamp(1, n_ctx);
        let logit_rows = logit_rows(cfg.vocab, max_chunk, options.max_logit_rows, max_binding_bytes);
        Sizing { n_ctx, max_chunk, logit_rows }
    }
}

/// The device limits a plan depends on (how tensors split, how many logit rows fit a binding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlanLimits {
    pub max_storage_buffer_binding_bytes: u64,
    pub max_buffer_bytes: u64,
}

impl PlanLimits {
    pub fn from_caps(caps: &Capabilities) -> PlanLimits {
        PlanLimits {
            max_storage_buffer_binding_bytes: caps.max_storage_buffer_binding_bytes,
            max_buffer_bytes: caps.max_buffer_bytes,
        }
    }

    /// From a device profile's limits, to plan without a device.
    pub fn from_wgpu(limits: &wgpu::Limits) -> PlanLimits {
        PlanLimits {
            max_storage_buffer_binding_bytes: limits.max_storage_buffer_binding_size,
            max_buffer_bytes: limits.max_buffer_size,
        }
    }
}

/// One group of buffers in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanLine {
    pub what: String,
    pub category: Category,
    /// How many buffers, where the plan knows it (not for the chunk activations, whose list is `Scratch`'s).
    pub buffers: Option<u64>,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryPlan {
    pub sizing: Sizing,
    pub kv_cache: &'static str,
    pub lines: Vec<PlanLine>,
    /// The PLE table, whose rows are read from the file per call and never uploaded whole.
    pub ple_table_bytes: u64,
    /// Vision, audio and projector tensors, which a text model never reads.
    pub skipped_tower_bytes: u64,
}

impl MemoryPlan {
    pub fn new(gguf: &GgufFile, cfg: &TextConfig, options: &GemmaOptions, limits: PlanLimits) -> Result<MemoryPlan> {
        let sizing = Sizing::new(cfg, options, limits.max_storage_buffer_binding_bytes);
        let mut lines = weight_lines(gguf, cfg, limits)?;
        let line = |what: String, category, buffers, bytes| PlanLine { what, category, buffers: Some(buffers), bytes };

        let kv = KvSizes::new(cfg, options.kv_cache, sizing.n_ctx, sizing.max_chunk);
        let owners = kv.rings.iter().flatten().count() as u64;
        let kv_what = format!("K and V rings of {} owner layers (capacities {:?})", owners, kv.slot_capacities);
        lines.push(line(kv_what, Category::Kv, 2 * owners, kv.cache_bytes()));
        let slots = kv.slot_capacities.len() as u64;
        lines.push(line("ring slot ids".into(), Category::Scratch, slots, kv.slot_ids_total_bytes()));

        let s = ScratchSizes::new(cfg, sizing.max_chunk, sizing.logit_rows, options.kv_cache);
        check_bindings(cfg, options.kv_cache, &kv, &s, limits)?;
        let head = 2 * s.head_bytes + s.logits_bytes;
        let activations_what = format!("activations of a {}-token chunk", sizing.max_chunk);
        let activations = s.scratch_bytes() - head;
        lines.push(PlanLine { what: activations_what, category: Category::Scratch, buffers: None, bytes: activations });
        lines.push(line(format!("LM head rows and logits ({} rows)", sizing.logit_rows), Category::Scratch, 3, head));
        lines.push(line("logits readback".into(), Category::Staging, 1, s.staging_bytes));

        let mut ple_table_bytes = 0;
        if cfg.ple_dim > 0 {
            let table = gguf.require_tensor(PLE_TABLE_NAME)?;
            ple_table_bytes = table.size_bytes();
            let row_elems = cfg.n_layers() as u64 * cfg.ple_dim as u64;
            let row_bytes = row_bytes(table, row_elems)?;
            let chunk = sizing.max_chunk as u64;
            // As gemma/ple.rs allocates: the gathered rows, e, c and cn.
            let bytes = (chunk * row_bytes).next_multiple_of(4) + 3 * chunk * row_elems * 4;
            lines.push(line("per-layer-embedding rows and inputs".into(), Category::Scratch, 4, bytes));
        }
        let uniforms = UNIFORM_BYTES_PER_LAYER * (cfg.n_layers() as u64 + 1);
        let what = "bind-group uniforms (estimate)".into();
        lines.push(PlanLine { what, category: Category::Other, buffers: None, bytes: uniforms });

        let skipped_tower_bytes =
            gguf.tensors().iter().filter(|t| skipped_by_text_model(t.name()).is_some()).map(|t| t.size_bytes()).sum();
        let kv_cache = match options.kv_cache {
            CacheType::F32 => "f32",
            CacheType::F16 => "f16",
        };
        Ok(MemoryPlan { sizing, kv_cache, lines, ple_table_bytes, skipped_tower_bytes })
    }

    /// Adds the LoRA adapters' buffers ([`super::planned_bytes`]) to the plan, in `Category::Lora`.
    pub fn add_adapters(&mut self, gguf: &GgufFile, cfg: &TextConfig, adapters: &[super::AppliedAdapter]) {
        let bytes = super::planned_bytes(cfg, &super::gguf_has_attn_v(gguf), adapters, self.sizing.max_chunk);
        if bytes > 0 {
            let what = format!("LoRA A, B and down-projection of {} adapter(s)", adapters.len());
            self.lines.push(PlanLine { what, category: Category::Lora, buffers: None, bytes });
        }
    }

    /// Adds a LoRA training run's buffers ([`super::train::planned_bytes`], from the code that allocates them):
    /// the trained tensors, their gradients and AdamW moments, one sequence's activations, and the training graph's
    /// bind-group uniforms (an estimate, [`TRAIN_UNIFORM_BYTES_PER_LAYER`]).
    pub fn add_training(
        &mut self,
        gguf: &GgufFile,
        cfg: &TextConfig,
        adapter: &crate::lora::LoraAdapter,
        seq_len: u32,
        checkpointing: super::Checkpointing,
        limits: PlanLimits,
    ) -> Result<()> {
        let has_attn_v = super::gguf_has_attn_v(gguf);
        let ple = match cfg.ple_dim {
            0 => None,
            _ => Some(super::ple::PleLayout::of(gguf, cfg)?),
        };
        let max_binding = limits.max_storage_buffer_binding_bytes;
        let by_category =
            super::train::planned_bytes(cfg, &has_attn_v, adapter, seq_len, checkpointing, max_binding, ple)?;
        for (category, bytes) in by_category {
            let recompute = match checkpointing {
                super::Checkpointing::PerLayer => "checkpointing per layer",
                super::Checkpointing::Off => "every layer's activations kept",
            };
            let what = format!("training ({seq_len} tokens, {recompute}): {}", category.name());
            self.lines.push(PlanLine { what, category, buffers: None, bytes });
        }
        let uniforms = TRAIN_UNIFORM_BYTES_PER_LAYER * (cfg.n_layers() as u64 + 1);
        let what = "training bind-group uniforms (estimate)".into();
        self.lines.push(PlanLine { what, category: Category::Other, buffers: None, bytes: uniforms });
        Ok(())
    }

    pub fn total_bytes(&self) -> u64 {
        self.lines.iter().map(|l| l.bytes).sum()
    }

    pub fn category_bytes(&self, category: Category) -> u64 {
        self.lines.iter().filter(|l| l.category == category).map(|l| l.bytes).sum()
    }

    /// Every category, in `Category::ALL` order.
    pub fn by_category(&self) -> Vec<(Category, u64)> {
        Category::ALL.iter().map(|&c| (c, self.category_bytes(c))).collect()
    }
}

fn bad(name: &str, problem: String) -> Error {
    Error::BadModelFile(GgufError::BadTensor { tensor: name.to_owned(), problem })
}

fn row_bytes(t: &TensorInfo, row_elems: u64) -> Result<u64> {
    t.dtype().bytes_for(row_elems).ok_or_else(|| {
        bad(t.name(), format!("has rows of {row_elems} {} elements, not a whole number of blocks", t.dtype()))
    })
}

/// Whether the loader uploads this tensor (`gemma/weights.rs`).
fn uploaded(name: &str, cfg: &TextConfig) -> bool {
    if skipped_by_text_model(name).is_some() || name == PLE_TABLE_NAME {
        return false;
    }
    if name == "rope_freqs.weight" {
        return cfg.arch == Arch::Gemma4 && cfg.layers.iter().any(|l| !l.sliding);
    }
    // Converted files give KV-shared layers unused K/V weights; only owner layers load them.
    let layer_and_rest = name.strip_prefix("blk.").and_then(|rest| rest.split_once('.'));
    if let Some((layer, rest)) = layer_and_rest
        && let Some(spec) = layer.parse::<usize>().ok().and_then(|l| cfg.layers.get(l))
        && ["attn_k.weight", "attn_v.weight", "attn_k_norm.weight"].contains(&rest)
    {
        return spec.owns_kv();
    }
    true
}

/// Weights as the loader uploads them: matrices split on rows into parts of at most one binding, each part
/// padded to 4 bytes; vectors converted to f32.
fn weight_lines(gguf: &GgufFile, cfg: &TextConfig, limits: PlanLimits) -> Result<Vec<PlanLine>> {
    let max_part_bytes = limits.max_storage_buffer_binding_bytes.min(limits.max_buffer_bytes);
    let groups = ["token_embd", "output", "layer matrices", "other matrices", "vectors (as f32)"];
    let mut totals = [(0u64, 0u64); 5];
    for t in gguf.tensors().iter().filter(|t| uploaded(t.name(), cfg)) {
        let (group, buffers, bytes) = match t.dims() {
            [] | [_] => (4, 1, upload_size_bytes(t.elems() * 4)),
            [row_elems, ..] => {
                let row_bytes = row_bytes(t, *row_elems)?;
                let plan = SplitPlan::new(t.elems() / row_elems.max(&1), row_bytes, max_part_bytes)?;
                let bytes = plan.parts.iter().map(|&(_, rows)| upload_size_bytes(rows * row_bytes)).sum();
                let group = match t.name() {
                    "token_embd.weight" => 0,
                    "output.weight" => 1,
                    n if n.starts_with("blk.") => 2,
                    _ => 3,
                };
                (group, plan.parts.len() as u64, bytes)
            }
        };
        totals[group].0 += buffers;
        totals[group].1 += bytes;
    }
    Ok(groups
        .iter()
        .zip(totals)
        .filter(|(_, (buffers, _))| *buffers > 0)
        .map(|(what, (buffers, bytes))| PlanLine {
            what: (*what).into(),
            category: Category::Weights,
            buffers: Some(buffers),
            bytes,
        })
        .collect())
}

/// Why a model cannot load under a ceiling, and what would make it fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitRefusal {
    pub profile: String,
    pub planned_bytes: u64,
    pub live_bytes: u64,
    pub ceiling_bytes: u64,
    pub by_category: Vec<(Category, u64)>,
    pub n_ctx: u32,
    /// The longest context that fits with everything else unchanged; `None` if none does.
    pub max_fitting_n_ctx: Option<u32>,
    /// With an f32 KV cache: whether an f16 one fits at the same context.
    pub f16_kv_fits: Option<bool>,
    /// What the text weights may total for the rest of the plan to fit (0: no quant can).
    pub weights_budget_bytes: u64,
    pub skipped_tower_bytes: u64,
    pub ple_table_bytes: u64,
}

impl std::error::Error for FitRefusal {}

impl std::fmt::Display for FitRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .by_category
            .iter()
            .filter(|(_, b)| *b > 0)
            .map(|(c, b)| format!("{} {}", c.name(), human_bytes(*b)))
            .collect();
        write!(
            f,
            "the model does not fit device profile `{}`: its memory plan needs {} bytes ({}: {}){}, over the {}-byte \
             ({}) ceiling. To fit: ",
            self.profile,
            self.planned_bytes,
            human_bytes(self.planned_bytes),
            parts.join(", "),
            if self.live_bytes > 0 {
                format!(" with {} already live", human_bytes(self.live_bytes))
            } else {
                String::new()
            },
            self.ceiling_bytes,
            human_bytes(self.ceiling_bytes),
        )?;
        match self.max_fitting_n_ctx {
            Some(n) => write!(f, "a context length of at most {n} (--ctx; now {})", self.n_ctx)?,
            None => write!(f, "no context length is enough")?,
        }
        if self.f16_kv_fits == Some(true) {
            write!(f, "; or an f16 KV cache at this context")?;
        }
        match self.weights_budget_bytes {
            0 => write!(f, "; no quant is enough: everything but the weights already needs more than the ceiling")?,
            b => write!(f, "; or a smaller quant whose text weights total at most {b} bytes ({})", human_bytes(b))?,
        }
        if self.skipped_tower_bytes > 0 {
            write!(
                f,
                "; a text-only file saves no GPU memory: its {} of vision/audio towers are never uploaded",
                human_bytes(self.skipped_tower_bytes)
            )
        } else {
            write!(
                f,
                "; the file is already text-only, and its PLE table ({}) stays on the host",
                human_bytes(self.ple_table_bytes)
            )
        }
    }
}

/// The room a model must fit in: a device profile's ceiling, less what is already live.
#[derive(Debug, Clone, Copy)]
pub struct Budget<'a> {
    pub profile: &'a str,
    pub ceiling_bytes: u64,
    pub live_bytes: u64,
}

/// Every buffer the plan allocates whole is bound whole: refuse, before anything is allocated, one that exceeds the
/// device's binding or buffer limit, with what to change. Weights are split on rows by the loader; the LM-head rows
/// per pass are already sized to the binding.
fn check_bindings(
    cfg: &TextConfig,
    cache_type: CacheType,
    kv: &KvSizes,
    s: &ScratchSizes,
    limits: PlanLimits,
) -> Result<()> {
    let max = limits.max_storage_buffer_binding_bytes.min(limits.max_buffer_bytes);
    let refuse = |reason: String| Err(Error::PlanExceedsBinding(reason));
    for (l, ring) in kv.rings.iter().enumerate() {
        let Some((capacity, bytes)) = *ring else { continue };
        if bytes <= max {
            continue;
        }
        let spec = &cfg.layers[l];
        let fitting = max / (spec.n_kv_head as u64 * spec.head_dim as u64 * cache_type.elem_bytes()).max(1);
        let advice = match (spec.window, cache_type) {
            (None, CacheType::F32) => format!("lower --ctx to {fitting} or less, or use an f16 KV cache"),
            (None, CacheType::F16) => format!("lower --ctx to {fitting} or less"),
            (Some(w), _) => format!("lower the chunk size so that the window {w} + chunk − 1 ≤ {fitting}"),
        };
        return refuse(format!(
            "layer {l}'s K and V rings would be {bytes} bytes each ({capacity} positions), and the device binds at \
             most {max} bytes; {advice}"
        ));
    }
    let chunk = [
        ("the gate/up products", 2 * s.ffn_bytes),
        ("the query activations", s.q_bytes),
        ("the hidden activations", s.hidden_bytes),
        ("the split-attention partials", s.partials_bytes),
    ];
    if let Some((what, bytes)) = chunk.into_iter().find(|(_, bytes)| *bytes > max) {
        return refuse(format!(
            "{what} of one chunk would be {bytes} bytes, and the device binds at most {max} bytes; lower the chunk \
             size (--max-chunk)"
        ));
    }
    Ok(())
}

/// Refuses, with what to change, a model whose plan does not fit the budget.
pub fn refuse_unless_fits(
    plan: &MemoryPlan,
    gguf: &GgufFile,
    cfg: &TextConfig,
    options: &GemmaOptions,
    limits: PlanLimits,
    room: Budget<'_>,
) -> Result<()> {
    let Budget { profile, ceiling_bytes, live_bytes } = room;
    let budget = ceiling_bytes.saturating_sub(live_bytes);
    if plan.total_bytes() <= budget {
        return Ok(());
    }
    // Adapters in the plan (`add_adapters`) stay the same size whatever the options.
    let adapter_bytes = plan.category_bytes(Category::Lora);
    let fits = |o: &GemmaOptions| -> Result<bool> {
        Ok(MemoryPlan::new(gguf, cfg, o, limits)?.total_bytes() + adapter_bytes <= budget)
    };
    // The plan grows with the context, so the longest context that fits is a binary search.
    let (mut lo, mut hi) = (0u32, plan.sizing.n_ctx);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(&GemmaOptions { n_ctx: mid, ..*options })? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let f16_kv_fits = match options.kv_cache {
        CacheType::F32 => Some(fits(&GemmaOptions { kv_cache: CacheType::F16, ..*options })?),
        CacheType::F16 => None,
    };
    let weights = plan.category_bytes(Category::Weights);
    Err(Error::ModelDoesNotFit(Box::new(FitRefusal {
        profile: profile.to_owned(),
        planned_bytes: plan.total_bytes(),
        live_bytes,
        ceiling_bytes,
        by_category: plan.by_category(),
        n_ctx: plan.sizing.n_ctx,
        max_fitting_n_ctx: (lo > 0).then_some(lo),
        f16_kv_fits,
        weights_budget_bytes: budget.saturating_sub(plan.total_bytes() - weights),
        skipped_tower_bytes: plan.skipped_tower_bytes,
        ple_table_bytes: plan.ple_table_bytes,
    })))
}
