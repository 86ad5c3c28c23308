//! One layer's backward (docs/training.md §2), from the gradient of its output in `d_res` to the gradient of its
//! input in `d_res`, reading the layer's intermediates (kept by the forward, or recomputed by `layer_forward` just
//! before). A residual add
//! passes the gradient through, so `d_res` only ever grows: each branch adds its input gradient to it.

use super::Step;
use super::buffers::attention_back_shape;
use crate::error::{Error, Result};
use crate::gpu::{Batch, GpuBuffer};
use crate::lora::Target;
use crate::models::Arch;
use crate::models::gemma::Linear;
use crate::models::gemma::weights::GateUp;
use crate::ops::attention_back::{AttentionGrads, attention_back};
use crate::ops::binary::{BinaryOp, StorageType, binary};
use crate::ops::glu_back::geglu_back;
use crate::ops::mul_mat_grad::{MulMatShape, mul_mat_grad_w, mul_mat_grad_x};
use crate::ops::rms_norm_back::rms_norm_back;
use crate::ops::rope::rope_back;
use crate::ops::set_rows::set_rows;
use crate::ops::unary::{UnaryOp, mul_scalar, unary_inplace};
use crate::quant::QuantType;

impl Step<'_> {
    pub fn layer_backward(&self, batch: &mut Batch, l: usize) -> Result<()> {
        let (m, acts, n) = (self.model, &self.trainer.acts, self.n);
        let cfg = &m.config;
        let layer = &m.weights.layers[l];
        let spec = &layer.spec;
        let (h, eps) = (cfg.hidden, cfg.rms_eps);
        let (nh, hd, nkv) = (cfg.n_head, spec.head_dim, spec.n_kv_head);
        let hidden_elems = n as u64 * h as u64;
        let (x, la) = (&acts.inputs[l], acts.layer(l));

        if let Some(scale) = &layer.layer_output_scale {
            mul_scalar(batch, &acts.d_res, scale, &acts.sum, hidden_elems)?;
            batch.copy(&acts.sum, 0, &acts.d_res, 0, hidden_elems * 4);
        }
        if let (Some(inp_gate), Some(proj), Some(post_norm)) = (&layer.inp_gate, &layer.proj, &layer.post_norm) {
            let p = cfg.ple_dim;
            rms_norm_back(batch, &la.pj, Some(post_norm), &acts.d_res, &acts.d_hidden, n, h, eps)?;
            self.linear_back(batch, proj, l, Target::Proj, &la.z, &acts.d_hidden, &acts.d_ple, false)?;
            // The PLE inputs depend on the frozen embeddings only: their gradient (in tmp) is not used.
            geglu_back(batch, &la.pg, &la.ple_l, &acts.d_ple, &acts.d_ple2, &acts.tmp, n as u64 * p as u64)?;
            self.linear_back(batch, inp_gate, l, Target::InpGate, &la.h2, &acts.d_ple2, &acts.d_hidden, false)?;
            self.add_assign(batch, &acts.d_res, &acts.d_hidden, hidden_elems)?;
        }

        rms_norm_back(batch, &la.f, Some(&layer.post_ffw_norm), &acts.d_res, &acts.d_hidden, n, h, eps)?;
        self.linear_back(batch, &layer.ffn_down, l, Target::FfnDown, &la.act, &acts.d_hidden, acts.d_ffn(), false)?;
        let ffn = layer.ffn_gate_up.ffn_dim();
        let ffn_elems = n as u64 * ffn as u64;
        geglu_back(batch, &la.gate, &la.up, acts.d_ffn(), la.d_gate(), &acts.d_up, ffn_elems)?;
        match &layer.ffn_gate_up {
            GateUp::Separate { gate, up } => {
                self.linear_back(batch, gate, l, Target::FfnGate, &la.g, la.d_gate(), &acts.d_hidden, false)?;
                self.linear_back(batch, up, l, Target::FfnUp, &la.g, &acts.d_up, &acts.d_hidden, true)?;
            }
            GateUp::Stacked(w) => {
                for (rows, half) in [(&acts.even_rows, la.d_gate()), (&acts.odd_rows, &acts.d_up)] {
                    set_rows(batch, half, rows, n, acts.d_gate_up(), StorageType::F32, 2 * n, ffn)?;
                }
                self.grad_x(batch, w, acts.d_gate_up(), &acts.d_hidden, false)?;
                self.lora_back(batch, l, Target::FfnGate, &la.g, la.d_gate(), Some(&acts.d_hidden))?;
                self.lora_back(batch, l, Target::FfnUp, &la.g, &acts.d_up, Some(&acts.d_hidden))?;
            }
        }
        self.norm_back_into_res(batch, &la.h1, &layer.ffn_norm, &acts.d_hidden)?;

        rms_norm_back(batch, &la.o, Some(&layer.post_attention_norm), &acts.d_res, &acts.d_hidden, n, h, eps)?;
        self.linear_back(
            batch,
            &layer.attn_output,
            l,
            Target::AttnOutput,
            &la.heads,
            &acts.d_hidden,
            &acts.d_q,
            false,
        )?;
        // dk, dv go to the cache's owner; the first layer to reach it (the last reader) overwrites, later ones add.
        let kv = self.kv_of(l)?;
        let source = spec.kv_source;
        let first_reader = self.trainer.last_reader[source] == l;
        let (dk, dv) = if first_reader { (&kv.dk, &kv.dv) } else { (&acts.d_k, &acts.d_v) };
        let shape = attention_back_shape(cfg, spec, n);
        let grads = AttentionGrads {
            q: &la.q,
            k: &kv.k,
            v: &kv.v,
            d_out: &acts.d_q,
            dq: acts.d_q2(),
            dk,
            dv,
            probs: &acts.probs,
            dscores: &acts.dscores,
            parts: &acts.grad_partials,
        };
        attention_back(batch, &shape, &grads)?;
        let kv_elems = n as u64 * (nkv * hd) as u64;
        if !first_reader {
            self.add_assign(batch, &kv.dk, &acts.d_k, kv_elems)?;
            self.add_assign(batch, &kv.dv, &acts.d_v, kv_elems)?;
        }
        rope_back(batch, acts.d_q2(), &acts.d_q, &acts.iota, self.freq_factors(l), &self.rope_shape(l, nh))?;
        rms_norm_back(batch, &la.q_raw, Some(&layer.attn_q_norm), &acts.d_q, acts.d_q2(), n * nh, hd, eps)?;
        self.linear_back(batch, &layer.attn_q, l, Target::AttnQ, &la.a, acts.d_q2(), &acts.d_hidden, false)?;
        if let (Some(attn_k), Some(k_norm)) = (&layer.attn_k, &layer.attn_k_norm)
            && spec.owns_kv()
        {
            let v_src = if layer.attn_v.is_some() { &la.v_raw } else { &la.k_raw };
            // d(v_src) in d_v; the caches' gradients are complete: every reader comes after the owner.
            match cfg.arch {
                Arch::Gemma4 => rms_norm_back(batch, v_src, None, &kv.dv, &acts.d_v, n * nkv, hd, eps)?,
                Arch::Gemma3 => batch.copy(&kv.dv, 0, &acts.d_v, 0, kv_elems * 4),
            }
            rope_back(batch, &kv.dk, acts.d_k2(), &acts.iota, self.freq_factors(l), &self.rope_shape(l, nkv))?;
            rms_norm_back(batch, &la.k_raw, Some(k_norm), acts.d_k2(), &acts.d_k, n * nkv, hd, eps)?;
            match &layer.attn_v {
                Some(attn_v) => {
                    self.linear_back(batch, attn_v, l, Target::AttnV, &la.a, &acts.d_v, &acts.d_hidden, true)?
                }
                None => self.add_assign(batch, &acts.d_k, &acts.d_v, kv_elems)?,
            }
            self.linear_back(batch, attn_k, l, Target::AttnK, &la.a, &acts.d_k, &acts.d_hidden, true)?;
        }
        self.norm_back_into_res(batch, x, &layer.attn_norm, &acts.d_hidden)
    }

    /// `d_res += rms_norm_back(x, weight, dy)`: a pre-norm's branch joins the residual gradient.
    fn norm_back_into_res(&self, batch: &mut Batch, x: &GpuBuffer, weight: &GpuBuffer, dy: &GpuBuffer) -> Result<()> {
        let (cfg, acts) = (&self.model.config, &self.trainer.acts);
        rms_norm_back(batch, x, Some(weight), dy, &acts.tmp, self.n, cfg.hidden, cfg.rms_eps)?;
        self.add_assign(batch, &acts.d_res, &acts.tmp, self.n as u64 * cfg.hidden as u64)
    }

    /// The backward of `y = W·x (+ update)`: dx = dy·W (+ the update's part), overwritten or added to, and the
    /// update's dA, dB.
    #[allow(clippy::too_many_arguments)]
    fn linear_back(
        &self,
        batch: &mut Batch,
        w: &Linear,
        l: usize,
        target: Target,
        x: &GpuBuffer,
        dy: &GpuBuffer,
        dx: &GpuBuffer,
        accumulate: bool,
    ) -> Result<()> {
        self.grad_x(batch, w, dy, dx, accumulate)?;
        self.lora_back(batch, l, target, x, dy, Some(dx))
    }

    /// `dx (+)= dy·W` over the sequence's rows, for any base weight type (the quantized input gradient overwrites,
    /// so adding goes through `tmp`).
    fn grad_x(&self, batch: &mut Batch, w: &Linear, dy: &GpuBuffer, dx: &GpuBuffer, accumulate: bool) -> Result<()> {
        if accumulate && w.wtype != QuantType::F32 {
            let acts = &self.trainer.acts;
            self.product_grad_x(batch, w, dy, &acts.tmp, self.n, false)?;
            return self.add_assign(batch, dx, &acts.tmp, self.n as u64 * w.cols as u64);
        }
        self.product_grad_x(batch, w, dy, dx, self.n, accumulate)
    }

    /// `dx = dy·W` over `rows` rows.
    pub fn grad_x_rows(&self, batch: &mut Batch, w: &Linear, dy: &GpuBuffer, dx: &GpuBuffer, rows: u32) -> Result<()> {
        self.product_grad_x(batch, w, dy, dx, rows, false)
    }

    /// One `mul_mat_grad_x`; W must be one binding (not split on rows).
    fn product_grad_x(
        &self,
        batch: &mut Batch,
        w: &Linear,
        dy: &GpuBuffer,
        dx: &GpuBuffer,
        rows: u32,
        accumulate: bool,
    ) -> Result<()> {
        let [part] = w.w.parts.as_slice() else {
            return Err(Error::Unsupported {
                op: "training".into(),
                reason: format!(
                    "a {}×{} {} weight split into {} bindings; training needs each weight in one binding",
                    w.rows,
                    w.cols,
                    w.wtype,
                    w.w.parts.len()
                ),
            });
        };
        let shape = MulMatShape { m: w.rows, k: w.cols, n: rows };
        let partials = Some(&self.trainer.acts.grad_partials);
        Ok(mul_mat_grad_x(batch, shape, dy, part, w.wtype, dx, accumulate, partials)?)
    }

    /// The trained update of (`l`, `target`), if any: dB (+)= dyᵀ·u, g = scale·dy·B, dA (+)= gᵀ·x, and dx += g·A.
    fn lora_back(
        &self,
        batch: &mut Batch,
        l: usize,
        target: Target,
        x: &GpuBuffer,
        dy: &GpuBuffer,
        dx: Option<&GpuBuffer>,
    ) -> Result<()> {
        let Some(u) = self.update(l, target) else { return Ok(()) };
        let n = self.n;
        let outer = MulMatShape { m: u.out_dim, k: u.rank, n };
        let inner = MulMatShape { m: u.rank, k: u.in_dim, n };
        mul_mat_grad_w(batch, outer, dy, &u.u, &u.db, 1.0, self.accumulate)?;
        mul_mat_grad_x(batch, outer, dy, &u.b, QuantType::F32, &u.g, false, None)?;
        unary_inplace(batch, UnaryOp::Scale, u.scale, &u.g, n as u64 * u.rank as u64)?;
        mul_mat_grad_w(batch, inner, &u.g, x, &u.da, 1.0, self.accumulate)?;
        match dx {
            Some(dx) => Ok(mul_mat_grad_x(batch, inner, &u.g, &u.a, QuantType::F32, dx, true, None)?),
            None => Ok(()),
        }
    }

    /// `dst += src` over `elems` f32 (through `sum`: an op never reads and writes one buffer).
    fn add_assign(&self, batch: &mut Batch, dst: &GpuBuffer, src: &GpuBuffer, elems: u64) -> Result<()> {
        let sum = &self.trainer.acts.sum;
        binary(batch, BinaryOp::Add, StorageType::F32, dst, src, sum, elems)?;
        batch.copy(sum, 0, dst, 0, elems * 4);
        Ok(())
    }
}
