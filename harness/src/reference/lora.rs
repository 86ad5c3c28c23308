//! LoRA in the reference, two ways. For inference each update is merged into its dense weight, `W ← W + s·B·A` in
//! f32 (PEFT's `merge_and_unload`), so the forward pass is unchanged. For training it stays apart ([`Unmerged`]):
//! the layer's linear product adds `s·(x·Aᵀ)·Bᵀ`, as the GPU does, so autograd reaches A and B. The two orders of
//! the same math differ only by rounding.

use super::ops::mul_mat;
use super::weights::err;
use super::{Layer, Reference};
use candle_core::{Device, Result, Tensor};
use ferrogem::lora::{LowRank, Target};
use ferrogem::models::gemma::AppliedAdapter;

/// One update applied unmerged: A [rank][in] and B [out][rank] (candle `Var`s when training).
pub(super) struct Unmerged {
    pub layer: usize,
    pub target: Target,
    pub a: Tensor,
    pub b: Tensor,
    /// The update's own scale times the user's.
    pub scale: f64,
}

/// `x·Wᵀ` for x [n, in] plus `s·(x·Aᵀ)·Bᵀ` of every update in `updates` on (`layer`, `target`).
pub(super) fn linear(x: &Tensor, w: &Tensor, updates: &[Unmerged], layer: usize, target: Target) -> Result<Tensor> {
    let mut y = mul_mat(x, w)?;
    for u in updates.iter().filter(|u| (u.layer, u.target) == (layer, target)) {
        y = (y + (mul_mat(&mul_mat(x, &u.a)?, &u.b)? * u.scale)?)?;
    }
    Ok(y)
}

fn weight(layer: &Layer, target: Target) -> Option<&Tensor> {
    match target {
        Target::AttnQ => Some(&layer.attn_q),
        Target::AttnK => layer.attn_k.as_ref(),
        Target::AttnV => layer.attn_v.as_ref(),
        Target::AttnOutput => Some(&layer.attn_output),
        Target::FfnGate => Some(&layer.ffn_gate),
        Target::FfnUp => Some(&layer.ffn_up),
        Target::FfnDown => Some(&layer.ffn_down),
        Target::InpGate => layer.inp_gate.as_ref(),
        Target::Proj => layer.proj.as_ref(),
    }
}

fn weight_mut(layer: &mut Layer, target: Target) -> Option<&mut Tensor> {
    match target {
        Target::AttnQ => Some(&mut layer.attn_q),
        Target::AttnK => layer.attn_k.as_mut(),
        Target::AttnV => layer.attn_v.as_mut(),
        Target::AttnOutput => Some(&mut layer.attn_output),
        Target::FfnGate => Some(&mut layer.ffn_gate),
        Target::FfnUp => Some(&mut layer.ffn_up),
        Target::FfnDown => Some(&mut layer.ffn_down),
        Target::InpGate => layer.inp_gate.as_mut(),
        Target::Proj => layer.proj.as_mut(),
    }
}

impl Reference {
    /// Whether `u` changes the model: false for k/v updates of layers that read a donor's cache (they have no
    /// weight here and HF never uses those projections); an error when the model has no such weight or its shape
    /// is not `u`'s [out][in].
    pub(super) fn update_applies(&self, u: &LowRank) -> Result<bool> {
        let layer = self
            .layers
            .get(u.layer as usize)
            .ok_or_else(|| err(format!("{} is past the model's layers", u.describe())))?;
        let Some(w) = weight(layer, u.target) else {
            if !layer.spec.owns_kv() && matches!(u.target, Target::AttnK | Target::AttnV) {
                return Ok(false);
            }
            return Err(err(format!("{}: the model has no such weight", u.describe())));
        };
        if w.dims() != [u.out_dim as usize, u.in_dim as usize] {
            return Err(err(format!(
                "{}: update [{}, {}] for weight {:?}",
                u.describe(),
                u.out_dim,
                u.in_dim,
                w.dims()
            )));
        }
        Ok(true)
    }

    /// Merges every update of `adapters` into the weights (those that change nothing are left out).
    pub fn merge_adapters(&mut self, adapters: &[AppliedAdapter]) -> Result<()> {
        for applied in adapters {
            for u in &applied.adapter.updates {
                if !self.update_applies(u)? {
                    continue;
                }
                let a = Tensor::from_slice(&u.a, (u.rank as usize, u.in_dim as usize), &Device::Cpu)?;
                let b = Tensor::from_slice(&u.b, (u.out_dim as usize, u.rank as usize), &Device::Cpu)?;
                let delta = (b.matmul(&a)? * (u.scale * applied.scale) as f64)?;
                let w = weight_mut(&mut self.layers[u.layer as usize], u.target).expect("checked by update_applies");
                *w = (&*w + delta)?;
            }
        }
        Ok(())
    }
}
