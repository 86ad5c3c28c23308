//! The sampler chain, in the order of llama.cpp's default `common_params_sampling::samplers` with the samplers we
//! do not have (DRY, top-n-σ, typical, XTC) left out: repetition penalty → top-k → top-p → min-p → temperature →
//! one draw. As in llama.cpp, top-p and min-p therefore see the logits before the temperature is applied.
//!
//! Determinism: candidates are ordered by logit, then by id, so ties always go to the lowest id; the draw uses our
//! own seeded generator, one draw per token whenever the temperature is above 0.

use super::SamplerConfig;
use super::rng::Xoshiro256;
use crate::error::Result;
use std::borrow::Cow;
use std::cmp::Ordering;

/// A token that survived the filters, with its (penalized, pre-temperature) logit and its probability after the
/// temperature, normalized over the survivors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub logit: f32,
    pub probability: f64,
}

/// Everything a sampler needs to continue exactly where it stopped: its settings and its generator's state.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct SamplerState {
    pub config: SamplerConfig,
    pub rng_words: [u64; 4],
}

pub struct Sampler {
    config: SamplerConfig,
    rng: Xoshiro256,
}

impl Sampler {
    /// A sampler for `config`, refused (naming the setting) when a setting is out of range.
    pub fn new(config: SamplerConfig) -> Result<Sampler> {
        config.validate()?;
        let rng = Xoshiro256::seed_from_u64(config.seed);
        Ok(Sampler { config, rng })
    }

    pub fn state(&self) -> SamplerState {
        SamplerState { config: self.config.clone(), rng_words: self.rng.words }
    }

    /// A sampler resumed from a saved state, refused like [`new`](Self::new) when the state's settings are out of
    /// range (a snapshot file is input like any other).
    pub fn from_state(state: SamplerState) -> Result<Sampler> {
        state.config.validate()?;
        Ok(Sampler { config: state.config, rng: Xoshiro256::from_words(state.rng_words) })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// The next token. `recent` holds the previous tokens; the last `repeat_last_n` of them are penalized.
    /// NaN logits are never chosen. When nothing can be drawn from — temperature ≤ 0, every logit -inf, or a +inf
    /// logit — the result is the argmax (lowest id among ties); an empty or all-NaN slice gives id 0.
    pub fn sample(&mut self, logits: &[f32], recent: &[u32]) -> u32 {
        let candidates = self.candidates(logits, recent);
        let Some(first) = candidates.first() else { return 0 };
        if self.config.temperature <= 0.0 {
            return first.id;
        }
        let mut remaining = self.rng.next_unit_f64();
        for candidate in &candidates {
            remaining -= candidate.probability;
            if remaining < 0.0 {
                return candidate.id;
            }
        }
        // Rounding left a sliver of mass past the last candidate: it belongs to the last one.
        candidates[candidates.len() - 1].id
    }

    /// The tokens the next draw chooses among, after every filter, in draw order (by logit, highest first, when
    /// any filter sorted them; otherwise by id). Draws nothing.
    pub fn candidates(&self, logits: &[f32], recent: &[u32]) -> Vec<Candidate> {
        let c = &self.config;
        let logits = self.penalized(logits, recent);
        let mut pool: Vec<(u32, f32)> =
            logits.iter().enumerate().filter(|(_, l)| !l.is_nan()).map(|(id, &l)| (id as u32, l)).collect();
        let Some(best) = pool.iter().copied().min_by(by_logit_then_id) else { return Vec::new() };
        if c.temperature <= 0.0 || !best.1.is_finite() {
            return vec![Candidate { id: best.0, logit: best.1, probability: 1.0 }];
        }
        let top_k_applies = c.top_k > 0 && (c.top_k as usize) < pool.len();
        if top_k_applies {
            let k = c.top_k as usize;
            pool.select_nth_unstable_by(k - 1, by_logit_then_id);
            pool.truncate(k);
            pool.sort_unstable_by(by_logit_then_id);
        }
        if c.top_p < 1.0 {
            if !top_k_applies {
                pool.sort_unstable_by(by_logit_then_id);
            }
            let probabilities = softmax(&pool, 1.0);
            let mut cumulative = 0.0;
            let kept = probabilities
                .iter()
                .position(|&p| {
                    cumulative += p;
                    cumulative >= c.top_p as f64
                })
                .map_or(pool.len(), |i| i + 1);
            pool.truncate(kept);
        }
        if c.min_p > 0.0 {
            // p_i ≥ min_p · p_max  ⇔  logit_i ≥ logit_max + ln(min_p); the best token always passes.
            let threshold = best.1 + c.min_p.ln();
            pool.retain(|&(_, l)| l >= threshold);
        }
        softmax(&pool, c.temperature)
            .into_iter()
            .zip(&pool)
            .map(|(probability, &(id, logit))| Candidate { id, logit, probability })
            .collect()
    }

    /// llama.cpp's repetition penalty: each distinct token among the last `repeat_last_n` has its logit divided
    /// by the penalty when positive and multiplied by it when not, so a penalty above 1 always makes it less
    /// likely (however often it occurred).
    fn penalized<'a>(&self, logits: &'a [f32], recent: &[u32]) -> Cow<'a, [f32]> {
        let c = &self.config;
        let window = &recent[recent.len().saturating_sub(c.repeat_last_n as usize)..];
        if c.repeat_penalty == 1.0 || window.is_empty() {
            return Cow::Borrowed(logits);
        }
        let mut ids = window.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut out = logits.to_vec();
        for id in ids {
            if let Some(logit) = out.get_mut(id as usize) {
                *logit = if *logit <= 0.0 { *logit * c.repeat_penalty } else { *logit / c.repeat_penalty };
            }
        }
        Cow::Owned(out)
    }
}

/// Highest logit first, then lowest id.
fn by_logit_then_id(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Probabilities of `logits / temperature`, in f64 so that the draw's cumulative sum is exact enough for any
/// vocabulary size.
fn softmax(pool: &[(u32, f32)], temperature: f32) -> Vec<f64> {
    let max = pool.iter().map(|&(_, l)| l).fold(f32::NEG_INFINITY, f32::max) as f64;
    let t = temperature as f64;
    let weights: Vec<f64> = pool.iter().map(|&(_, l)| ((l as f64 - max) / t).exp()).collect();
    let total: f64 = weights.iter().sum();
    weights.into_iter().map(|w| w / total).collect()
}
