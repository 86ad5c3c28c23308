//! The measured run: load → prefill → decode → unload (or, profiling training, load → training steps → unload),
//! with what is needed between the steps (live buffers, bind-
//! group counters, dispatches, submissions, wgpu's own counters). A failure at any step is kept, not returned: the
//! trajectory up to it is the most useful output there is. It is async so that the browser can await the GPU;
//! natively the command blocks on it.

use ferrogem::gpu::{Context, Phase, PhaseCounters};
use ferrogem::lora::LoraAdapter;
use ferrogem::models::TextConfig;
use ferrogem::models::gemma::{Checkpointing, Gemma, GemmaOptions, LogitRows, LoraTrainer};
use ferrogem::ops::adamw::AdamwConfig;
use ferrogem::sampling::SplitMix64;
use serde::Serialize;

pub struct Settings {
    pub prompt_tokens: u32,
    pub gen_tokens: u32,
    pub options: GemmaOptions,
    /// Profile LoRA training instead of prefill and decode (the token counts are then unused).
    pub train: Option<TrainSettings>,
}

/// A training profile: `steps` AdamW steps of `adapter` on one synthetic sequence of `seq_len` tokens.
pub struct TrainSettings {
    pub adapter: LoraAdapter,
    pub seq_len: u32,
    pub steps: u32,
    pub checkpointing: Checkpointing,
}

/// The state right after one training step.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TrainStepRecord {
    pub loss: f64,
    pub live_buffers: u64,
    pub live_bytes: u64,
    pub train_bind_groups: PhaseCounters,
}

/// The accountant's live buffers and bytes against wgpu's (both relative to before the load).
#[derive(Debug, Clone, Serialize)]
pub struct CounterCheck {
    pub when: &'static str,
    pub accountant_buffers: i64,
    pub accountant_bytes: i64,
    pub wgpu_buffers: i64,
    pub wgpu_bytes: i64,
    pub agree: bool,
}

/// The state right after one decode step.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StepRecord {
    pub live_buffers: u64,
    pub live_bytes: u64,
    pub decode_bind_groups: PhaseCounters,
    pub dispatches: u32,
    pub submissions: u64,
}

#[derive(Default)]
pub struct Measured {
    pub prefill_dispatches: u32,
    pub prefill_submissions: u64,
    pub steps: Vec<StepRecord>,
    pub generated: Vec<u32>,
    pub train_steps: Vec<TrainStepRecord>,
    /// After load, decode and unload; empty in the browser, which can neither drain the queue nor read wgpu's
    /// counters.
    pub counters: Vec<CounterCheck>,
    pub error: Option<ferrogem::Error>,
}

/// Deterministic prompt ids spread over the vocabulary (splitmix64 from a fixed seed).
pub fn prompt_ids(n: u32, vocab: u32) -> Vec<u32> {
    let mut rng = SplitMix64(0x5eed);
    (0..n).map(|_| (rng.next_u64() % vocab as u64) as u32).collect()
}

fn argmax(row: &[f32]) -> u32 {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0 as u32
}

fn phase_counters(ctx: &Context, phase: Phase) -> PhaseCounters {
    ctx.bind_cache_stats().by_phase.into_iter().find(|(p, _)| *p == phase).map(|(_, c)| c).unwrap_or_default()
}

/// Checks the accountant against wgpu's own buffer counters, relative to before the load. Native only: the browser
/// has no blocking wait to drain the queue (uploads keep wgpu staging buffers alive until it drains), and wgpu's
/// WebGPU backend keeps no hal counters, so there no check is recorded.
#[cfg(not(target_arch = "wasm32"))]
struct CounterChecks {
    base: (i64, i64),
}

#[cfg(not(target_arch = "wasm32"))]
impl CounterChecks {
    fn start(ctx: &Context) -> ferrogem::Result<Self> {
        ctx.wait_idle()?;
        Ok(CounterChecks { base: ctx.wgpu_buffer_counters() })
    }

    fn check(&self, ctx: &Context, when: &'static str) -> ferrogem::Result<Option<CounterCheck>> {
        ctx.wait_idle()?;
        let memory = ctx.memory();
        let (buffers, bytes) = ctx.wgpu_buffer_counters();
        let (wgpu_buffers, wgpu_bytes) = (buffers - self.base.0, bytes - self.base.1);
        let (accountant_buffers, accountant_bytes) = (memory.live_buffers as i64, memory.live_bytes as i64);
        let agree = ferrogem::gpu::counters_agree((memory.live_buffers, memory.live_bytes), (wgpu_buffers, wgpu_bytes));
        Ok(Some(CounterCheck { when, accountant_buffers, accountant_bytes, wgpu_buffers, wgpu_bytes, agree }))
    }
}

#[cfg(target_arch = "wasm32")]
struct CounterChecks;

#[cfg(target_arch = "wasm32")]
impl CounterChecks {
    fn start(_: &Context) -> ferrogem::Result<Self> {
        Ok(CounterChecks)
    }

    fn check(&self, _: &Context, _: &'static str) -> ferrogem::Result<Option<CounterCheck>> {
        Ok(None)
    }
}

