//! Recording one chunk of the forward pass into a batch, reading like gemma4.md §3.8 (Gemma 3 per §5): every op
//! runs on the whole chunk at once. Embedding ×√H, the PLE inputs, then per layer: attention (q/k/v projections,
//! per-head norms, the unweighted V norm on Gemma 4, RoPE, the KV write on owner layers, attention over the own or
//! donor ring), attn_output, post-attention norm and residual; the GeGLU MLP, post-FFW norm and residual; the PLE
//! injection and the layer scale. The head (final norm, LM head over the `token_embd` parts, softcap) runs on the
//! rows the caller wants, copied out of the residual stream.

use super::Gemma;
use super::trace::Tracer;
use crate::error::Result;
use crate::gpu::Batch;
use crate::models::Arch;
use crate::ops::attention::{AttentionShape, attention};
use crate::ops::binary::{BinaryOp, StorageType, binary};
use crate::ops::glu::geglu;
use crate::ops::norm::rms_norm;
use crate::ops::rope::{RopeShape, rope_inplace};
use crate::ops::set_rows::set_rows;
use crate::ops::unary::{UnaryOp, mul_scalar, unary_inplace};

impl Gemma {
    /// Queues the host-side inputs of a chunk (token ids, positions, ring slots, PLE rows); they land before the
    /// next submission.
    pub(super) fn write_chunk_inputs(
        &self,
        source: &dyn crate::source::ByteSource,
        tokens: &[u32],
        pos0: u32,
    ) -> Result<()> {
        let n = tokens.len() as u32;
        let queue = self.ctx.queue();
        queue.write_buffer(self.scratch.tokens.raw(), 0, bytemuck::cast_slice(tokens));
        let positions: Vec<u32> = (pos0..pos0 + n).collect();
        queue.write_buffer(self.scratch.positions.raw(), 0, bytemuck::cast_slice(&positions));
        self.kv.write_slots(&self.ctx, pos0, n);
        if let Some(ple) = &self.ple {
            ple.upload_rows(&self.ctx, source, tokens)?;
        }
        Ok(())
    }

    /// Records the embedding and every layer for `n` tokens at `pos0..`; returns which residual buffer holds the
    /// last layer's output.
    pub(super) fn record_layers(&self, batch: &mut Batch, n: u32, pos0: u32, tr: &mut Tracer) -> Result<usize> {
        let (s, w, cfg) = (&self.scratch, &self.weights, &self.config);
        let hidden_elems = n as u64 * cfg.hidden as u64;
        w.token_embd.get_rows(batch, &s.tokens, n, &s.h[0])?;
        unary_inplace(batch, UnaryOp::Scale, (cfg.hidden as f32).sqrt(), &s.h[0], hidden_elems)?;
        tr.grab(batch, "embedding", &s.h[0], hidden_elems);
        if let Some(ple) = &self.ple {
            ple.record_inputs(batch, w, cfg, &s.h[0], &s.iota, n)?;
            tr.grab(batch, "per_layer_inputs", ple.inputs(), n as u64 * cfg.n_layers() as u64 * cfg.ple_dim as u64);
        }
        let mut cur = 0;
        for l in 0..cfg.n_layers() {
            cur = self.record_layer(batch, l, n, pos0, cur, tr)?;
        }
        Ok(cur)
    }

