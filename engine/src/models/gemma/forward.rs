//! Recording one chunk of the forward pass into a batch, reading like gemma4.md §3.8 (Gemma 3 per §5): every op
//! runs on the whole chunk at once. Embedding ×√H, the PLE inputs, then per layer: attention (q/k/v projections,
//! per-head norms and RoPE in one pass, on owner layers together with the unweighted V norm (Gemma 4) and the KV
//! write; attention over the own or donor ring), attn_output, post-attention norm and residual; the GeGLU MLP,
//! post-FFW norm and residual; the PLE injection and the layer scale. Each post-norm runs inside its residual add,
//! which also writes the pre-norm of the next consumer (`rms_norm_add`), and decoding fuses GeGLU into the gate/up
//! and PLE-gate products. The head (final norm, LM head over the `token_embd` parts, softcap) runs on the rows the
//! caller wants, copied out of the residual stream.
//!
//! The batch is handed to the GPU a few layers at a time (`EARLY_SUBMIT_DISPATCHES`), so a decode step's
//! recording on the host overlaps its execution instead of preceding it.
//!
//! Traces: `k` and `v` are read from the caches (chunks at position 0, f32 caches); `ple_injection` never exists
//! on its own (it is added inside `rms_norm_add`), so it is not traced.

use super::trace::Tracer;
use super::{Gemma, GroupUpdates, Linear, LoraInput};
use crate::error::Result;
use crate::gpu::{Batch, GpuBuffer};
use crate::lora::Target;
use crate::models::Arch;
use crate::ops::attention::{AttentionShape, CacheType, SplitKv, attention};
use crate::ops::glu::{GluOperand, geglu_rows};
use crate::ops::lora_add::RowsView;
use crate::ops::mul_mat::VEC_MAX_TOKENS;
use crate::ops::rms_norm::rms_norm;
use crate::ops::rms_norm_add::{NormAdd, rms_norm_add};
use crate::ops::rms_norm_rope::{KvWrite, NormRope, rms_norm_rope, rms_norm_rope_kv};
use crate::ops::rope::RopeShape;
use crate::ops::unary::{UnaryOp, unary_inplace};

/// Recorded dispatches after which a layer boundary submits them, so the GPU runs the first layers while the host
/// records the rest. Measured on the H200 with E2B-shaped Q4_K_M (perf/LOG.md, 2026-12-03): decode 116 tok/s with
/// one submit per step, 155 with 32 (13 submits per step), 152 with 96 (5).
pub const EARLY_SUBMIT_DISPATCHES: u32 = 32;

impl Gemma {
    /// Queues the host-side inputs of a chunk (token ids, positions, ring slots, PLE rows); they land before the
    /// next submission.
    pub(super) fn write_chunk_inputs(&self, tokens: &[u32], pos0: u32) -> Result<()> {
        let n = tokens.len() as u32;
        let queue = self.ctx.queue();
        queue.write_buffer(self.scratch.tokens.raw(), 0, bytemuck::cast_slice(tokens));
        let positions: Vec<u32> = (pos0..pos0 + n).collect();
        queue.write_buffer(self.scratch.positions.raw(), 0, bytemuck::cast_slice(&positions));
        self.kv.write_slots(&self.ctx, pos0, n);
        if let Some(ple) = &self.ple {
            ple.upload_rows(&self.ctx, self.source.as_ref(), tokens, ple.chunk())?;
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
            ple.record_inputs(batch, w, cfg, &s.h[0], &s.iota, n, ple.chunk(), ple.temps())?;
            tr.grab(
                batch,
                "per_layer_inputs",
                ple.chunk().inputs(),
                n as u64 * cfg.n_layers() as u64 * cfg.ple_dim as u64,
            );
        }
        // Layer 0's pre-norm; every later layer's comes out of the kernel that finishes the layer before it.
        if let Some(first) = w.layers.first() {
            rms_norm(batch, &s.h[0], Some(&first.attn_norm), &s.normed, n, cfg.hidden, cfg.rms_eps)?;
        }
        let mut cur = 0;
        for l in 0..cfg.n_layers() {
            cur = self.record_layer(batch, l, n, pos0, cur, tr)?;
            batch.submit_early(EARLY_SUBMIT_DISPATCHES)?;
        }
        Ok(cur)
    }

