//! Gemma 4 and Gemma 3 text decoders on the GPU (`docs/gemma4.md` §3, §5, §8), built from the ops in
//! `crate::ops`. A model is a plain struct tree ([`Weights`], named after the GGUF tensors), a preallocated KV
//! cache ([`KvCache`]: rings for sliding layers, donor buffers for KV-shared layers), the per-layer-embedding
//! path ([`ple`]: the table stays in the file), scratch activations for one chunk, and [`Gemma::forward`].
//!
//! ```text
//! let mut model = Gemma::load(&ctx, &gguf, source, GemmaOptions::default())?;
//! let prompt = model.forward_blocking(&ids, 0, LogitRows::Last)?;                    // prefill
//! let step = model.forward_blocking(&[next], ids.len() as u32, LogitRows::Last)?;    // decode
//! ```
//!
//! A chunk is one batch (the logits' copy to a mappable buffer included), submitted a few layers at a time so the
//! GPU starts before the host has recorded all of it; only the logit rows asked for are computed and read back. Chunks longer than `max_chunk` run as several.

mod forward;
mod kv_cache;
mod lora;
pub mod plan;
pub mod ple;
mod scratch;
mod trace;
mod train;
mod weights;

pub use forward::EARLY_SUBMIT_DISPATCHES;
pub use kv_cache::{KvCache, KvSizes, LayerCache};
pub use lora::{
    AppliedAdapter, GroupUpdates, LoraInput, LoraSet, check_fit, gguf_has_attn_v, planned_bytes, target_shape,
};
pub use ple::{Ple, TABLE_NAME as PLE_TABLE_NAME};
pub use scratch::{Scratch, ScratchSizes, logit_rows};
pub use trace::Traced;
pub use train::{Checkpointing, FreshLora, LoraTrainer, TrainerState, fresh_adapter};
pub use weights::{Layer, Linear, Weights};

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::gpu::{Category, Context, Phase};
use crate::models::TextConfig;
use crate::ops::attention::CacheType;
use crate::source::ByteSource;
use plan::{Budget, MemoryPlan, PlanLimits, Sizing, refuse_unless_fits};
use std::sync::Arc;
use trace::Tracer;

/// Defaults of [`GemmaOptions`].
pub const DEFAULT_MAX_CHUNK: u32 = 64;
pub const DEFAULT_N_CTX: u32 = 4096;
/// Logit rows per LM-head pass: 16 rows of Gemma's 262144-entry vocabulary are 16 MiB (plus as much to map).
pub const DEFAULT_MAX_LOGIT_ROWS: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmaOptions {
    /// Tokens per chunk: scratch activations and sliding rings (`window + max_chunk − 1` slots) are sized for it.
    pub max_chunk: u32,
    /// Positions the full layers' caches hold (capped at the file's `context_length`).
    pub n_ctx: u32,
    /// KV cache storage. F16 needs SHADER_F16; F32 works everywhere and is what the goldens are checked with.
    pub kv_cache: CacheType,
    /// At most this many logit rows per LM-head pass (also capped by `max_chunk` and the binding limit).
    pub max_logit_rows: u32,
}

impl Default for GemmaOptions {
    fn default() -> Self {
        GemmaOptions {
            max_chunk: DEFAULT_MAX_CHUNK,
            n_ctx: DEFAULT_N_CTX,
            kv_cache: CacheType::F32,
            max_logit_rows: DEFAULT_MAX_LOGIT_ROWS,
        }
    }
}

impl GemmaOptions {
    /// A model loaded only to be trained: a [`LoraTrainer`] allocates all it uses, so the inference scratch and
    /// caches are the smallest there are (one token), which leaves the most memory for training.
    pub fn for_training() -> GemmaOptions {
        GemmaOptions { max_chunk: 1, n_ctx: 1, ..GemmaOptions::default() }
    }
}

/// Which logit rows a forward call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitRows {
    /// The last token's (generation).
    Last,
    /// Every token's.
    All,
}

/// Softcapped logits, `[n_rows][vocab]` row-major; row `i` belongs to position `first_pos + i`.
#[derive(Debug, Clone)]
pub struct Logits {
    pub first_pos: u32,
    pub n_rows: u32,
    pub vocab: u32,
    pub values: Vec<f32>,
}

impl Logits {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.vocab as usize..(i + 1) * self.vocab as usize]
    }
}

