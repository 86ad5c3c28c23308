//! The measured run: load → prefill → decode → unload, with what is needed between the steps (live buffers, bind-
//! group counters, dispatches, submissions, wgpu's own counters). A failure at any step is kept, not returned: the
//! trajectory up to it is the most useful output there is.

use crate::model_arg::load_with_progress;
use ferrogem::gpu::{Context, Phase, PhaseCounters, counters_agree};
use ferrogem::models::ModelFile;
use ferrogem::models::TextConfig;
use ferrogem::models::gemma::{Gemma, GemmaOptions, LogitRows};
use ferrogem::sampling::SplitMix64;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

pub struct Settings {
    pub prompt_tokens: u32,
    pub gen_tokens: u32,
    pub options: GemmaOptions,
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

fn decode_counters(ctx: &Context) -> PhaseCounters {
    ctx.bind_cache_stats().by_phase.into_iter().find(|(p, _)| *p == Phase::Decode).map(|(_, c)| c).unwrap_or_default()
}

fn check_counters(ctx: &Context, when: &'static str, base: (i64, i64)) -> ferrogem::Result<CounterCheck> {
    // Uploads keep wgpu staging buffers alive until the queue drains.
    ctx.wait_idle()?;
    let memory = ctx.memory();
    let (buffers, bytes) = ctx.wgpu_buffer_counters();
    let (wgpu_buffers, wgpu_bytes) = (buffers - base.0, bytes - base.1);
    let (accountant_buffers, accountant_bytes) = (memory.live_buffers as i64, memory.live_bytes as i64);
    let agree = counters_agree((memory.live_buffers, memory.live_bytes), (wgpu_buffers, wgpu_bytes));
    Ok(CounterCheck { when, accountant_buffers, accountant_bytes, wgpu_buffers, wgpu_bytes, agree })
}

pub fn run(ctx: &Context, model: &ModelFile, config: &TextConfig, s: &Settings) -> Measured {
    let mut measured = Measured::default();
    let result = (|| -> ferrogem::Result<()> {
        if s.prompt_tokens == 0 {
            return Err(unsupported("--prompt-tokens must be at least 1".into()));
        }
        let needed = s.prompt_tokens as u64 + s.gen_tokens as u64;
        let n_ctx = s.options.n_ctx.min(config.context_length);
        if needed > n_ctx as u64 {
            return Err(ferrogem::Error::ContextOverflow {
                what: "the profile run".into(),
                needed_tokens: needed,
                n_ctx,
            });
        }
        ctx.wait_idle()?;
        let base = ctx.wgpu_buffer_counters();
        let gemma = load_with_progress(ctx, model, s.options);
        let mut gemma = gemma?;
        measured.counters.push(check_counters(ctx, "after load", base)?);
        prefill_and_decode(ctx, &mut gemma, s, &mut measured)?;
        measured.counters.push(check_counters(ctx, "after decode", base)?);
        ctx.set_phase(Phase::Idle);
        drop(gemma);
        measured.counters.push(check_counters(ctx, "after unload", base)?);
        Ok(())
    })();
    if let Err(e) = result {
        measured.error = Some(e);
    }
    ctx.set_phase(Phase::Idle);
    measured
}

fn unsupported(reason: String) -> ferrogem::Error {
    ferrogem::Error::Unsupported { op: "ferrogem profile".into(), reason }
}

fn prefill_and_decode(ctx: &Context, gemma: &mut Gemma, s: &Settings, m: &mut Measured) -> ferrogem::Result<()> {
    let prompt = prompt_ids(s.prompt_tokens, gemma.config.vocab);
    let submissions = ctx.submissions();
    let logits = gemma.forward_blocking(&prompt, 0, LogitRows::Last)?;
    m.prefill_dispatches = gemma.last_dispatches;
    m.prefill_submissions = ctx.submissions() - submissions;
    let bar = ProgressBar::with_draw_target(Some(s.gen_tokens as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("decoding {bar:30} {pos}/{len} tokens ({per_sec})") {
        bar.set_style(style);
    }
    let mut next = argmax(logits.row(0));
    for step in 0..s.gen_tokens {
        let submissions = ctx.submissions();
        let logits = gemma.forward_blocking(&[next], s.prompt_tokens + step, LogitRows::Last)?;
        m.generated.push(next);
        next = argmax(logits.row(0));
        let memory = ctx.memory();
        m.steps.push(StepRecord {
            live_buffers: memory.live_buffers,
            live_bytes: memory.live_bytes,
            decode_bind_groups: decode_counters(ctx),
            dispatches: gemma.last_dispatches,
            submissions: ctx.submissions() - submissions,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
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