    /// One decoder layer (§3.2–§3.3) on the residual `h[cur]`, whose `attn_norm` is already in `normed`; returns the
    /// buffer index of its output and leaves the next layer's `attn_norm` of it in `normed`.
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
        let lora = self.lora.as_ref();
        // Decoding, the adds that write a pre-norm (q/k/v's, gate/up's) also make its LoRA group's `u`.
        let norm_down = |l: usize, input: LoraInput, mat_vec: bool| lora?.norm_down(l, input, n, mat_vec);
        tr.grab(batch, &name("input"), &s.h[cur], hidden_elems);

        // Attention (§3.3): the q/k/v products (with their LoRA updates), then per-head norms and RoPE in one pass;
        // on owner layers the K/V norms ride with the cache write.
        let owner = match (&layer.attn_k, &layer.attn_k_norm, &self.kv.layers[l]) {
            (Some(attn_k), Some(k_norm), Some(cache)) => Some((attn_k, k_norm, cache)),
            _ => None,
        };
        let split_k = Some(s.k_partials());
        // Layer 0's pre-norm comes from `rms_norm`, which makes no `u`.
        let qkv_u_made = l > 0 && norm_down(l, LoraInput::AttnNorm, true).is_some();
        let qkv = GroupUpdates::begin(lora, batch, l, LoraInput::AttnNorm, &s.normed, n, true, qkv_u_made)?;
        layer.attn_q.forward_lora(batch, &s.normed, n, &s.q_raw, qkv.epilogue(Target::AttnQ), split_k)?;
        if let Some((attn_k, _, _)) = owner {
            attn_k.forward_lora(batch, &s.normed, n, &s.k_raw, qkv.epilogue(Target::AttnK), split_k)?;
            if let Some(attn_v) = &layer.attn_v {
                attn_v.forward_lora(batch, &s.normed, n, &s.v_raw, qkv.epilogue(Target::AttnV), split_k)?;
            }
        }
        qkv.finish(batch, |t| match t {
            Target::AttnQ => Some(rows(&s.q_raw, 0, nh * hd)),
            Target::AttnK => Some(rows(&s.k_raw, 0, nkv * hd)),
            Target::AttnV => Some(rows(&s.v_raw, 0, nkv * hd)),
            _ => None,
        })?;
        let freq_factors = if spec.sliding { None } else { self.weights.rope_freqs.as_ref() };
        let norm_rope = |weight, n_heads| NormRope {
            weight,
            positions: &s.positions,
            freq_factors,
            shape: RopeShape {
                n_tokens: n,
                n_heads,
                head_dim: hd,
                n_dims: hd,
                freq_base: spec.rope_base,
                freq_scale: 1.0 / spec.rope_scale,
            },
            eps,
        };
        rms_norm_rope(batch, &s.q_raw, &s.q, &norm_rope(&layer.attn_q_norm, nh))?;
        tr.grab(batch, &name("q"), &s.q, n as u64 * (nh * hd) as u64);
        if let Some((_, k_norm, cache)) = owner {
            // K = V files (no attn_v): V is the raw K projection, taken before the K norm.
            let v_raw = if layer.attn_v.is_some() { &s.v_raw } else { &s.k_raw };
            let kv = KvWrite {
                v: v_raw,
                slots: &self.kv.slot_ids[cache.slots].1,
                k_cache: &cache.k,
                v_cache: &cache.v,
                cache_type: self.kv.storage_type(),
                n_dst_rows: cache.capacity,
                v_norm: cfg.arch == Arch::Gemma4,
            };
            rms_norm_rope_kv(batch, &s.k_raw, &norm_rope(k_norm, nkv), &kv)?;
            // The keys and values only exist in the caches; a chunk at position 0 fills the first slots in order,
            // so in an f32 cache (what `check model` traces) they are the caches' first rows.
            if pos0 == 0 && self.kv.cache_type == CacheType::F32 {
                let kv_elems = n as u64 * (nkv * hd) as u64;
                tr.grab(batch, &name("k"), &cache.k, kv_elems);
                tr.grab(batch, &name("v"), &cache.v, kv_elems);
            }
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
        // Decoding, the split attention's merge also makes o's LoRA `u`, a part per head.
        let heads_down = s.partials.as_ref().and(lora.and_then(|set| set.heads_down(l, n)));
        let split = s.partials.as_ref().map(|partials| SplitKv { partials, lora_down: heads_down });
        attention(batch, &s.q, &cache.k, &cache.v, &s.heads, split.as_ref(), &shape)?;
        tr.grab(batch, &name("attn_heads"), &s.heads, n as u64 * (nh * hd) as u64);
        let attn_out = ProjProduct {
            linear: &layer.attn_output,
            x: &s.heads,
            input: LoraInput::Heads,
            target: Target::AttnOutput,
            trace: Some("attn_out"),
        };
        self.record_proj_product(batch, l, n, &attn_out, heads_down.is_some(), tr)?;
        // Post-norms are folded into the residual adds, each also writing the pre-norm of what reads it next.
        let norm_add = |batch: &mut Batch,
                        cur: &mut usize,
                        weight: &GpuBuffer,
                        scale: Option<&GpuBuffer>,
                        next_norm: Option<(&GpuBuffer, &GpuBuffer)>,
                        lora_down| {
            let (residual, dst) = (&s.h[*cur], &s.h[1 - *cur]);
            *cur = 1 - *cur;
            let add = NormAdd { src: &s.proj, weight, residual, scale, dst, next_norm, lora_down };
            rms_norm_add(batch, &add, n, h, eps)
        };
        let gate_up = &layer.ffn_gate_up;
        let ffn_down = norm_down(l, LoraInput::FfnNorm, gate_up.takes_lora());
        let ffn_norm = Some((&layer.ffn_norm, &s.normed));
        norm_add(batch, &mut cur, &layer.post_attention_norm, None, ffn_norm, ffn_down)?;
        tr.grab(batch, &name("attn_residual"), &s.h[cur], hidden_elems);

        // MLP; GeGLU is fused into the gate/up product when decoding. A prompt's gate/up updates go between the
        // products and GeGLU.
        let ffn_u_made = ffn_down.is_some();
        let ffn =
            GroupUpdates::begin(lora, batch, l, LoraInput::FfnNorm, &s.normed, n, gate_up.takes_lora(), ffn_u_made)?;
        if ffn.after(Target::FfnGate) || ffn.after(Target::FfnUp) {
            let ffn_dim = gate_up.ffn_dim();
            gate_up.products(batch, &s.normed, n, &s.gate_up, None)?;
            ffn.finish(batch, |t| match t {
                Target::FfnGate => Some(rows(&s.gate_up, 0, 2 * ffn_dim)),
                Target::FfnUp => Some(rows(&s.gate_up, ffn_dim, 2 * ffn_dim)),
                _ => None,
            })?;
            gate_up.geglu_of_products(batch, n, &s.gate_up, &s.act)?;
        } else {
            gate_up.forward_geglu(batch, &s.normed, n, &s.gate_up, &s.act, ffn.geglu_epilogue())?;
        }
        let next_norm = self.weights.layers.get(l + 1).map(|next| (&next.attn_norm, &s.normed));
        let next_down = norm_down(l + 1, LoraInput::AttnNorm, true);
        let scale = layer.layer_output_scale.as_ref();
        let ple = match (&self.ple, &s.ple_layer, &layer.inp_gate, &layer.proj, &layer.post_norm) {
            (Some(ple), Some([gate, gated]), Some(inp_gate), Some(proj), Some(post_norm)) => {
                Some((ple, gate, gated, inp_gate, proj, post_norm))
            }
            _ => None,
        };
        let down_proj = ProjProduct {
            linear: &layer.ffn_down,
            x: &s.act,
            input: LoraInput::Act,
            target: Target::FfnDown,
            trace: Some("mlp_out"),
        };
        self.record_proj_product(batch, l, n, &down_proj, false, tr)?;
        // Without PLE the MLP's residual add is the layer's last: the layer scale and the next pre-norm ride on it.
        match ple {
            Some(_) => norm_add(batch, &mut cur, &layer.post_ffw_norm, None, None, None)?,
            None => norm_add(batch, &mut cur, &layer.post_ffw_norm, scale, next_norm, next_down)?,
        }
        if ple.is_some() || scale.is_none() {
            tr.grab(batch, &name("mlp_residual"), &s.h[cur], hidden_elems);
        }

        // PLE injection (its post-norm, the layer scale and the next pre-norm in the last add): z = gelu(inp_gate·h)
        // ⊙ ple[l], read in place from the token-major PLE inputs; fused into the gate product when decoding.
        if let Some((ple, gate, gated, inp_gate, proj, post_norm)) = ple {
            let p = cfg.ple_dim;
            let row_stride_elems = cfg.n_layers() as u32 * p;
            let ple_l = GluOperand { buffer: ple.chunk().inputs(), offset_elems: l as u32 * p, row_stride_elems };
            let residual = &s.h[cur];
            let gate_updates = GroupUpdates::begin(lora, batch, l, LoraInput::Residual, residual, n, true, false)?;
            if n <= VEC_MAX_TOKENS {
                inp_gate.forward_geglu_vec(batch, residual, n, gated, ple_l, gate_updates.epilogue(Target::InpGate))?;
            } else {
                inp_gate.forward_lora(batch, residual, n, gate, None, split_k)?;
                gate_updates.finish(batch, |t| (t == Target::InpGate).then(|| rows(gate, 0, p)))?;
                geglu_rows(batch, GluOperand::contiguous(gate, p), ple_l, gated, n, p)?;
            }
            let proj =
                ProjProduct { linear: proj, x: gated, input: LoraInput::PleGated, target: Target::Proj, trace: None };
            self.record_proj_product(batch, l, n, &proj, false, tr)?;
            norm_add(batch, &mut cur, post_norm, scale, next_norm, next_down)?;
        }
        tr.grab(batch, &name("output"), &s.h[cur], hidden_elems);
        Ok(cur)
    }