/// How far a load has come: text-weight bytes on the GPU out of those the memory plan says it uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadProgress {
    pub uploaded_bytes: u64,
    pub total_bytes: u64,
}

pub struct Gemma {
    ctx: Context,
    /// The file the weights came from; the PLE rows of each chunk's tokens are read from it.
    source: Arc<dyn ByteSource>,
    pub config: TextConfig,
    pub weights: Weights,
    pub kv: KvCache,
    pub ple: Option<Ple>,
    pub scratch: Scratch,
    /// The LoRA adapters applied, if any ([`set_adapters`](Self::set_adapters)).
    pub lora: Option<LoraSet>,
    /// Dispatches recorded by the last forward call (all its chunks).
    pub last_dispatches: u32,
}

impl Gemma {
    /// Uploads the text weights of `gguf` (read from `source`) in `Phase::Load`, and allocates the KV cache and
    /// the scratch. Vision, audio and projector tensors are never read; neither is the PLE table. Under a device
    /// profile with a memory ceiling, a model whose [`MemoryPlan`] does not fit is refused before anything is
    /// allocated, with what to change.
    pub fn load(ctx: &Context, gguf: &GgufFile, source: Arc<dyn ByteSource>, options: GemmaOptions) -> Result<Gemma> {
        Self::load_with_progress(ctx, gguf, source, options, &mut |_| {})
    }

