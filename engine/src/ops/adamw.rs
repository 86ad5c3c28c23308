//! One AdamW step on f32 parameters in place (LoRA's A and B), as torch.optim.AdamW computes it: decoupled weight
//! decay, bias-corrected moments (`shaders/adamw.wgsl`). The gradient is scaled by a 1-element GPU buffer, so the
//! accumulation average and the global-norm clipping factor never travel to the host.

use super::WG_SIZE;
use super::args::{check_buffer, check_outputs, checked_u32};
use crate::gpu::kernels::{Access, KernelKey, Requires, VariantSource, defines_with, variants_of};
use crate::gpu::{Batch, GpuBuffer, GpuError, Grid, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AdamwKey;

/// Matches `Params` in `adamw.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AdamwParams {
    n_elems: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    bias1: f32,
    sqrt_bias2: f32,
}
const _: () = assert!(size_of::<AdamwParams>() == 32);

impl KernelKey for AdamwKey {
    const FILE: &'static str = "adamw.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::ReadWrite, Access::Read, Access::ReadWrite, Access::ReadWrite, Access::Read, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("adamw_f32_wg{WG_SIZE}")
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        defines_with(WG_SIZE, &[])
    }

    fn requires(&self) -> Requires {
        Requires::default()
    }

    fn all_variants() -> Vec<Self> {
        vec![AdamwKey]
    }
}

/// AdamW's hyperparameters, torch's names and defaults (`betas = (0.9, 0.999)`, `eps = 1e-8`, `weight_decay = 0.01`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamwConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamwConfig {
    fn default() -> Self {
        AdamwConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
}

/// The tensors of one step: parameters, their gradient, the two moments (`n_elems` f32 each), and the gradient's
/// scale (1 f32).
pub struct AdamwState<'a> {
    pub param: &'a GpuBuffer,
    pub grad: &'a GpuBuffer,
    pub m: &'a GpuBuffer,
    pub v: &'a GpuBuffer,
    pub grad_scale: &'a GpuBuffer,
    pub n_elems: u64,
}

/// Step `step` (1 for the first) of AdamW with learning rate `config.lr` (the schedule's value for this step).
pub fn adamw(batch: &mut Batch, config: &AdamwConfig, step: u32, s: &AdamwState) -> Result<()> {
    let op = "adamw";
    let bad = |reason: String| Err(GpuError::Unsupported { op: op.into(), reason });
    let c = config;
    if step == 0 {
        return bad("steps count from 1".into());
    }
    if !(c.lr.is_finite() && c.lr >= 0.0 && c.eps.is_finite() && c.eps > 0.0) {
        return bad(format!("lr must be finite and ≥ 0 and eps finite and > 0, got lr {} eps {}", c.lr, c.eps));
    }
    if !((0.0..1.0).contains(&c.beta1) && (0.0..1.0).contains(&c.beta2)) {
        return bad(format!("betas must be in [0, 1), got ({}, {})", c.beta1, c.beta2));
    }
    if !(c.weight_decay.is_finite() && c.weight_decay >= 0.0) {
        return bad(format!("weight_decay must be finite and ≥ 0, got {}", c.weight_decay));
    }
    let n = checked_u32(op, "n_elems", s.n_elems)?;
    for (what, buffer) in [("param", s.param), ("grad", s.grad), ("m", s.m), ("v", s.v)] {
        check_buffer(op, what, buffer, s.n_elems * 4)?;
    }
    check_buffer(op, "grad_scale", s.grad_scale, 4)?;
    // Every buffer distinct, the read-only ones too.
    check_outputs(op, &[], &[s.param, s.grad, s.m, s.v, s.grad_scale])?;
    if n == 0 {
        return Ok(());
    }
    // Bias corrections in f64: β^step underflows gracefully and 1 − β^step keeps its digits at small steps.
    let bias = |beta: f32| 1.0 - (beta as f64).powi(step.min(i32::MAX as u32) as i32);
    let params = AdamwParams {
        n_elems: n,
        lr: c.lr,
        beta1: c.beta1,
        beta2: c.beta2,
        eps: c.eps,
        weight_decay: c.weight_decay,
        bias1: bias(c.beta1) as f32,
        sqrt_bias2: bias(c.beta2).sqrt() as f32,
    };
    let grid = Grid::for_items(s.n_elems, WG_SIZE, batch.max_workgroups_per_dimension());
    batch.dispatch(&AdamwKey, &[s.param, s.grad, s.m, s.v, s.grad_scale], &params, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<AdamwKey>()
}
