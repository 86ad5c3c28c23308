//! The CPU reference model: Gemma 4 and Gemma 3 text decoders in f32 on candle-core, loaded from GGUF, written
//! top to bottom from `docs/gemma4.md` §3 and §5 and proven against HF transformers' float32 logits on
//! the golden tiny models (`golden_tests.rs`). It exists to judge the GPU engine: every per-layer intermediate
//! of every token comes back in [`Forward`], so a GPU run can be compared layer by layer.
//!
//! Weights are dequantized by candle (exactly as ggml does), so on a quantized file this is the exact-math
//! forward pass *of those quantized weights*, not of the original model. Vocabulary tables stay in their file
//! encoding ([`QuantTable`]) and are dequantized row by row or chunk by chunk.
//!
//! Files: `ops.rs` (one reference per op, shared with the op cases), `weights.rs` (loading), `forward.rs` (embedding,
//! PLE, layers, head), `attention.rs` (the KV cache with windows and donors), `lora.rs` (adapters merged, or unmerged
//! for training), `train.rs` (a LoRA training step's loss and gradients by autograd, and AdamW).

mod attention;
mod forward;
mod lora;
pub mod ops;
mod train;
mod weights;

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod train_tests;

pub use attention::KvCache;
pub use train::{AdamW, LoraGrads, UpdateGrad, adamw_steps};
pub use weights::{LM_HEAD_CHUNK_ROWS, QuantTable};

use candle_core::Tensor;
use ferrogem::models::{LayerSpec, TextConfig};

/// A Gemma text decoder with f32 weights. Fields are named after the GGUF tensors (without `.weight`); linear
/// weights are row-major [out][in] (GGUF dims [in, out]).
pub struct Reference {
    pub config: TextConfig,
    /// `token_embd`: the input embedding and, when `output` is absent, the tied LM head.
    pub token_embd: QuantTable,
    /// `output`: an untied LM head (some Gemma 3 files); Gemma 4 always ties.
    pub output: Option<QuantTable>,
    /// `per_layer_token_embd` [vocab][L·P], layer-major rows (Gemma 4 E-models only).
    pub per_layer_token_embd: Option<QuantTable>,
    /// `per_layer_model_proj` [L·P][H].
    pub per_layer_model_proj: Option<Tensor>,
    /// `per_layer_proj_norm` [P], shared by every layer's slice.
    pub per_layer_proj_norm: Option<Tensor>,
    pub output_norm: Tensor,
    /// `rope_freqs`: per-pair frequency divisors of full layers (1 = rotate, 1e30 = pass through).
    pub rope_freqs: Option<Vec<f32>>,
    pub layers: Vec<Layer>,
}

/// One decoder layer's weights. Norm weights are used raw (`rms(x) · w`): Gemma 3 files have the +1 baked in.
pub struct Layer {
    pub spec: LayerSpec,
    pub attn_norm: Tensor,
    pub attn_q: Tensor,
    /// Loaded on layers that own their KV cache only (shared layers' copies are unused).
    pub attn_k: Option<Tensor>,
    /// Absent when K = V (26B/31B full layers) and on shared layers: V is then the raw K projection.
    pub attn_v: Option<Tensor>,
    pub attn_output: Tensor,
    pub attn_q_norm: Tensor,
    pub attn_k_norm: Option<Tensor>,
    pub post_attention_norm: Tensor,
    pub ffn_norm: Tensor,
    pub ffn_gate: Tensor,
    pub ffn_up: Tensor,
    pub ffn_down: Tensor,
    pub post_ffw_norm: Tensor,
    /// PLE gate [P][H], up-projection `proj` [H][P] and its `post_norm` (Gemma 4 E-models).
    pub inp_gate: Option<Tensor>,
    pub proj: Option<Tensor>,
    pub post_norm: Option<Tensor>,
    /// `layer_output_scale`: multiplies the layer's whole output when present.
    pub layer_output_scale: Option<f32>,
}

/// The result of running `n` tokens at positions `positions`: logits and every intermediate, each `[n, …]`
/// with one row per token.
pub struct Forward {
    pub positions: std::ops::Range<usize>,
    /// Softcapped logits [n, vocab].
    pub logits: Tensor,
    /// `token_embd[t] · √H` [n, H].
    pub embedding: Tensor,
    /// The PLE inputs `ple[l]` [n, L, P] (§3.1), when the model has PLE.
    pub per_layer_inputs: Option<Tensor>,
    pub layers: Vec<LayerTrace>,
    /// `output_norm` applied to the last layer's output [n, H].
    pub final_norm: Tensor,
}

impl Forward {
    /// Every intermediate by the names the GPU trace uses: the embedding, the PLE inputs, each layer's trace
    /// (`layer {l} {field}`), and the final norm.
    pub fn named_intermediates(&self) -> Vec<(String, &Tensor)> {
        let mut out = vec![("embedding".to_owned(), &self.embedding)];
        out.extend(self.per_layer_inputs.iter().map(|t| ("per_layer_inputs".to_owned(), t)));
        for (l, t) in self.layers.iter().enumerate() {
            let fields = [
                ("input", Some(&t.input)),
                ("q", Some(&t.q)),
                ("k", t.k.as_ref()),
                ("v", t.v.as_ref()),
                ("attn_heads", Some(&t.attn_heads)),
                ("attn_out", Some(&t.attn_out)),
                ("attn_residual", Some(&t.attn_residual)),
                ("mlp_out", Some(&t.mlp_out)),
                ("mlp_residual", Some(&t.mlp_residual)),
                ("ple_injection", t.ple_injection.as_ref()),
                ("output", Some(&t.output)),
            ];
            out.extend(fields.into_iter().filter_map(|(name, t)| Some((format!("layer {l} {name}"), t?))));
        }
        out.push(("final_norm".to_owned(), &self.final_norm));
        out
    }
}

/// One layer's intermediates for the tokens of a [`Forward`] (§3.2 names in brackets).
pub struct LayerTrace {
    /// The layer's input [n, H] (`h`).
    pub input: Tensor,
    /// Queries after q-norm and RoPE [n, n_head, head_dim] (before any attention scale).
    pub q: Tensor,
    /// This chunk's keys after k-norm and RoPE, and values after the V norm (Gemma 4), [n, n_kv, head_dim]; `None`
    /// on layers that read a donor's cache.
    pub k: Option<Tensor>,
    pub v: Option<Tensor>,
    /// The heads' attention outputs concatenated, before `attn_output` [n, n_head · head_dim].
    pub attn_heads: Tensor,
    /// `attn_output` applied: the attention output before its post-norm [n, H] (`o`).
    pub attn_out: Tensor,
    /// The residual after attention [n, H] (`h1`).
    pub attn_residual: Tensor,
    /// `ffn_down` output before its post-norm [n, H] (`f`).
    pub mlp_out: Tensor,
    /// The residual after the MLP [n, H] (`h2` before PLE).
    pub mlp_residual: Tensor,
    /// The vector PLE adds, `Norm_post_norm(proj · z)` [n, H].
    pub ple_injection: Option<Tensor>,
    /// The layer's output after `layer_output_scale` [n, H] (`h_out`).
    pub output: Tensor,
}
