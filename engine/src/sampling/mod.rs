//! Choosing the next token from logits: the sampler settings and where they come from, the sampler chain
//! ([`Sampler`]), and stop strings that span token boundaries ([`StopMatcher`]).
//!
//! Settings are layered as Ollama layers them: built-in defaults (Ollama's `api.DefaultOptions`), then the GGUF's
//! `general.sampling.*` keys (llama.cpp writes them from `generation_config.json`; gemma4.md §2.4 item 7), then an
//! Ollama params layer ([`SamplerConfig::apply_ollama_params`]), then whatever the caller sets.

mod rng;
mod sampler;
mod stop;

pub use rng::{SplitMix64, Xoshiro256};
pub use sampler::{Candidate, Sampler, SamplerState};
pub use stop::{StopMatcher, StopStep};

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, Value};

/// Temperature when neither the GGUF nor a params layer sets one (Ollama `api.DefaultOptions`).
pub const DEFAULT_TEMPERATURE: f32 = 0.8;
/// Ollama `api.DefaultOptions`.
pub const DEFAULT_TOP_K: u32 = 40;
/// Ollama `api.DefaultOptions`.
pub const DEFAULT_TOP_P: f32 = 0.9;
/// Off, as in Ollama (llama.cpp's own default is 0.05).
pub const DEFAULT_MIN_P: f32 = 0.0;
/// Off (1.0), as in Ollama and llama.cpp.
pub const DEFAULT_REPEAT_PENALTY: f32 = 1.0;
/// Ollama `api.DefaultOptions` and llama.cpp `penalty_last_n`.
pub const DEFAULT_REPEAT_LAST_N: u32 = 64;
/// Ollama's default seed is -1 (random); the engine has no entropy source, so the default is a fixed seed and the
/// same prompt gives the same text until a seed is chosen.
pub const DEFAULT_SEED: u64 = 0;
/// `repeat_last_n` meaning "the whole context", which llama.cpp and Ollama both spell -1.
pub const REPEAT_WHOLE_CONTEXT: u32 = u32::MAX;

/// The valid range of each real-valued setting, one function each: the command line parses with them and
/// [`SamplerConfig::validate`] checks with them, so every caller (the browser has no command line) gets the same
/// message for the same mistake. Each returns the value, or what is wrong with it.
pub mod ranges {
    pub fn temperature(t: f32) -> Result<f32, String> {
        check(t, t.is_finite() && t >= 0.0, "a finite number ≥ 0 (0 is greedy)")
    }

    pub fn top_p(p: f32) -> Result<f32, String> {
        check(p, (0.0..=1.0).contains(&p), "in [0, 1] (1 is off, 0 keeps only the most likely token)")
    }

    pub fn min_p(p: f32) -> Result<f32, String> {
        check(p, (0.0..=1.0).contains(&p), "in [0, 1] (0 is off)")
    }

    pub fn repeat_penalty(r: f32) -> Result<f32, String> {
        check(r, r.is_finite() && r > 0.0, "a finite number > 0 (1 is off)")
    }

