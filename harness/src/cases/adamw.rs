//! Cases for `adamw`: two steps on the same parameters (so the second reads the first's moments), against
//! torch.optim.AdamW's update written out in f64 (`reference`). The checked output is the parameters; each case
//! sizes them so that the term it is about moves them visibly: Adam's step (parameters ~lr), the decoupled decay
//! (lr·weight_decay = 0.1), and a clipped and averaged gradient (grad_scale ≠ 1).

use super::{Built, CaseResult, GUARD_ELEMS, GUARD_VALUE, OpCase, OutType, seeded, upload_f32};
use crate::tolerance::max_nmse;
use ferrogem::gpu::Context;
use ferrogem::ops::adamw::{AdamwConfig, AdamwState, adamw};
use std::rc::Rc;

pub struct AdamwCase {
    n: usize,
    config: AdamwConfig,
    /// Initial parameters are uniform in [-param_scale, param_scale).
    param_scale: f32,
    grad_scale: f32,
    /// The first of the two steps.
    first_step: u32,
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let torch = AdamwConfig::default();
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for n in [1, 7, 1000, 16385] {
        cases.push(Box::new(AdamwCase { n, config: torch, param_scale: 1e-3, grad_scale: 1.0, first_step: 1 }));
    }
    let decay = AdamwConfig { lr: 0.1, weight_decay: 1.0, ..torch };
    cases.push(Box::new(AdamwCase { n: 1000, config: decay, param_scale: 1.0, grad_scale: 1.0, first_step: 1 }));
    let late = AdamwConfig { lr: 2e-4, beta1: 0.8, beta2: 0.95, eps: 1e-6, weight_decay: 0.0 };
    cases.push(Box::new(AdamwCase { n: 4099, config: late, param_scale: 1e-4, grad_scale: 0.125, first_step: 1000 }));
    cases
}

impl AdamwCase {
    /// Two steps of torch.optim.AdamW in f64 from (p, m, v) with gradient g: the parameters after both.
    fn reference(&self, p: &[f32], g: &[f32], m: &[f32], v: &[f32]) -> Vec<f32> {
        let c = &self.config;
        let (lr, b1, b2, eps, wd) = (c.lr as f64, c.beta1 as f64, c.beta2 as f64, c.eps as f64, c.weight_decay as f64);
        (0..p.len())
            .map(|i| {
                let (mut p, mut m, mut v) = (p[i] as f64, m[i] as f64, v[i] as f64);
                let g = g[i] as f64 * self.grad_scale as f64;
                for step in [self.first_step, self.first_step + 1] {
                    p *= 1.0 - lr * wd;
                    m = b1 * m + (1.0 - b1) * g;
                    v = b2 * v + (1.0 - b2) * g * g;
                    let (bias1, bias2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
                    p -= lr / bias1 * m / (v.sqrt() / bias2.sqrt() + eps);
                }
                p as f32
            })
            .collect()
    }
}

impl OpCase for AdamwCase {
    fn op(&self) -> &'static str {
        "adamw"
    }

    fn vars(&self) -> String {
        let c = &self.config;
        format!(
            "type=f32,ne=[{}],lr={:e},betas=({},{}),eps={:e},wd={},param_scale={:e},grad_scale={},step={}",
            self.n, c.lr, c.beta1, c.beta2, c.eps, c.weight_decay, self.param_scale, self.grad_scale, self.first_step
        )
    }

    fn max_nmse(&self) -> f64 {
        max_nmse("adamw", "f32")
    }

    fn flops(&self) -> u64 {
        2 * 16 * self.n as u64
    }

    fn bytes(&self) -> u64 {
        2 * 7 * 4 * self.n as u64
    }

    fn elems(&self) -> u64 {
        self.n as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let p: Vec<f32> = seeded(&format!("{name}/p"), self.n).iter().map(|x| x * self.param_scale).collect();
        let g = seeded(&format!("{name}/g"), self.n);
        // Moments as a run that has trained for a while would hold them; v ≥ 0.
        let m: Vec<f32> = seeded(&format!("{name}/m"), self.n).iter().map(|x| 0.1 * x).collect();
        let v: Vec<f32> = seeded(&format!("{name}/v"), self.n).iter().map(|x| 0.01 * x.abs()).collect();
        let reference = self.reference(&p, &g, &m, &v);
        let mut p_guarded = p.clone();
        p_guarded.extend([GUARD_VALUE; GUARD_ELEMS]);
        let output = upload_f32(ctx, "param", &p_guarded)?;
        let (gg, gm, gv) = (upload_f32(ctx, "grad", &g)?, upload_f32(ctx, "m", &m)?, upload_f32(ctx, "v", &v)?);
        let scale = upload_f32(ctx, "grad scale", &[self.grad_scale])?;
        let (param, config, first_step, n) = (Rc::clone(&output), self.config, self.first_step, self.n as u64);
        Ok(Built {
            record: Box::new(move |batch| {
                let state = AdamwState { param: &param, grad: &gg, m: &gm, v: &gv, grad_scale: &scale, n_elems: n };
                adamw(batch, &config, first_step, &state)?;
                adamw(batch, &config, first_step + 1, &state)
            }),
            output,
            output_type: OutType::F32,
            reference,
        })
    }
}