    /// [`load`](Self::load), calling `progress` after each tensor is uploaded.
    pub fn load_with_progress(
        ctx: &Context,
        gguf: &GgufFile,
        source: Arc<dyn ByteSource>,
        options: GemmaOptions,
        progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Gemma> {
        let config = TextConfig::from_gguf(gguf)?;
        check_rope_dims(gguf, &config)?;
        // The 26B-A4B's expert block (gemma4.md §4) runs beside the dense MLP; without it the output is wrong.
        if let Some(t) =
            gguf.tensors().iter().find(|t| t.name().contains("_exps.") || t.name().ends_with(".ffn_gate_inp.weight"))
        {
            return Err(Error::Unsupported {
                op: "Gemma MoE layers".into(),
                reason: format!(
                    "`{}` belongs to a mixture-of-experts FFN, which this engine does not run yet",
                    t.name()
                ),
            });
        }
        if options.kv_cache == CacheType::F16 && !ctx.caps().f16 {
            return Err(Error::Unsupported {
                op: "an f16 KV cache".into(),
                reason: "the device did not grant SHADER_F16; use CacheType::F32".into(),
            });
        }
        let limits = PlanLimits::from_caps(ctx.caps());
        let plan = MemoryPlan::new(gguf, &config, &options, limits)?;
        if let (Some(profile), Some(ceiling_bytes)) = (&ctx.caps().profile, ctx.caps().ceiling_bytes) {
            let room = Budget { profile, ceiling_bytes, live_bytes: ctx.memory().live_bytes };
            refuse_unless_fits(&plan, gguf, &config, &options, limits, room)?;
        }
        let previous = ctx.phase();
        ctx.set_phase(Phase::Load);
        let loader = weights::Loader::new(ctx, gguf, source.as_ref(), plan.category_bytes(Category::Weights), progress);
        let loaded = Self::load_in_phase(loader, options, config, plan.sizing);
        ctx.set_phase(previous);
        let (weights, kv, scratch, ple, config) = loaded?;
        Ok(Gemma { ctx: ctx.clone(), source, config, weights, kv, ple, scratch, lora: None, last_dispatches: 0 })
    }

    fn load_in_phase(
        loader: weights::Loader,
        options: GemmaOptions,
        config: TextConfig,
        sizing: Sizing,
    ) -> Result<(Weights, KvCache, Scratch, Option<Ple>, TextConfig)> {
        let weights = loader.weights(&config)?;
        let ctx = loader.ctx;
        let Sizing { n_ctx, max_chunk, logit_rows } = sizing;
        let kv = KvCache::new(ctx, &config, options.kv_cache, n_ctx, max_chunk)?;
        let scratch = Scratch::new(ctx, &config, max_chunk, logit_rows, options.kv_cache)?;
        let ple = match config.ple_dim {
            0 => None,
            _ => Some(Ple::new(ctx, loader.gguf, &config, max_chunk)?),
        };
        Ok((weights, kv, scratch, ple, config))
    }

    /// Applies `adapters` (replacing any applied before; none removes them) without touching the base weights.
    /// Every adapter is checked against the model and uploaded before the old ones are dropped, so an error leaves
    /// the model as it was. The cached positions were computed with the old adapters: the sequence restarts.
    pub fn set_adapters(&mut self, adapters: &[AppliedAdapter]) -> Result<()> {
        self.refuse_adapters_over_the_ceiling(adapters)?;
        let previous = self.ctx.phase();
        self.ctx.set_phase(Phase::Load);
        let built = LoraSet::build(&self.ctx, &self.config, &self.weights, adapters, self.scratch.max_chunk);
        self.ctx.set_phase(previous);
        self.lora = built?;
        self.reset();
        Ok(())
    }

    /// Under a profile's ceiling, the new adapters must fit beside everything live, the applied adapters
    /// included: they are dropped only once the new ones are uploaded.
    fn refuse_adapters_over_the_ceiling(&self, adapters: &[AppliedAdapter]) -> Result<()> {
        let caps = self.ctx.caps();
        let (Some(profile), Some(ceiling_bytes)) = (&caps.profile, caps.ceiling_bytes) else { return Ok(()) };
        let has_attn_v = |l: usize| self.weights.layers[l].attn_v.is_some();
        let needed_bytes = planned_bytes(&self.config, &has_attn_v, adapters, self.scratch.max_chunk);
        let live_bytes = self.ctx.memory().live_bytes;
        if live_bytes + needed_bytes <= ceiling_bytes {
            return Ok(());
        }
        let applied_bytes = self.lora.as_ref().map_or(0, LoraSet::size_bytes);
        let room = ceiling_bytes.saturating_sub(live_bytes.saturating_sub(applied_bytes));
        let advice = if applied_bytes > 0 && needed_bytes <= room {
            format!("remove the applied adapters first (they hold {applied_bytes} bytes), then apply these")
        } else {
            format!(
                "adapters of at most {room} bytes (their bytes grow with the rank and the number of targets), or \
                 more room for them: a shorter context (--ctx) or a smaller quant of the base"
            )
        };
        Err(Error::AdaptersDoNotFit { profile: profile.clone(), needed_bytes, live_bytes, ceiling_bytes, advice })
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// One past the newest cached position: where the next token goes.
    pub fn next_pos(&self) -> u32 {
        self.kv.next_pos
    }

    /// Forgets the cached positions (a new sequence starts at position 0).
    pub fn reset(&mut self) {
        self.kv.next_pos = 0;
    }

    /// Runs `tokens` at positions `pos0..` (pos0 ≤ [`next_pos`](Self::next_pos); smaller rewinds), writing their
    /// K/V, and returns the asked-for logit rows.
    pub async fn forward(&mut self, tokens: &[u32], pos0: u32, rows: LogitRows) -> Result<Logits> {
        self.run(tokens, pos0, rows, &mut Tracer::off(), &mut || false).await
    }

    /// [`forward`](Self::forward) that asks `cancelled` before each chunk and stops with [`Error::Cancelled`] when
    /// it says so: a long prompt stops within one chunk's time. The chunks already run stay in the cache.
    pub async fn forward_cancellable(
        &mut self,
        tokens: &[u32],
        pos0: u32,
        rows: LogitRows,
        cancelled: &mut dyn FnMut() -> bool,
    ) -> Result<Logits> {
        self.run(tokens, pos0, rows, &mut Tracer::off(), cancelled).await
    }

    /// [`forward`](Self::forward) for at most `max_chunk` tokens that also reads back every intermediate.
    pub async fn forward_traced(
        &mut self,
        tokens: &[u32],
        pos0: u32,
        rows: LogitRows,
    ) -> Result<(Logits, Vec<Traced>)> {
        if tokens.len() > self.scratch.max_chunk as usize {
            return Err(Error::Unsupported {
                op: "forward_traced".into(),
                reason: format!("{} tokens exceed one chunk of {}", tokens.len(), self.scratch.max_chunk),
            });
        }
        let mut tracer = Tracer::on(&self.ctx);
        let logits = self.run(tokens, pos0, rows, &mut tracer, &mut || false).await?;
        Ok((logits, tracer.finish().await?))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_blocking(&mut self, tokens: &[u32], pos0: u32, rows: LogitRows) -> Result<Logits> {
        pollster::block_on(self.forward(tokens, pos0, rows))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_traced_blocking(
        &mut self,
        tokens: &[u32],
        pos0: u32,
        rows: LogitRows,
    ) -> Result<(Logits, Vec<Traced>)> {
        pollster::block_on(self.forward_traced(tokens, pos0, rows))
    }

    async fn run(
        &mut self,
        tokens: &[u32],
        pos0: u32,
        rows: LogitRows,
        tr: &mut Tracer,
        cancelled: &mut dyn FnMut() -> bool,
    ) -> Result<Logits> {
        let cfg = &self.config;
        let fail = |reason: String| Err(Error::Unsupported { op: "forward".into(), reason });
        if tokens.is_empty() {
            return fail("no tokens".into());
        }
        if let Some(&t) = tokens.iter().find(|&&t| t >= cfg.vocab) {
            return fail(format!("token {t} is not below the vocabulary size {}", cfg.vocab));
        }
        if pos0 as u64 + tokens.len() as u64 > u32::MAX as u64 {
            return fail(format!("positions {pos0}+{} overflow u32", tokens.len()));
        }
        let vocab = cfg.vocab;
        let (max_chunk, logit_rows) = (self.scratch.max_chunk as usize, self.scratch.logit_rows);
        let first_pos = match rows {
            LogitRows::Last => pos0 + tokens.len() as u32 - 1,
            LogitRows::All => pos0,
        };
        let mut out = Logits { first_pos, n_rows: 0, vocab, values: Vec::new() };
        self.last_dispatches = 0;
        let n_chunks = tokens.len().div_ceil(max_chunk);
        for (c, chunk) in tokens.chunks(max_chunk).enumerate() {
            if cancelled() {
                return Err(Error::Cancelled);
            }
            let (n, pos) = (chunk.len() as u32, pos0 + (c * max_chunk) as u32);
            self.kv.check_chunk(&self.config, pos, n)?;
            self.ctx.set_phase(if n == 1 { Phase::Decode } else { Phase::Prefill });
            self.write_chunk_inputs(chunk, pos)?;
            let mut batch = self.ctx.batch(if n == 1 { "decode" } else { "prefill" });
            let cur = self.record_layers(&mut batch, n, pos, tr)?;
            // (first row, rows) groups of this chunk's logits, at most `logit_rows` each.
            let groups: Vec<(u32, u32)> = match rows {
                LogitRows::Last if c + 1 == n_chunks => vec![(n - 1, 1)],
                LogitRows::Last => Vec::new(),
                LogitRows::All => (0..n).step_by(logit_rows as usize).map(|f| (f, logit_rows.min(n - f))).collect(),
            };
            let mut pending = Some(batch);
            if groups.is_empty()
                && let Some(batch) = pending.take()
            {
                self.last_dispatches += batch.dispatches();
                batch.submit()?;
            }
            for &(first, count) in &groups {
                let mut batch = pending.take().unwrap_or_else(|| self.ctx.batch("logits"));
                self.record_head(&mut batch, cur, first, count, tr)?;
                self.last_dispatches += batch.dispatches();
                batch.submit()?;
                let bytes = count as u64 * vocab as u64 * 4;
                out.values.extend(scratch::map_read_f32(&self.ctx, &self.scratch.staging, bytes).await?);
                out.n_rows += count;
            }
            self.kv.next_pos = pos + n;
        }
        Ok(out)
    }
}

/// RoPE here rotates the whole head (`n_dims` = head dim, gemma4.md §3.4); refuse a file that says otherwise.
fn check_rope_dims(gguf: &GgufFile, cfg: &TextConfig) -> Result<()> {
    let prefix = cfg.arch.gguf_name();
    for (key, sliding) in [("rope.dimension_count", false), ("rope.dimension_count_swa", true)] {
        if let Ok(n_dims) = gguf.get_u32(&format!("{prefix}.{key}"))
            && let Some(l) = cfg.layers.iter().find(|l| l.sliding == sliding && l.head_dim != n_dims)
        {
            return Err(Error::Unsupported {
                op: "rope".into(),
                reason: format!("{prefix}.{key} = {n_dims} but layer {} has head dim {}", l.index, l.head_dim),
            });
        }
    }
    Ok(())
}
