//! The training forward, op by op as gemma4.md §3 writes it (no fused kernels: the backward needs the
//! intermediates they would hide), one layer at a time from its saved input; the head, the loss, and the head's
//! backward. Each LoRA-updated product is `W·x` then `+ B·u` with `u = scale·A·x` kept for dB.

use super::Step;
use super::buffers::TrainUpdate;
use crate::error::Result;
use crate::gpu::{Batch, GpuBuffer};
use crate::lora::Target;
use crate::models::Arch;
use crate::models::gemma::Linear;
use crate::models::gemma::weights::GateUp;
use crate::ops::attention::{AttentionShape, CacheType, attention};
use crate::ops::binary::{BinaryOp, StorageType, binary};
use crate::ops::cross_entropy::{CrossEntropyInput, cross_entropy, cross_entropy_back};
use crate::ops::get_rows::get_rows;
use crate::ops::glu::{GluOperand, geglu_rows};
use crate::ops::lora_add::{RowsView, lora_add};
use crate::ops::lora_down::{LoraDown, lora_down};
use crate::ops::rms_norm::rms_norm;
use crate::ops::rms_norm_back::rms_norm_back;
use crate::ops::rope::{RopeShape, rope};
use crate::ops::unary::{UnaryOp, mul_scalar, unary, unary_back, unary_inplace};
use crate::quant::QuantType;

