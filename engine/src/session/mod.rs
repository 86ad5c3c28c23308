//! A session is one model on the GPU, its tokenizer, and the token sequence whose K/V the cache holds. It is what
//! `generate` and `chat` run on: [`Session::set_sequence`] makes the cache hold a new prompt while reusing the
//! longest prefix it already holds (a chat's earlier turns), [`Session::push`] decodes one more token, and
//! [`generate`](Session::generate) runs the sampling loop with stop tokens, stop strings and cancellation.
//! [`snapshot`] saves and restores the cache and the sampler state.

mod generate;
pub mod snapshot;

pub use generate::{GenerateParams, Generation, Observer, StopReason};

use crate::error::{Error, Result};
use crate::models::gemma::{Gemma, LogitRows};
use crate::tokenizer::Tokenizer;

pub struct Session {
    model: Gemma,
    tokenizer: Tokenizer,
    /// Identifies the weights, so a snapshot is only restored into the model it came from.
    fingerprint: String,
    /// The ids at positions `0..` whose K/V the cache holds.
    cached: Vec<u32>,
}

/// What [`Session::set_sequence`] did.
#[derive(Debug, Clone)]
pub struct Prefill {
    /// Leading tokens whose K/V were already cached and were not recomputed.
    pub reused_tokens: u32,
    /// Tokens run through the model.
    pub computed_tokens: u32,
    /// The last token's logits.
    pub logits: Vec<f32>,
}

impl Session {
    /// `fingerprint` comes from [`snapshot::fingerprint`] of the file `model` was loaded from.
    pub fn new(model: Gemma, tokenizer: Tokenizer, fingerprint: String) -> Self {
        Session { model, tokenizer, fingerprint, cached: Vec::new() }
    }

    pub fn model(&self) -> &Gemma {
        &self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model itself, for a forward pass outside the session's sequence (a golden comparison); the cached
    /// sequence is forgotten first, since that pass overwrites the cache.
    pub fn model_mut(&mut self) -> &mut Gemma {
        self.reset();
        &mut self.model
    }

    /// Gives the model back (dropping it releases its GPU memory).
    pub fn into_model(self) -> Gemma {
        self.model
    }

    /// The ids whose K/V the cache holds, by position.
    pub fn cached(&self) -> &[u32] {
        &self.cached
    }

    /// Positions the cache holds: the full-attention layers' capacity.
    pub fn n_ctx(&self) -> u32 {
        let full = self.model.kv.layers.iter().flatten().map(|c| c.capacity).max();
        full.unwrap_or(self.model.config.context_length)
    }

    /// Forgets the cached sequence.
    pub fn reset(&mut self) {
        self.cached.clear();
        self.model.reset();
    }

    /// Makes the cache hold exactly `ids` and returns the last token's logits. The longest common prefix with what
    /// is cached is kept (at least the last token is recomputed, for its logits); when the sliding layers' rings no
    /// longer hold what that rewind needs, everything is recomputed.
    pub async fn set_sequence(&mut self, ids: &[u32]) -> Result<Prefill> {
        self.set_sequence_cancellable(ids, &mut || false).await
    }

    /// [`set_sequence`](Self::set_sequence), asking `cancelled` before each prompt chunk ([`Error::Cancelled`]).
    pub async fn set_sequence_cancellable(
        &mut self,
        ids: &[u32],
        cancelled: &mut dyn FnMut() -> bool,
    ) -> Result<Prefill> {
        if ids.is_empty() {
            return Err(Error::Unsupported { op: "prefill".into(), reason: "the prompt has no tokens".into() });
        }
        self.check_fits("the prompt", ids.len() as u64)?;
        let common = self.cached.iter().zip(ids).take_while(|(a, b)| a == b).count().min(ids.len() - 1);
        let rest = ids.len() - common;
        let reused = if self
            .model
            .kv
            .check_chunk(&self.model.config, common as u32, rest.min(self.max_chunk()) as u32)
            .is_ok()
        {
            common
        } else {
            0
        };
        self.cached.truncate(reused);
        let logits = self.forward(&ids[reused..], cancelled).await?;
        Ok(Prefill { reused_tokens: reused as u32, computed_tokens: (ids.len() - reused) as u32, logits })
    }

    /// Appends one token and returns its logits.
    pub async fn push(&mut self, id: u32) -> Result<Vec<f32>> {
        self.check_fits("the conversation", self.cached.len() as u64 + 1)?;
        self.forward(&[id], &mut || false).await
    }

    /// Runs `ids` after the cached sequence. The cache state is only extended once the forward pass succeeded.
    async fn forward(&mut self, ids: &[u32], cancelled: &mut dyn FnMut() -> bool) -> Result<Vec<f32>> {
        let pos0 = self.cached.len() as u32;
        let logits = self.model.forward_cancellable(ids, pos0, LogitRows::Last, cancelled).await;
        let logits = match logits {
            Ok(logits) => logits,
            Err(e) => {
                // A failed chunk may have overwritten ring slots: nothing cached can be trusted.
                self.reset();
                return Err(e);
            }
        };
        self.cached.extend_from_slice(ids);
        Ok(logits.values)
    }

    fn max_chunk(&self) -> usize {
        self.model.scratch.max_chunk as usize
    }

    fn check_fits(&self, what: &str, tokens: u64) -> Result<()> {
        let n_ctx = self.n_ctx();
        if tokens > n_ctx as u64 {
            return Err(Error::ContextOverflow { what: what.into(), needed_tokens: tokens, n_ctx });
        }
        Ok(())
    }
}