    /// One decoder layer (§3.2–§3.3) on the residual `h[cur]`; returns the buffer index of its output.
    fn record_layer(
        &self,
        batch: &mut Batch,
        l: usize,
        n: u32,
        pos0: u32,
        mut cur: usize,
        tr: &mut Tracer,
    ) -> Result<usize> {
        let (s, cfg) = (&self.scratch, &self.config);
        let layer = &self.weights.layers[l];
        let spec = &layer.spec;
        let (h, eps) = (cfg.hidden, cfg.rms_eps);
        let (nh, hd, nkv) = (cfg.n_head, spec.head_dim, spec.n_kv_head);
        let hidden_elems = n as u64 * h as u64;
        let name = |what: &str| format!("layer {l} {what}");
        tr.grab(batch, &name("input"), &s.h[cur], hidden_elems);

        // Attention (§3.3).
        rms_norm(batch, &s.h[cur], Some(&layer.attn_norm), &s.normed, n, h, eps)?;
        layer.attn_q.forward(batch, &s.normed, n, &s.q_raw)?;
        rms_norm(batch, &s.q_raw, Some(&layer.attn_q_norm), &s.q, n * nh, hd, eps)?;
        let freq_factors = if spec.sliding { None } else { self.weights.rope_freqs.as_ref() };
        let rope = |n_heads| RopeShape {
            n_tokens: n,
            n_heads,
            head_dim: hd,
            n_dims: hd,
            freq_base: spec.rope_base,
            freq_scale: 1.0 / spec.rope_scale,
        };
        rope_inplace(batch, &s.q, &s.positions, freq_factors, &rope(nh))?;
        tr.grab(batch, &name("q"), &s.q, n as u64 * (nh * hd) as u64);
        if let (Some(attn_k), Some(k_norm), Some(cache)) = (&layer.attn_k, &layer.attn_k_norm, &self.kv.layers[l]) {
            let kv_elems = n as u64 * (nkv * hd) as u64;
            attn_k.forward(batch, &s.normed, n, &s.k_raw)?;
            // K = V files (no attn_v): V is the raw K projection, taken before the K norm.
            let v_raw = match &layer.attn_v {
                Some(attn_v) => {
                    attn_v.forward(batch, &s.normed, n, &s.v_raw)?;
                    &s.v_raw
                }
                None => &s.k_raw,
            };
            rms_norm(batch, &s.k_raw, Some(k_norm), &s.k, n * nkv, hd, eps)?;
            rope_inplace(batch, &s.k, &s.positions, freq_factors, &rope(nkv))?;
            let v = match cfg.arch {
                Arch::Gemma4 => {
                    rms_norm(batch, v_raw, None, &s.v, n * nkv, hd, eps)?;
                    &s.v
                }
                Arch::Gemma3 => v_raw,
            };
            tr.grab(batch, &name("k"), &s.k, kv_elems);
            tr.grab(batch, &name("v"), v, kv_elems);
            let slots = &self.kv.slot_ids[cache.slots].1;
            let st = self.kv.storage_type();
            set_rows(batch, &s.k, slots, n, &cache.k, st, cache.capacity, nkv * hd)?;
            set_rows(batch, v, slots, n, &cache.v, st, cache.capacity, nkv * hd)?;
        }
        let cache = self.kv.for_layer(spec.kv_source);
        let shape = AttentionShape {
            n_tokens: n,
            n_head: nh,
            n_kv_head: nkv,
            head_dim: hd,
            kv_capacity: cache.capacity,
            q_pos0: pos0,
            window: spec.window.unwrap_or(0),
            scale: cfg.attention_scale,
            softcap: 0.0,
            cache_type: self.kv.cache_type,
        };
        attention(batch, &s.q, &cache.k, &cache.v, &s.heads, s.partials.as_ref(), &shape)?;
        tr.grab(batch, &name("attn_heads"), &s.heads, n as u64 * (nh * hd) as u64);
        layer.attn_output.forward(batch, &s.heads, n, &s.proj)?;
        tr.grab(batch, &name("attn_out"), &s.proj, hidden_elems);
        rms_norm(batch, &s.proj, Some(&layer.post_attention_norm), &s.post, n, h, eps)?;
        binary(batch, BinaryOp::Add, StorageType::F32, &s.h[cur], &s.post, &s.h[1 - cur], hidden_elems)?;
        cur = 1 - cur;
        tr.grab(batch, &name("attn_residual"), &s.h[cur], hidden_elems);

        // MLP.
        let ffn_elems = n as u64 * spec.ffn_dim as u64;
        rms_norm(batch, &s.h[cur], Some(&layer.ffn_norm), &s.normed, n, h, eps)?;
        layer.ffn_gate.forward(batch, &s.normed, n, &s.gate)?;
        layer.ffn_up.forward(batch, &s.normed, n, &s.up)?;
        geglu(batch, &s.gate, &s.up, &s.act, ffn_elems)?;
        layer.ffn_down.forward(batch, &s.act, n, &s.proj)?;
        tr.grab(batch, &name("mlp_out"), &s.proj, hidden_elems);
        rms_norm(batch, &s.proj, Some(&layer.post_ffw_norm), &s.post, n, h, eps)?;
        binary(batch, BinaryOp::Add, StorageType::F32, &s.h[cur], &s.post, &s.h[1 - cur], hidden_elems)?;
        cur = 1 - cur;
        tr.grab(batch, &name("mlp_residual"), &s.h[cur], hidden_elems);

        // PLE injection, after the MLP residual and before the layer scale.
        if let (Some(ple), Some([ple_l, gate, gated]), Some(inp_gate), Some(proj), Some(post_norm)) =
            (&self.ple, &s.ple_layer, &layer.inp_gate, &layer.proj, &layer.post_norm)
        {
            ple.record_layer(batch, l, n, ple_l)?;
            inp_gate.forward(batch, &s.h[cur], n, gate)?;
            geglu(batch, gate, ple_l, gated, n as u64 * cfg.ple_dim as u64)?;
            proj.forward(batch, gated, n, &s.proj)?;
            rms_norm(batch, &s.proj, Some(post_norm), &s.post, n, h, eps)?;
            tr.grab(batch, &name("ple_injection"), &s.post, hidden_elems);
            binary(batch, BinaryOp::Add, StorageType::F32, &s.h[cur], &s.post, &s.h[1 - cur], hidden_elems)?;
            cur = 1 - cur;
        }
        if let Some(scale) = &layer.layer_output_scale {
            mul_scalar(batch, &s.h[cur], scale, &s.h[1 - cur], hidden_elems)?;
            cur = 1 - cur;
        }
        tr.grab(batch, &name("output"), &s.h[cur], hidden_elems);
        Ok(cur)
    }

    /// The head on `rows` rows of the residual `h[cur]` starting at row `first`: final norm, LM head, softcap,
    /// and the copy of the logits into the mappable staging buffer.
    pub(super) fn record_head(
        &self,
        batch: &mut Batch,
        cur: usize,
        first: u32,
        rows: u32,
        tr: &mut Tracer,
    ) -> Result<()> {
        let (s, cfg) = (&self.scratch, &self.config);
        let row_bytes = cfg.hidden as u64 * 4;
        batch.copy(&s.h[cur], first as u64 * row_bytes, &s.head_in, 0, rows as u64 * row_bytes);
        rms_norm(batch, &s.head_in, Some(&self.weights.output_norm), &s.head_normed, rows, cfg.hidden, cfg.rms_eps)?;
        tr.grab(batch, "final_norm", &s.head_normed, rows as u64 * cfg.hidden as u64);
        let logit_elems = rows as u64 * cfg.vocab as u64;
        self.weights.lm_head().forward(batch, &s.head_normed, rows, &s.logits)?;
        if let Some(cap) = cfg.final_softcap {
            unary_inplace(batch, UnaryOp::Softcap, cap, &s.logits, logit_elems)?;
        }
        batch.copy(&s.logits, 0, &s.staging, 0, logit_elems * 4);
        Ok(())
    }
}