    fn check(value: f32, valid: bool, range: &str) -> Result<f32, String> {
        if valid { Ok(value) } else { Err(format!("{value} is out of range: it must be {range}")) }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct SamplerConfig {
    /// ≥ 0; 0 picks the argmax.
    pub temperature: f32,
    /// 0 turns top-k off.
    pub top_k: u32,
    /// In [0, 1]; 1 turns top-p off.
    pub top_p: f32,
    /// In [0, 1]; 0 turns min-p off.
    pub min_p: f32,
    /// > 0; 1 turns the repetition penalty off.
    pub repeat_penalty: f32,
    /// How many of the most recent tokens the penalty looks at; 0 is none, [`REPEAT_WHOLE_CONTEXT`] all.
    pub repeat_last_n: u32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> SamplerConfig {
        SamplerConfig {
            temperature: DEFAULT_TEMPERATURE,
            top_k: DEFAULT_TOP_K,
            top_p: DEFAULT_TOP_P,
            min_p: DEFAULT_MIN_P,
            repeat_penalty: DEFAULT_REPEAT_PENALTY,
            repeat_last_n: DEFAULT_REPEAT_LAST_N,
            seed: DEFAULT_SEED,
        }
    }
}

impl SamplerConfig {
    /// Every setting within its range ([`ranges`]); the error names the setting.
    pub fn validate(&self) -> Result<()> {
        let settings = [
            ("temperature", ranges::temperature(self.temperature)),
            ("top_p", ranges::top_p(self.top_p)),
            ("min_p", ranges::min_p(self.min_p)),
            ("repeat_penalty", ranges::repeat_penalty(self.repeat_penalty)),
        ];
        match settings.into_iter().find_map(|(name, checked)| checked.err().map(|reason| (name, reason))) {
            Some((name, reason)) => Err(Error::Unsupported { op: format!("sampler setting `{name}`"), reason }),
            None => Ok(()),
        }
    }

    /// The defaults with every filter off and temperature 0: always the argmax.
    pub fn greedy() -> SamplerConfig {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 0,
            seed: 0,
        }
    }

    /// The defaults overridden by the GGUF's `general.sampling.{temp, top_k, top_p, min_p, penalty_repeat,
    /// penalty_last_n}` (gguf-py `Keys.General.SAMPLING_*`). A key of the wrong type or out of range is skipped, not
    /// an error: a suggestion in metadata should never stop a model from loading.
    pub fn from_gguf(gguf: &GgufFile) -> SamplerConfig {
        let mut config = SamplerConfig::default();
        let float = |key: &str| match gguf.get(key) {
            Some(Value::F32(x)) => Some(*x),
            Some(Value::F64(x)) => Some(*x as f32),
            Some(other) => other.as_integer().map(|i| i as f32),
            None => None,
        };
        let integer = |key: &str| gguf.get(key).and_then(Value::as_integer);
        if let Some(t) = float("general.sampling.temp").and_then(|t| ranges::temperature(t).ok()) {
            config.temperature = t;
        }
        if let Some(k) = integer("general.sampling.top_k") {
            config.top_k = u32::try_from(k).unwrap_or(if k < 0 { 0 } else { u32::MAX });
        }
        if let Some(p) = float("general.sampling.top_p").and_then(|p| ranges::top_p(p).ok()) {
            config.top_p = p;
        }
        if let Some(p) = float("general.sampling.min_p").and_then(|p| ranges::min_p(p).ok()) {
            config.min_p = p;
        }
        if let Some(r) = float("general.sampling.penalty_repeat").and_then(|r| ranges::repeat_penalty(r).ok()) {
            config.repeat_penalty = r;
        }
        if let Some(n) = integer("general.sampling.penalty_last_n").and_then(|n| last_n_from_signed(n).ok()) {
            config.repeat_last_n = n;
        }
        config
    }

    /// Applies an Ollama params layer (`application/vnd.ollama.image.params`, a JSON object such as
    /// `{"stop":["<turn|>"],"temperature":1,"top_k":64}`) and returns its stop strings. Keys that are not sampler
    /// settings (`num_ctx`, `num_predict`, …) are left to the caller. A negative `seed` (Ollama's "random") keeps
    /// the current seed; `repeat_last_n: -1` is the whole context; a negative `top_k` turns top-k off.
    pub fn apply_ollama_params(&mut self, params: &serde_json::Value) -> Result<Vec<String>> {
        let object = params.as_object().ok_or_else(|| bad_param("the params layer", "a JSON object", params))?;
        let mut stops = Vec::new();
        for (key, value) in object {
            match key.as_str() {
                "temperature" => self.temperature = param_in(key, value, ranges::temperature)?,
                "top_p" => self.top_p = param_in(key, value, ranges::top_p)?,
                "min_p" => self.min_p = param_in(key, value, ranges::min_p)?,
                "repeat_penalty" => self.repeat_penalty = param_in(key, value, ranges::repeat_penalty)?,
                "top_k" => self.top_k = u32::try_from(param_integer(key, value)?.max(0)).unwrap_or(u32::MAX),
                "repeat_last_n" => {
                    let n = param_integer(key, value)?;
                    self.repeat_last_n = last_n_from_signed(n.into())
                        .map_err(|_| bad_param(key, "an integer ≥ -1 (-1 is the whole context)", value))?;
                }
                "seed" => {
                    if let Ok(seed) = u64::try_from(param_integer(key, value)?) {
                        self.seed = seed;
                    }
                }
                "stop" => stops = param_strings(key, value)?,
                _ => {}
            }
        }
        Ok(stops)
    }
}

fn last_n_from_signed(n: i128) -> std::result::Result<u32, ()> {
    match n {
        -1 => Ok(REPEAT_WHOLE_CONTEXT),
        n => u32::try_from(n).map_err(|_| ()),
    }
}

fn bad_param(key: &str, expected: &str, found: &serde_json::Value) -> Error {
    Error::Unsupported {
        op: format!("Ollama params `{key}`"),
        reason: format!("expected {expected}, found {found}; fix or remove it in the model's params layer"),
    }
}

/// A number within the setting's range.
fn param_in(key: &str, value: &serde_json::Value, range: fn(f32) -> Result<f32, String>) -> Result<f32> {
    let x = value.as_f64().ok_or_else(|| bad_param(key, "a number", value))?;
    range(x as f32).map_err(|reason| bad_param(key, &format!("a number that is not out of range ({reason})"), value))
}

/// An integer, also when written as a float with no fraction (`40.0`): Ollama's params arrive through JSON,
/// where Go sees every number as float64.
fn param_integer(key: &str, value: &serde_json::Value) -> Result<i64> {
    if let Some(i) = value.as_i64() {
        return Ok(i);
    }
    match value.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Ok(x as i64),
        _ => Err(bad_param(key, "an integer", value)),
    }
}

fn param_strings(key: &str, value: &serde_json::Value) -> Result<Vec<String>> {
    match value {
        serde_json::Value::String(s) => Ok(vec![s.clone()]),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(|| bad_param(key, "an array of strings", value)))
            .collect(),
        _ => Err(bad_param(key, "an array of strings", value)),
    }
}
