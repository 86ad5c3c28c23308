//! The reference of a LoRA training step: the mean next-token cross-entropy of one batch and its gradient with
//! respect to every LoRA A and B, by candle-core's autograd through the reference forward with the updates applied
//! unmerged (`lora.rs`); everything else is frozen. And torch's AdamW on the host, to follow a few steps.

use super::Reference;
use super::lora::Unmerged;
use super::ops::cross_entropy;
use super::weights::err;
use candle_core::{Device, Result, Var};
use ferrogem::lora::{LoraAdapter, Target};

/// The gradient of one update, in the adapter's order: dA [rank][in_dim] and dB [out_dim][rank], row-major.
pub struct UpdateGrad {
    pub layer: u32,
    pub target: Target,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

/// One batch's loss and its gradients.
pub struct LoraGrads {
    pub loss: f64,
    pub grads: Vec<UpdateGrad>,
}

/// `torch.optim.AdamW`'s settings.
#[derive(Debug, Clone, Copy)]
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// Every A and B of an adapter as a `Var` (A, B per update, in the adapter's order), and the updates that apply,
/// unmerged on those Vars.
pub(super) struct LoraVars {
    pub vars: Vec<(Var, Var)>,
    pub updates: Vec<Unmerged>,
}

impl Reference {
    /// Mean next-token cross-entropy over the rows whose target is `Some` (row i of the logits of `tokens` predicts
    /// `targets[i]`) of the softcapped logits, and its gradient with respect to every A and B of `adapter` applied at
    /// `user_scale` (each update's own scale times it). Updates that change nothing (k/v of layers that read a
    /// donor's cache) get zero gradients.
    pub fn lora_loss_grads(
        &self,
        adapter: &LoraAdapter,
        user_scale: f32,
        tokens: &[u32],
        targets: &[Option<u32>],
    ) -> Result<LoraGrads> {
        if targets.len() != tokens.len() {
            return Err(err(format!("{} targets for {} tokens", targets.len(), tokens.len())));
        }
        let vocab = self.output.as_ref().unwrap_or(&self.token_embd).n_rows;
        if let Some(t) = targets.iter().flatten().find(|&&t| t as usize >= vocab) {
            return Err(err(format!("target {t} is outside the vocabulary of {vocab}")));
        }
        let trained = targets.iter().flatten().count();
        if trained == 0 {
            return Err(err("no row has a target"));
        }
        let LoraVars { vars, updates } = self.lora_vars(adapter, user_scale)?;
        let logits = self.forward_unmerged(tokens, &mut self.new_cache(), &updates)?.logits;
        // cross_entropy leaves out rows whose target is past the vocabulary.
        let targets: Vec<u32> = targets.iter().map(|t| t.unwrap_or(u32::MAX)).collect();
        let loss = (cross_entropy(&logits, &targets)?.sum_all()? / trained as f64)?;
        let store = loss.backward()?;
        let grad = |v: &Var| match store.get(v) {
            Some(g) => g.flatten_all()?.to_vec1::<f32>(),
            None => Ok(vec![0.0; v.elem_count()]),
        };
        let grads = adapter
            .updates
            .iter()
            .zip(&vars)
            .map(|(u, (a, b))| Ok(UpdateGrad { layer: u.layer, target: u.target, a: grad(a)?, b: grad(b)? }))
            .collect::<Result<_>>()?;
        Ok(LoraGrads { loss: loss.to_scalar::<f32>()? as f64, grads })
    }

    /// `adapter` at `user_scale` on Vars.
    pub(super) fn lora_vars(&self, adapter: &LoraAdapter, user_scale: f32) -> Result<LoraVars> {
        let mut vars = Vec::with_capacity(adapter.updates.len());
        let mut updates = Vec::new();
        for u in &adapter.updates {
            let (rank, in_dim, out_dim) = (u.rank as usize, u.in_dim as usize, u.out_dim as usize);
            let a = Var::from_slice(&u.a, (rank, in_dim), &Device::Cpu)?;
            let b = Var::from_slice(&u.b, (out_dim, rank), &Device::Cpu)?;
            if self.update_applies(u)? {
                let scale = (u.scale * user_scale) as f64;
                let (a, b) = (a.as_tensor().clone(), b.as_tensor().clone());
                updates.push(Unmerged { layer: u.layer as usize, target: u.target, a, b, scale });
            }
            vars.push((a, b));
        }
        Ok(LoraVars { vars, updates })
    }
}

/// One tensor's AdamW state: the f64 parameter and both moments.
struct Moments {
    p: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
}

impl Moments {
    fn new(values: &[f32]) -> Moments {
        Moments {
            p: values.iter().map(|&x| x as f64).collect(),
            m: vec![0.0; values.len()],
            v: vec![0.0; values.len()],
        }
    }

    /// Step `t` (from 1) of `torch.optim.AdamW` with gradient `g`.
    fn step(&mut self, g: &[f32], s: &AdamW, t: i32) {
        let (bc1, bc2) = (1.0 - s.beta1.powi(t), 1.0 - s.beta2.powi(t));
        for (((p, m), v), &g) in self.p.iter_mut().zip(&mut self.m).zip(&mut self.v).zip(g) {
            let g = g as f64;
            *p *= 1.0 - s.lr * s.weight_decay;
            *m = s.beta1 * *m + (1.0 - s.beta1) * g;
            *v = s.beta2 * *v + (1.0 - s.beta2) * g * g;
            *p -= s.lr / bc1 * *m / ((*v).sqrt() / bc2.sqrt() + s.eps);
        }
    }

    fn values(&self) -> Vec<f32> {
        self.p.iter().map(|&x| x as f32).collect()
    }
}

/// `steps` AdamW steps of `adapter` (at user scale 1) on the same batch, in f64 on the host: the loss before each
/// step and the adapter after. Updates that change nothing are left as they are: torch skips a parameter that got no
/// gradient, weight decay included.
pub fn adamw_steps(
    reference: &Reference,
    adapter: &LoraAdapter,
    tokens: &[u32],
    targets: &[Option<u32>],
    settings: AdamW,
    steps: u32,
) -> Result<(Vec<f64>, LoraAdapter)> {
    let mut current = adapter.clone();
    let mut state: Vec<(Moments, Moments)> =
        adapter.updates.iter().map(|u| (Moments::new(&u.a), Moments::new(&u.b))).collect();
    let mut losses = Vec::with_capacity(steps as usize);
    for t in 1..=steps as i32 {
        let LoraGrads { loss, grads } = reference.lora_loss_grads(&current, 1.0, tokens, targets)?;
        losses.push(loss);
        for ((u, (a, b)), g) in current.updates.iter_mut().zip(&mut state).zip(&grads) {
            if reference.update_applies(u)? {
                a.step(&g.a, &settings, t);
                b.step(&g.b, &settings, t);
                (u.a, u.b) = (a.values(), b.values());
            }
        }
    }
    Ok((losses, current))
}
