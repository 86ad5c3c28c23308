//! Bytes a decode step must read from device memory, the numerator of the decode roofline. Every text weight the
//! model put on the GPU is read once per token (each layer's matrices, the norms, and the LM head); the PLE table
//! is not on the GPU at all (its rows are gathered on the host), and an untied model's `token_embd` is only
//! row-gathered, so it counts one row. Attention reads the K and V of every position it sees, per layer, from the
//! layer's own or its donor's cache. LoRA adapters' A and B are read once per token too. Activations (a few
//! hidden-sized vectors per layer) are left out.

use ferrogem::models::gemma::Gemma;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct DecodeBytes {
    pub weights_bytes: u64,
    /// K and V read per token, averaged over the measured positions.
    pub kv_bytes: f64,
    pub total_bytes: f64,
}

/// What one decode step reads, averaged over the tokens at positions `first_pos..first_pos + n_tokens`.
pub fn per_decoded_token(model: &Gemma, first_pos: u32, n_tokens: u32) -> DecodeBytes {
    let w = &model.weights;
    let weights_bytes = match &w.output {
        Some(_) => {
            let embd = &w.token_embd;
            w.size_bytes() - embd.w.size_bytes() + embd.w.size_bytes() / embd.rows.max(1) as u64
        }
        None => w.size_bytes(),
    } + model.lora.as_ref().map_or(0, |l| l.size_bytes());
    let elem_bytes = model.kv.cache_type.elem_bytes();
    let kv_at = |pos: u32| -> u64 {
        let seen = |window: Option<u32>| window.map_or(pos as u64 + 1, |w| (pos as u64 + 1).min(w as u64));
        model
            .config
            .layers
            .iter()
            .map(|l| 2 * seen(l.window) * l.n_kv_head as u64 * l.head_dim as u64 * elem_bytes)
            .sum()
    };
    let kv_total: u64 = (first_pos..first_pos + n_tokens).map(kv_at).sum();
    let kv_bytes = kv_total as f64 / n_tokens.max(1) as f64;
    DecodeBytes { weights_bytes, kv_bytes, total_bytes: weights_bytes as f64 + kv_bytes }
}