/// Measures one run. `load` loads the model onto `ctx` (the command's shows a progress bar; the browser's reads
/// over HTTP); `on_token(done, total)` is called with 0 once the prompt is prefilled and then after each decoded
/// token (training: after each step).
pub async fn run(
    ctx: &Context,
    config: &TextConfig,
    settings: &Settings,
    load: impl FnOnce() -> ferrogem::Result<Gemma>,
    on_token: &mut dyn FnMut(u32, u32),
) -> Measured {
    let mut measured = Measured::default();
    if let Err(e) = measure(ctx, config, settings, load, on_token, &mut measured).await {
        measured.error = Some(e);
    }
    ctx.set_phase(Phase::Idle);
    measured
}

async fn measure(
    ctx: &Context,
    config: &TextConfig,
    s: &Settings,
    load: impl FnOnce() -> ferrogem::Result<Gemma>,
    on_token: &mut dyn FnMut(u32, u32),
    measured: &mut Measured,
) -> ferrogem::Result<()> {
    if s.train.is_none() {
        if s.prompt_tokens == 0 {
            return Err(unsupported("--prompt-tokens must be at least 1".into()));
        }
        let needed = s.prompt_tokens as u64 + s.gen_tokens as u64;
        let n_ctx = s.options.n_ctx.min(config.context_length);
        if needed > n_ctx as u64 {
            let what = "the profile run".into();
            return Err(ferrogem::Error::ContextOverflow { what, needed_tokens: needed, n_ctx });
        }
    }
    let checks = CounterChecks::start(ctx)?;
    let mut gemma = load()?;
    measured.counters.extend(checks.check(ctx, "after load")?);
    let after = match &s.train {
        Some(t) => {
            train_steps(ctx, &mut gemma, t, on_token, measured).await?;
            "after training"
        }
        None => {
            prefill_and_decode(ctx, &mut gemma, s, on_token, measured).await?;
            "after decode"
        }
    };
    measured.counters.extend(checks.check(ctx, after)?);
    ctx.set_phase(Phase::Idle);
    drop(gemma);
    measured.counters.extend(checks.check(ctx, "after unload")?);
    Ok(())
}

fn unsupported(reason: String) -> ferrogem::Error {
    ferrogem::Error::Unsupported { op: "ferrogem profile".into(), reason }
}

async fn prefill_and_decode(
    ctx: &Context,
    gemma: &mut Gemma,
    s: &Settings,
    on_token: &mut dyn FnMut(u32, u32),
    m: &mut Measured,
) -> ferrogem::Result<()> {
    let prompt = prompt_ids(s.prompt_tokens, gemma.config.vocab);
    let submissions = ctx.submissions();
    let logits = gemma.forward(&prompt, 0, LogitRows::Last).await?;
    m.prefill_dispatches = gemma.last_dispatches;
    m.prefill_submissions = ctx.submissions() - submissions;
    on_token(0, s.gen_tokens);
    let mut next = argmax(logits.row(0));
    for step in 0..s.gen_tokens {
        let submissions = ctx.submissions();
        let logits = gemma.forward(&[next], s.prompt_tokens + step, LogitRows::Last).await?;
        m.generated.push(next);
        next = argmax(logits.row(0));
        let memory = ctx.memory();
        m.steps.push(StepRecord {
            live_buffers: memory.live_buffers,
            live_bytes: memory.live_bytes,
            decode_bind_groups: phase_counters(ctx, Phase::Decode),
            dispatches: gemma.last_dispatches,
            submissions: ctx.submissions() - submissions,
        });
        on_token(step + 1, s.gen_tokens);
    }
    Ok(())
}

/// AdamW steps on one deterministic sequence (every row trained, clipped at 1 like `finetune`'s default); the
/// trainer's buffers are freed before the model is unloaded.
async fn train_steps(
    ctx: &Context,
    gemma: &mut Gemma,
    t: &TrainSettings,
    on_step: &mut dyn FnMut(u32, u32),
    m: &mut Measured,
) -> ferrogem::Result<()> {
    let ids = prompt_ids(t.seq_len + 1, gemma.config.vocab);
    let (tokens, targets): (Vec<u32>, Vec<Option<u32>>) =
        (ids[..ids.len() - 1].to_vec(), ids[1..].iter().map(|&id| Some(id)).collect());
    let mut trainer = LoraTrainer::new(gemma, &t.adapter, 1.0, t.seq_len, t.checkpointing)?;
    let adamw = AdamwConfig { lr: 1e-4, weight_decay: 0.0, ..AdamwConfig::default() };
    on_step(0, t.steps);
    for step in 0..t.steps {
        let loss = trainer.loss_and_grads(gemma, &tokens, &targets).await?;
        trainer.adamw_step(gemma, &adamw, Some(1.0))?;
        let memory = ctx.memory();
        m.train_steps.push(TrainStepRecord {
            loss,
            live_buffers: memory.live_buffers,
            live_bytes: memory.live_bytes,
            train_bind_groups: phase_counters(ctx, Phase::Train),
        });
        on_step(step + 1, t.steps);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_ids_are_deterministic_and_in_the_vocabulary() {
        let ids = prompt_ids(100, 512);
        assert_eq!(ids, prompt_ids(100, 512));
        assert!(ids.iter().all(|&t| t < 512));
        assert!(ids.iter().collect::<std::collections::BTreeSet<_>>().len() > 50, "spread over the vocabulary");
        assert_eq!(argmax(&[0.5, 2.0, -1.0, 2.0]), 1, "the first of equal maxima");
    }
}
