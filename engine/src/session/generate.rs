//! The sampling loop: prefill the prompt, then sample, stream and feed back one token at a time until a stop token,
//! a stop string, the token budget, the context's end, or the caller cancels. The loop never stops in the middle
//! of a token: cancellation is checked between tokens, so the cache always holds exactly `Session::cached`, and
//! between the prompt's chunks, so a long prompt stops within one chunk (the cache is then emptied).

use super::{Prefill, Session};
use crate::error::{Error, Result};
use crate::sampling::{Sampler, StopMatcher};
use crate::tokenizer::{DecodeSpecial, StreamDecoder};

/// What ends a generation besides the token budget.
#[derive(Debug, Clone, Default)]
pub struct GenerateParams {
    /// Tokens to sample at most.
    pub max_tokens: u32,
    /// Texts that end the generation; the stop text itself is not part of the output.
    pub stop_strings: Vec<String>,
    /// Ids that end the generation (not part of the output). Empty means the tokenizer's end-of-generation set.
    pub stop_tokens: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    MaxTokens,
    StopToken,
    StopString,
    /// The cache is full: the next token has no position.
    ContextFull,
    Cancelled,
}

impl StopReason {
    pub fn name(self) -> &'static str {
        match self {
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopToken => "stop_token",
            StopReason::StopString => "stop_string",
            StopReason::ContextFull => "context_full",
            StopReason::Cancelled => "cancelled",
        }
    }
}

/// Callbacks of [`Session::generate`]; the caller times the phases from them.
pub trait Observer {
    /// The prompt is in the cache and the first token is about to be sampled.
    fn prefilled(&mut self, _prefill: &Prefill) {}
    /// Text that is final (complete UTF-8, past any partial stop-string match).
    fn text(&mut self, _text: &str) {}
    /// Asked before each token; `true` stops the generation with [`StopReason::Cancelled`].
    fn cancelled(&mut self) -> bool {
        false
    }
}

#[derive(Debug, Clone)]
pub struct Generation {
    /// Sampled ids, stop token excluded.
    pub tokens: Vec<u32>,
    /// Their text as streamed (special tokens shown, stop string removed).
    pub text: String,
    pub stop: StopReason,
    /// The stop token, when `stop` is [`StopReason::StopToken`].
    pub stop_token: Option<u32>,
    pub prompt_tokens: u32,
    pub reused_tokens: u32,
}

impl Session {
    /// Generates after `prompt` (which replaces the cached sequence, reusing its common prefix).
    pub async fn generate(
        &mut self,
        prompt: &[u32],
        sampler: &mut Sampler,
        params: &GenerateParams,
        observer: &mut dyn Observer,
    ) -> Result<Generation> {
        let prefill = match self.set_sequence_cancellable(prompt, &mut || observer.cancelled()).await {
            Err(Error::Cancelled) => {
                return Ok(Generation {
                    tokens: Vec::new(),
                    text: String::new(),
                    stop: StopReason::Cancelled,
                    stop_token: None,
                    prompt_tokens: prompt.len() as u32,
                    reused_tokens: 0,
                });
            }
            prefill => prefill?,
        };
        observer.prefilled(&prefill);
        let stop_tokens = if params.stop_tokens.is_empty() {
            self.tokenizer.end_of_generation().to_vec()
        } else {
            params.stop_tokens.clone()
        };
        let mut stops = StopMatcher::new(params.stop_strings.clone());
        let mut decoder = StreamDecoder::new();
        let mut out = Generation {
            tokens: Vec::new(),
            text: String::new(),
            stop: StopReason::MaxTokens,
            stop_token: None,
            prompt_tokens: prompt.len() as u32,
            reused_tokens: prefill.reused_tokens,
        };
        let mut logits = prefill.logits;
        let repeat_window = sampler.config().repeat_last_n as usize;
        let mut stopped_by_string = false;
        while out.tokens.len() < params.max_tokens as usize {
            if observer.cancelled() {
                out.stop = StopReason::Cancelled;
                break;
            }
            let recent = &self.cached[self.cached.len().saturating_sub(repeat_window)..];
            let id = sampler.sample(&logits, recent);
            if stop_tokens.contains(&id) {
                out.stop = StopReason::StopToken;
                out.stop_token = Some(id);
                break;
            }
            out.tokens.push(id);
            let piece = decoder.push(&self.tokenizer, id, DecodeSpecial::Show);
            let step = stops.push(&piece);
            emit(&mut out, observer, &step.emit);
            if step.stopped {
                out.stop = StopReason::StopString;
                stopped_by_string = true;
                break;
            }
            if out.tokens.len() == params.max_tokens as usize {
                break;
            }
            if self.cached.len() as u64 + 1 > self.n_ctx() as u64 {
                out.stop = StopReason::ContextFull;
                break;
            }
            logits = self.push(id).await?;
        }
        if !stopped_by_string {
            let tail = decoder.finish();
            let mut step = stops.push(&tail);
            if !step.stopped {
                step.emit.push_str(&stops.finish());
            }
            emit(&mut out, observer, &step.emit);
        }
        if out.stop == StopReason::Cancelled {
            // Bind groups made for this generation go with it, so an interrupted run leaves GPU memory where it
            // found it (see `Context::clear_bind_cache`).
            self.model.context().clear_bind_cache();
        }
        Ok(out)
    }
}

fn emit(out: &mut Generation, observer: &mut dyn Observer, text: &str) {
    if !text.is_empty() {
        out.text.push_str(text);
        observer.text(text);
    }
}
