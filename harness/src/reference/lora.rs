//! LoRA in the reference: each update merged into its dense weight, `W ← W + s·B·A` in f32 (PEFT's
//! `merge_and_unload`), so the forward pass is unchanged. The GPU applies the same updates unmerged
//! (`W·x + s·B·(A·x)`); the two orders of the same math differ only by rounding.

use super::weights::err;
use super::{Layer, Reference};
use candle_core::{Device, Result, Tensor};
use ferrogem::lora::Target;
use ferrogem::models::gemma::AppliedAdapter;

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
    /// Merges every update of `adapters` into the weights. k/v updates of layers that read a donor's cache have
    /// no weight to merge into and change nothing, as in HF.
    pub fn merge_adapters(&mut self, adapters: &[AppliedAdapter]) -> Result<()> {
        for applied in adapters {
            for u in &applied.adapter.updates {
                let layer = self
                    .layers
                    .get_mut(u.layer as usize)
                    .ok_or_else(|| err(format!("{} is past the model's layers", u.describe())))?;
                let shared_kv = !layer.spec.owns_kv() && matches!(u.target, Target::AttnK | Target::AttnV);
                let Some(w) = weight_mut(layer, u.target) else {
                    if shared_kv {
                        continue;
                    }
                    return Err(err(format!("{}: the model has no such weight", u.describe())));
                };
                let a = Tensor::from_slice(&u.a, (u.rank as usize, u.in_dim as usize), &Device::Cpu)?;
                let b = Tensor::from_slice(&u.b, (u.out_dim as usize, u.rank as usize), &Device::Cpu)?;
                let delta = (b.matmul(&a)? * (u.scale * applied.scale) as f64)?;
                if delta.dims() != w.dims() {
                    return Err(err(format!("{}: update {:?} for weight {:?}", u.describe(), delta.dims(), w.dims())));
                }
                *w = (&*w + delta)?;
            }
        }
        Ok(())
    }
}