impl Step<'_> {
    /// The embedding ×√H into `inputs[0]`, and the PLE inputs (§3.1).
    pub fn embed(&self, batch: &mut Batch) -> Result<()> {
        let (m, acts, n) = (self.model, &self.trainer.acts, self.n);
        let cfg = &m.config;
        let x = &acts.inputs[0];
        m.weights.token_embd.get_rows(batch, &acts.tokens, n, x)?;
        unary_inplace(batch, UnaryOp::Scale, (cfg.hidden as f32).sqrt(), x, n as u64 * cfg.hidden as u64)?;
        if let (Some(ple), Some(chunk)) = (&m.ple, &acts.ple) {
            // The first layer's gate and up are free until its FFN (Acts sizes them for this).
            let la = acts.layer(0);
            ple.record_inputs(batch, &m.weights, cfg, x, &acts.iota, n, chunk, [&la.gate, &la.up])?;
        }
        Ok(())
    }

    /// Layer `l` (§3.2–§3.3) from `inputs[l]` into `inputs[l + 1]`, leaving its intermediates in the activations.
    pub fn layer_forward(&self, batch: &mut Batch, l: usize) -> Result<()> {
        let (m, acts, n) = (self.model, &self.trainer.acts, self.n);
        let cfg = &m.config;
        let layer = &m.weights.layers[l];
        let spec = &layer.spec;
        let (h, eps) = (cfg.hidden, cfg.rms_eps);
        let (nh, hd, nkv) = (cfg.n_head, spec.head_dim, spec.n_kv_head);
        let (x, la) = (&acts.inputs[l], acts.layer(l));

        rms_norm(batch, x, Some(&layer.attn_norm), &la.a, n, h, eps)?;
        self.linear(batch, &layer.attn_q, l, Target::AttnQ, &la.a, &la.q_raw)?;
        rms_norm(batch, &la.q_raw, Some(&layer.attn_q_norm), &acts.q_normed, n * nh, hd, eps)?;
        rope(batch, &acts.q_normed, &la.q, &acts.iota, self.freq_factors(l), &self.rope_shape(l, nh))?;
        if let (Some(kv), Some(attn_k), Some(k_norm)) = (&acts.kv[l], &layer.attn_k, &layer.attn_k_norm) {
            self.linear(batch, attn_k, l, Target::AttnK, &la.a, &la.k_raw)?;
            // K = V layers (no attn_v): V is the raw K projection.
            let v_src = match &layer.attn_v {
                Some(attn_v) => {
                    self.linear(batch, attn_v, l, Target::AttnV, &la.a, &la.v_raw)?;
                    &la.v_raw
                }
                None => &la.k_raw,
            };
            rms_norm(batch, &la.k_raw, Some(k_norm), &acts.k_normed, n * nkv, hd, eps)?;
            rope(batch, &acts.k_normed, &kv.k, &acts.iota, self.freq_factors(l), &self.rope_shape(l, nkv))?;
            match cfg.arch {
                Arch::Gemma4 => rms_norm(batch, v_src, None, &kv.v, n * nkv, hd, eps)?,
                Arch::Gemma3 => batch.copy(v_src, 0, &kv.v, 0, n as u64 * (nkv * hd) as u64 * 4),
            }
        }
        let kv = self.kv_of(l)?;
        let shape = AttentionShape {
            n_tokens: n,
            n_head: nh,
            n_kv_head: nkv,
            head_dim: hd,
            kv_capacity: n,
            q_pos0: 0,
            window: spec.window.unwrap_or(0),
            scale: cfg.attention_scale,
            softcap: 0.0,
            cache_type: CacheType::F32,
        };
        attention(batch, &la.q, &kv.k, &kv.v, &la.heads, None, &shape)?;
        self.linear(batch, &layer.attn_output, l, Target::AttnOutput, &la.heads, &la.o)?;
        self.residual_add(batch, x, &la.o, &layer.post_attention_norm, &la.h1)?;

        rms_norm(batch, &la.h1, Some(&layer.ffn_norm), &la.g, n, h, eps)?;
        let ffn = layer.ffn_gate_up.ffn_dim();
        match &layer.ffn_gate_up {
            GateUp::Separate { gate, up } => {
                self.linear(batch, gate, l, Target::FfnGate, &la.g, &la.gate)?;
                self.linear(batch, up, l, Target::FfnUp, &la.g, &la.up)?;
            }
            GateUp::Stacked(w) => {
                w.forward(batch, &la.g, n, &acts.gate_up)?;
                for (target, first_col) in [(Target::FfnGate, 0), (Target::FfnUp, ffn)] {
                    let view = RowsView { buffer: &acts.gate_up, offset_elems: first_col, row_stride_elems: 2 * ffn };
                    self.lora_forward(batch, l, target, &la.g, view)?;
                }
                // The halves of each row, as rows 2t and 2t + 1 of a [2n][ffn] table.
                for (rows, half) in [(&acts.even_rows, &la.gate), (&acts.odd_rows, &la.up)] {
                    get_rows(batch, &acts.gate_up, QuantType::F32, ffn, 2 * n, rows, n, half)?;
                }
            }
        }
        geglu_rows(batch, GluOperand::contiguous(&la.gate, ffn), GluOperand::contiguous(&la.up, ffn), &la.act, n, ffn)?;
        self.linear(batch, &layer.ffn_down, l, Target::FfnDown, &la.act, &la.f)?;
        self.residual_add(batch, &la.h1, &la.f, &layer.post_ffw_norm, &la.h2)?;

        // PLE (§3.6): z = gelu(inp_gate·h2) ⊙ ple[l], h3 = h2 + norm(proj·z).
        let last = match (&acts.ple, &layer.inp_gate, &layer.proj, &layer.post_norm) {
            (Some(ple), Some(inp_gate), Some(proj), Some(post_norm)) => {
                let p = cfg.ple_dim;
                self.linear(batch, inp_gate, l, Target::InpGate, &la.h2, &la.pg)?;
                let table_rows = n * cfg.n_layers() as u32;
                get_rows(batch, ple.inputs(), QuantType::F32, p, table_rows, &acts.ple_rows[l], n, &la.ple_l)?;
                geglu_rows(
                    batch,
                    GluOperand::contiguous(&la.pg, p),
                    GluOperand::contiguous(&la.ple_l, p),
                    &la.z,
                    n,
                    p,
                )?;
                self.linear(batch, proj, l, Target::Proj, &la.z, &la.pj)?;
                self.residual_add(batch, &la.h2, &la.pj, post_norm, &acts.h3)?;
                &acts.h3
            }
            _ => &la.h2,
        };
        let out = &acts.inputs[l + 1];
        let hidden_elems = n as u64 * h as u64;
        match &layer.layer_output_scale {
            Some(scale) => mul_scalar(batch, last, scale, out, hidden_elems)?,
            None => batch.copy(last, 0, out, 0, hidden_elems * 4),
        }
        Ok(())
    }

    /// `dst = residual + rms_norm(x, weight)` (a post-norm and its residual add).
    fn residual_add(
        &self,
        batch: &mut Batch,
        residual: &GpuBuffer,
        x: &GpuBuffer,
        weight: &GpuBuffer,
        dst: &GpuBuffer,
    ) -> Result<()> {
        let (cfg, acts) = (&self.model.config, &self.trainer.acts);
        rms_norm(batch, x, Some(weight), &acts.normed, self.n, cfg.hidden, cfg.rms_eps)?;
        Ok(binary(
            batch,
            BinaryOp::Add,
            StorageType::F32,
            residual,
            &acts.normed,
            dst,
            self.n as u64 * cfg.hidden as u64,
        )?)
    }

    /// `y = W·x`, plus the trained update of (`l`, `target`) if there is one.
    fn linear(
        &self,
        batch: &mut Batch,
        w: &Linear,
        l: usize,
        target: Target,
        x: &GpuBuffer,
        y: &GpuBuffer,
    ) -> Result<()> {
        w.forward(batch, x, self.n, y)?;
        let view = RowsView { buffer: y, offset_elems: 0, row_stride_elems: w.rows };
        self.lora_forward(batch, l, target, x, view)
    }

    /// `y += B·u` with `u = scale·A·x` (kept for the backward).
    fn lora_forward(&self, batch: &mut Batch, l: usize, target: Target, x: &GpuBuffer, y: RowsView) -> Result<()> {
        let Some(u) = self.trainer.update(l, target) else { return Ok(()) };
        let n = self.n;
        let down = LoraDown { a: &u.a, rank_total: u.rank, in_dim: u.in_dim, x, n_tokens: n, k_parts: 1 };
        lora_down(batch, &down, &u.u)?;
        unary_inplace(batch, UnaryOp::Scale, u.scale, &u.u, n as u64 * u.rank as u64)?;
        let u_view = RowsView { buffer: &u.u, offset_elems: 0, row_stride_elems: u.rank };
        Ok(lora_add(batch, &u.b, 0, u.out_dim, u.rank, u_view, y, n)?)
    }

    pub fn rope_shape(&self, l: usize, n_heads: u32) -> RopeShape {
        let spec = &self.model.config.layers[l];
        RopeShape {
            n_tokens: self.n,
            n_heads,
            head_dim: spec.head_dim,
            n_dims: spec.head_dim,
            freq_base: spec.rope_base,
            freq_scale: 1.0 / spec.rope_scale,
        }
    }

    pub fn freq_factors(&self, l: usize) -> Option<&GpuBuffer> {
        match self.model.config.layers[l].sliding {
            true => None,
            false => self.model.weights.rope_freqs.as_ref(),
        }
    }

    /// The head on the last layer's output: final norm, then `head_rows` rows at a time the LM head, softcap, each
    /// row's loss, and the backward of those; leaves the gradient of the last layer's output in `d_res`.
    pub fn head_and_loss(&self, batch: &mut Batch) -> Result<()> {
        let (m, acts, n) = (self.model, &self.trainer.acts, self.n);
        let cfg = &m.config;
        let (h, eps) = (cfg.hidden, cfg.rms_eps);
        let last = &acts.inputs[cfg.n_layers()];
        rms_norm(batch, last, Some(&m.weights.output_norm), &acts.final_normed, n, h, eps)?;
        let mut first = 0;
        while first < n {
            let rows = acts.head_rows.min(n - first);
            self.head_rows(batch, first, rows)?;
            first += rows;
        }
        Ok(rms_norm_back(batch, last, Some(&m.weights.output_norm), &acts.d_hidden, &acts.d_res, n, h, eps)?)
    }

    /// Rows `first..first + rows` of the head and its backward, into `row_loss` and `d_hidden`.
    fn head_rows(&self, batch: &mut Batch, first: u32, rows: u32) -> Result<()> {
        let (m, acts) = (self.model, &self.trainer.acts);
        let cfg = &m.config;
        let (row_bytes, first_bytes) = (cfg.hidden as u64 * 4, first as u64 * 4);
        let logit_elems = rows as u64 * cfg.vocab as u64;
        batch.copy(&acts.final_normed, first as u64 * row_bytes, &acts.head_x, 0, rows as u64 * row_bytes);
        batch.copy(&acts.targets, first_bytes, &acts.head_targets, 0, rows as u64 * 4);
        batch.copy(&acts.row_weight, first_bytes, &acts.head_weight, 0, rows as u64 * 4);
        let head = m.weights.lm_head();
        head.forward(batch, &acts.head_x, rows, &acts.logits_raw)?;
        let logits = match cfg.final_softcap {
            Some(cap) => {
                unary(batch, UnaryOp::Softcap, cap, &acts.logits_raw, &acts.logits, logit_elems)?;
                &acts.logits
            }
            None => &acts.logits_raw,
        };
        let input = CrossEntropyInput { logits, targets: &acts.head_targets, n_rows: rows, n_elems: cfg.vocab };
        cross_entropy(batch, input, &acts.head_loss)?;
        batch.copy(&acts.head_loss, 0, &acts.row_loss, first_bytes, rows as u64 * 4);
        cross_entropy_back(batch, input, &acts.head_weight, &acts.d_logits)?;
        let d_raw = match cfg.final_softcap {
            Some(cap) => {
                let (x, dy, dx) = (&acts.logits_raw, &acts.d_logits, acts.d_logits_raw());
                unary_back(batch, UnaryOp::Softcap, cap, x, dy, dx, logit_elems)?;
                acts.d_logits_raw()
            }
            None => &acts.d_logits,
        };
        self.grad_x_rows(batch, head, d_raw, &acts.d_head_x, rows)?;
        batch.copy(&acts.d_head_x, 0, &acts.d_hidden, first as u64 * row_bytes, rows as u64 * row_bytes);
        Ok(())
    }

    pub fn update(&self, l: usize, target: Target) -> Option<&TrainUpdate> {
        self.trainer.update(l, target)
    }
}