    /// A one-target product into `proj` that a residual add normalizes next: its update rides in the product's
    /// epilogue (`u_made`: the kernel that wrote x made `u`) or follows it, and the product is traced.
    fn record_proj_product(
        &self,
        batch: &mut Batch,
        l: usize,
        n: u32,
        p: &ProjProduct,
        u_made: bool,
        tr: &mut Tracer,
    ) -> Result<()> {
        let (lora, proj) = (self.lora.as_ref(), &self.scratch.proj);
        let updates = GroupUpdates::begin(lora, batch, l, p.input, p.x, n, true, u_made)?;
        p.linear.forward_lora(batch, p.x, n, proj, updates.epilogue(p.target), Some(self.scratch.k_partials()))?;
        updates.finish(batch, |t| (t == p.target).then(|| rows(proj, 0, p.linear.rows)))?;
        if let Some(what) = p.trace {
            tr.grab(batch, &format!("layer {l} {what}"), proj, n as u64 * p.linear.rows as u64);
        }
        Ok(())
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

/// A product of one LoRA target that reads `x` ([`Gemma::record_proj_product`]); `trace`: its name in traces.
struct ProjProduct<'a> {
    linear: &'a Linear,
    x: &'a GpuBuffer,
    input: LoraInput,
    target: Target,
    trace: Option<&'static str>,
}

/// Columns `first_col..` of `[n][row_elems]` rows of `buffer`.
fn rows(buffer: &GpuBuffer, first_col: u32, row_elems: u32) -> RowsView<'_> {
    RowsView { buffer, offset_elems: first_col, row_stride_elems: row_elems }
}
