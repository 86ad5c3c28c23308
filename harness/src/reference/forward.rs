//! The forward pass of the reference, in the order of gemma4.md §3.1–§3.5 (Gemma 3 per §5): embedding ×√H, the
//! PLE inputs, each layer (attention, MLP, PLE injection, layer scale), the final norm, the LM head and softcap.
//! Everything is f32 on candle's CPU ops; a chunk of tokens runs layer by layer, as in prefill.

use super::lora::{self, Unmerged};
use super::ops::{attention, geglu, mul_mat, rms_norm, rope, softcap};
use super::weights::err;
use super::{Forward, KvCache, LM_HEAD_CHUNK_ROWS, Layer, LayerTrace, Reference};
use candle_core::{Result, Tensor};
use ferrogem::lora::Target;
use ferrogem::models::Arch;

impl Reference {
    /// An empty KV cache for [`forward_incremental`](Self::forward_incremental).
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(&self.config)
    }

    /// The whole prompt `tokens` at positions 0..n in one chunk (prefill).
    pub fn forward(&self, tokens: &[u32]) -> Result<Forward> {
        self.forward_incremental(tokens, &mut self.new_cache())
    }

    /// `tokens` at positions `cache.next_pos()..`, attending to what `cache` holds; owner layers append their
    /// K/V. One token per call is decode; the result equals [`forward`](Self::forward)'s rows for those positions.
    pub fn forward_incremental(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Forward> {
        self.forward_unmerged(tokens, cache, &[])
    }

    /// [`forward_incremental`](Self::forward_incremental) with LoRA `updates` added to the linear products they
    /// target (`lora.rs`); updates no product reads (k/v of layers reading a donor's cache) change nothing.
    pub(super) fn forward_unmerged(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        updates: &[Unmerged],
    ) -> Result<Forward> {
        if tokens.is_empty() {
            return Err(err("no tokens"));
        }
        let start = cache.next_pos();
        let cfg = &self.config;
        let embedding = (self.token_embd.rows(tokens)? * (cfg.hidden as f32).sqrt() as f64)?;
        let per_layer_inputs = self.per_layer_inputs(tokens, &embedding)?;
        let mut h = embedding.clone();
        let mut layers = Vec::with_capacity(self.layers.len());
        for (l, layer) in self.layers.iter().enumerate() {
            let ple = per_layer_inputs.as_ref().map(|p| p.narrow(1, l, 1)?.squeeze(1)).transpose()?;
            let trace = self.layer_forward(layer, &h, ple.as_ref(), start, cache, updates)?;
            h = trace.output.clone();
            layers.push(trace);
        }
        cache.finish_chunk(tokens.len())?;
        let final_norm = rms_norm(&h, Some(&self.output_norm), cfg.rms_eps)?;
        let head = self.output.as_ref().unwrap_or(&self.token_embd);
        let mut logits = head.matmul_t(&final_norm, LM_HEAD_CHUNK_ROWS)?;
        if let Some(cap) = cfg.final_softcap {
            logits = softcap(&logits, cap)?;
        }
        Ok(Forward { positions: start..start + tokens.len(), logits, embedding, per_layer_inputs, layers, final_norm })
    }

    /// §3.1 step 2: ple = (Norm(per_layer_model_proj · x / √H) + per_layer_token_embd[t] · √P) / √2, as [n, L, P].
    fn per_layer_inputs(&self, tokens: &[u32], embedding: &Tensor) -> Result<Option<Tensor>> {
        let (Some(table), Some(proj), Some(norm)) =
            (&self.per_layer_token_embd, &self.per_layer_model_proj, &self.per_layer_proj_norm)
        else {
            return Ok(None);
        };
        let cfg = &self.config;
        let (n, l, p) = (tokens.len(), cfg.n_layers(), cfg.ple_dim as usize);
        let e = (table.rows(tokens)?.reshape((n, l, p))? * (p as f32).sqrt() as f64)?;
        let c = (mul_mat(embedding, proj)? * (1.0 / (cfg.hidden as f32).sqrt()) as f64)?.reshape((n, l, p))?;
        let c = rms_norm(&c, Some(norm), cfg.rms_eps)?;
        Ok(Some(((c + e)? * std::f32::consts::FRAC_1_SQRT_2 as f64)?))
    }

    /// §3.2–§3.3: one layer on h [n, H] for positions `start..start + n`.
    fn layer_forward(
        &self,
        layer: &Layer,
        h: &Tensor,
        ple: Option<&Tensor>,
        start: usize,
        cache: &mut KvCache,
        updates: &[Unmerged],
    ) -> Result<LayerTrace> {
        let cfg = &self.config;
        let spec = &layer.spec;
        let eps = cfg.rms_eps;
        let n = h.dim(0)?;
        let (nh, hd, nkv) = (cfg.n_head as usize, spec.head_dim as usize, spec.n_kv_head as usize);
        let freqs = if spec.sliding { None } else { self.rope_freqs.as_deref() };
        let positions: Vec<u32> = (start as u32..(start + n) as u32).collect();
        let rope = |x: &Tensor| rope(x, &positions, hd, spec.rope_base, 1.0 / spec.rope_scale as f64, freqs);
        let linear = |x: &Tensor, w: &Tensor, target| lora::linear(x, w, updates, spec.index, target);

        let a = rms_norm(h, Some(&layer.attn_norm), eps)?;
        let q = linear(&a, &layer.attn_q, Target::AttnQ)?.reshape((n, nh, hd))?;
        let q = rope(&rms_norm(&q, Some(&layer.attn_q_norm), eps)?)?;
        let (k, v) = if spec.owns_kv() {
            let (Some(wk), Some(k_norm)) = (&layer.attn_k, &layer.attn_k_norm) else {
                return Err(err(format!("layer {} owns KV but has no attn_k / attn_k_norm", spec.index)));
            };
            let k_raw = linear(&a, wk, Target::AttnK)?.reshape((n, nkv, hd))?;
            // K = V files (no attn_v): V is the raw K projection, taken before the K norm.
            let v = match &layer.attn_v {
                Some(wv) => linear(&a, wv, Target::AttnV)?.reshape((n, nkv, hd))?,
                None => k_raw.clone(),
            };
            let v = if cfg.arch == Arch::Gemma4 { rms_norm(&v, None, eps)? } else { v };
            let k = rope(&rms_norm(&k_raw, Some(k_norm), eps)?)?;
            cache.append(spec.index, &k, &v)?;
            (Some(k), Some(v))
        } else {
            (None, None)
        };
        let (k_all, v_all, k_start) = cache.get(spec.kv_source)?;
        let key_positions: Vec<u64> = (k_start as u64..(k_start + k_all.dim(0)?) as u64).collect();
        let attn_heads =
            attention(&q, k_all, v_all, start as u64, &key_positions, spec.window, cfg.attention_scale, 0.0)?;
        let attn_out = linear(&attn_heads, &layer.attn_output, Target::AttnOutput)?;
        let attn_residual = (h + rms_norm(&attn_out, Some(&layer.post_attention_norm), eps)?)?;

        let g = rms_norm(&attn_residual, Some(&layer.ffn_norm), eps)?;
        let act = geglu(&linear(&g, &layer.ffn_gate, Target::FfnGate)?, &linear(&g, &layer.ffn_up, Target::FfnUp)?)?;
        let mlp_out = linear(&act, &layer.ffn_down, Target::FfnDown)?;
        let mlp_residual = (&attn_residual + rms_norm(&mlp_out, Some(&layer.post_ffw_norm), eps)?)?;

        let ple_injection = match (ple, &layer.inp_gate, &layer.proj, &layer.post_norm) {
            (Some(ple), Some(inp_gate), Some(proj), Some(post_norm)) => {
                let z = geglu(&linear(&mlp_residual, inp_gate, Target::InpGate)?, ple)?;
                Some(rms_norm(&linear(&z, proj, Target::Proj)?, Some(post_norm), eps)?)
            }
            (None, None, None, None) => None,
            _ => return Err(err(format!("layer {}: PLE inputs and PLE weights disagree", spec.index))),
        };
        let mut output = match &ple_injection {
            Some(inj) => (&mlp_residual + inj)?,
            None => mlp_residual.clone(),
        };
        if let Some(s) = layer.layer_output_scale {
            output = (output * s as f64)?;
        }
        Ok(LayerTrace {
            input: h.clone(),
            q,
            k,
            v,
            attn_heads,
            attn_out,
            attn_residual,
            mlp_out,
            mlp_residual,
            ple_injection,
            output,
        })
    }
}
