//! The timed runs. Wall-clock times are synchronized: every forward call ends by reading back the last token's
//! logits, so a call's time covers its GPU work. GPU timing is off for the measured reps (it waits after every
//! submission); as many reps again with it on yield the kernel tables (summed over those reps) and, their median
//! against the untimed one, what timing costs.

use ferrogem::gpu::{Context, GpuTimes, Phase, TimingMethod};
use ferrogem::models::gemma::{Gemma, LogitRows};
use ferrogem::sampling::SplitMix64;
use indicatif::ProgressBar;
use serde::Serialize;
use std::time::Instant;

/// Decode steps in the warm-up: the first compiles the single-token pipelines, the second hits the bind groups.
const WARMUP_DECODE_TOKENS: usize = 2;

/// The token ids of one rep: the prompt, then one id per decode step (no sampling, as in llama-bench's tg).
pub struct Plan {
    pub prompt: Vec<u32>,
    pub decode: Vec<u32>,
    pub reps: u32,
}

impl Plan {
    /// Fixed pseudo-random ids below `vocab` (splitmix64 from a constant seed: every run feeds the same ids).
    pub fn new(vocab: u32, prompt_tokens: u32, gen_tokens: u32, reps: u32) -> Plan {
        let mut rng = SplitMix64(0x6265_6e63_685f_6964); // "bench_id"
        let mut next = move || (rng.next_u64() % vocab as u64) as u32;
        let prompt = (0..prompt_tokens).map(|_| next()).collect();
        let decode = (0..gen_tokens).map(|_| next()).collect();
        Plan { prompt, decode, reps }
    }

    /// Forward calls in the whole measurement (warm-up, untimed and timed reps), for the progress bar.
    pub fn total_calls(&self) -> u64 {
        let per_rep = 1 + self.decode.len() as u64;
        (1 + WARMUP_DECODE_TOKENS as u64) + 2 * self.reps as u64 * per_rep
    }
}

/// Work counters of one phase, per token (prefill: per prompt, decode: per decoded token).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub dispatches: f64,
    pub submissions: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Timing {
    Unavailable {
        reason: String,
    },
    Measured {
        method: TimingMethod,
        /// Wall times of the timed reps: what turning timing on costs.
        prefill_s: Vec<f64>,
        decode_s: Vec<f64>,
        /// Summed over the timed reps.
        prefill: GpuTimes,
        decode: GpuTimes,
    },
}

pub struct Measured {
    pub prefill_s: Vec<f64>,
    pub decode_s: Vec<f64>,
    /// Per prompt (all its chunks).
    pub prefill_counts: Counts,
    pub decode_counts: Counts,
    pub bind_hit_rate_prefill: f64,
    pub bind_hit_rate_decode: f64,
    /// Tracked GPU memory peak after the untimed reps (before timing's query buffers).
    pub memory_peak_bytes: u64,
    pub timing: Timing,
}

struct Run<'a> {
    ctx: &'a Context,
    model: &'a mut Gemma,
    bar: &'a ProgressBar,
}

impl Run<'_> {
    /// The prompt from position 0; returns its wall time.
    fn prefill(&mut self, prompt: &[u32]) -> ferrogem::Result<f64> {
        self.model.reset();
        let start = Instant::now();
        self.model.forward_blocking(prompt, 0, LogitRows::Last)?;
        self.bar.inc(1);
        Ok(start.elapsed().as_secs_f64())
    }

    /// One forward call per id after the prompt; returns the wall time and the dispatches recorded.
    fn decode(&mut self, first_pos: u32, ids: &[u32]) -> ferrogem::Result<(f64, u64)> {
        let start = Instant::now();
        let mut dispatches = 0;
        for (i, &id) in ids.iter().enumerate() {
            self.model.forward_blocking(&[id], first_pos + i as u32, LogitRows::Last)?;
            dispatches += self.model.last_dispatches as u64;
            self.bar.inc(1);
        }
        Ok((start.elapsed().as_secs_f64(), dispatches))
    }
}

pub fn run(ctx: &Context, model: &mut Gemma, plan: &Plan, bar: &ProgressBar) -> ferrogem::Result<Measured> {
    let mut run = Run { ctx, model, bar };
    let first_decode_pos = plan.prompt.len() as u32;
    bar.set_message("warm-up");
    run.prefill(&plan.prompt)?;
    run.decode(first_decode_pos, &plan.decode[..WARMUP_DECODE_TOKENS.min(plan.decode.len())])?;

    ctx.reset_bind_cache_counters();
    let (mut prefill_s, mut decode_s) = (Vec::new(), Vec::new());
    let (mut prefill_counts, mut decode_counts) = (Counts::default(), Counts::default());
    for rep in 0..plan.reps {
        bar.set_message(format!("rep {}/{}", rep + 1, plan.reps));
        let submissions_before = ctx.submissions();
        prefill_s.push(run.prefill(&plan.prompt)?);
        let submissions_mid = ctx.submissions();
        prefill_counts.dispatches += run.model.last_dispatches as f64;
        prefill_counts.submissions += (submissions_mid - submissions_before) as f64;
        let (seconds, dispatches) = run.decode(first_decode_pos, &plan.decode)?;
        decode_s.push(seconds);
        decode_counts.dispatches += dispatches as f64;
        decode_counts.submissions += (ctx.submissions() - submissions_mid) as f64;
    }
    let reps = plan.reps as f64;
    let decoded = reps * plan.decode.len() as f64;
    prefill_counts =
        Counts { dispatches: prefill_counts.dispatches / reps, submissions: prefill_counts.submissions / reps };
    decode_counts =
        Counts { dispatches: decode_counts.dispatches / decoded, submissions: decode_counts.submissions / decoded };
    let stats = ctx.bind_cache_stats();
    let hit_rate = |phase| stats.by_phase.iter().find(|(p, _)| *p == phase).map_or(0.0, |(_, c)| c.hit_rate());
    let memory_peak_bytes = ctx.memory().peak_bytes;

    let timing = match ctx.start_gpu_timing() {
        Err(e) => {
            bar.inc(plan.reps as u64 * (1 + plan.decode.len() as u64));
            Timing::Unavailable { reason: e.to_string() }
        }
        Ok(method) => {
            let timed = timed_reps(&mut run, plan, method);
            ctx.stop_gpu_timing();
            timed?
        }
    };
    Ok(Measured {
        prefill_s,
        decode_s,
        prefill_counts,
        decode_counts,
        bind_hit_rate_prefill: hit_rate(Phase::Prefill),
        bind_hit_rate_decode: hit_rate(Phase::Decode),
        memory_peak_bytes,
        timing,
    })
}

fn timed_reps(run: &mut Run, plan: &Plan, method: TimingMethod) -> ferrogem::Result<Timing> {
    let (mut prefill_s, mut decode_s) = (Vec::new(), Vec::new());
    let (mut prefill, mut decode) = (GpuTimes::default(), GpuTimes::default());
    for rep in 0..plan.reps {
        run.bar.set_message(format!("timed {}/{}", rep + 1, plan.reps));
        prefill_s.push(run.prefill(&plan.prompt)?);
        prefill.absorb(run.ctx.take_gpu_times());
        decode_s.push(run.decode(plan.prompt.len() as u32, &plan.decode)?.0);
        decode.absorb(run.ctx.take_gpu_times());
    }
    Ok(Timing::Measured { method, prefill_s, decode_s, prefill, decode })
}

/// (median, min, max) of `values`, which is not empty.
pub fn median_min_max(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
    (median, sorted[0], sorted[n - 1])
}
