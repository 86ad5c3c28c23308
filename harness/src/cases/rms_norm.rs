//! Cases for ggml `rms_norm`, with the fused weight multiply and without (Gemma 4's V norm). The reference is
//! `reference::ops::rms_norm` in f64: `x / sqrt(mean(x²) + eps) ⊙ w`. In grad mode the same cases check
//! `rms_norm_back` (the gradient of x; the weight is frozen in training).

use super::grad::{BuiltGrad, GRAD_MAX_ELEMS, GradOutput, cpu_gradients};
use super::{Built, CaseResult, OpCase, OutType, cpu, guarded_output, seeded, upload_f32};
use crate::reference::ops;
use crate::tolerance::max_nmse;
use candle_core::{DType, Tensor};
use ferrogem::gpu::Context;
use ferrogem::ops::rms_norm::rms_norm;
use ferrogem::ops::rms_norm_back::rms_norm_back;
use std::rc::Rc;

pub struct RmsNormCase {
    n_elems: u32,
    n_rows: u32,
    weight: bool,
    eps: f32,
}

impl RmsNormCase {
    /// Rows of `n_elems` (hidden size, or head_dim for per-head norms), `n_rows` of them.
    pub fn new(n_elems: u32, n_rows: u32, weight: bool, eps: f32) -> Self {
        RmsNormCase { n_elems, n_rows, weight, eps }
    }
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for n_elems in [1, 5, 7, 13, 32, 64, 128, 256, 512, 1536, 2048, 4099] {
        let row_counts: &[u32] = if n_elems <= 256 { &[1, 5, 33] } else { &[1, 13] };
        for &n_rows in row_counts {
            for weight in [true, false] {
                cases.push(Box::new(RmsNormCase::new(n_elems, n_rows, weight, 1e-6)));
            }
        }
    }
    // Gemma 3's eps, and an eps large enough to move the result visibly (mean(x²) ≈ 1/3 here).
    cases.push(Box::new(RmsNormCase::new(640, 3, true, 1e-5)));
    cases.push(Box::new(RmsNormCase::new(256, 2, false, 1e-2)));
    cases
}

impl OpCase for RmsNormCase {
    fn op(&self) -> &'static str {
        "rms_norm"
    }

    fn vars(&self) -> String {
        format!("type=f32,ne=[{},{}],weight={},eps={:e}", self.n_elems, self.n_rows, self.weight as u8, self.eps)
    }

    fn max_nmse(&self) -> f64 {
        max_nmse("rms_norm", "f32")
    }

    fn flops(&self) -> u64 {
        (3 + self.weight as u64) * self.elems()
    }

    fn bytes(&self) -> u64 {
        4 * (2 * self.elems() + if self.weight { self.n_elems as u64 } else { 0 })
    }

    fn elems(&self) -> u64 {
        self.n_elems as u64 * self.n_rows as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let (n, rows) = (self.n_elems as usize, self.n_rows as usize);
        let x = seeded(&format!("{name}/x"), rows * n);
        let w = seeded(&format!("{name}/w"), n).iter().map(|v| 1.0 + v).collect::<Vec<f32>>();
        let xt = Tensor::from_vec(x.clone(), (rows, n), &cpu())?;
        let wt = Tensor::from_vec(w.clone(), n, &cpu())?;
        let y = ops::rms_norm(&xt.to_dtype(DType::F64)?, self.weight.then_some(&wt), self.eps)?;
        let reference = y.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let src = upload_f32(ctx, "x", &x)?;
        let weight = if self.weight { Some(upload_f32(ctx, "w", &w)?) } else { None };
        let output = guarded_output(ctx, rows * n, OutType::F32)?;
        let (out, n_rows, n_elems, eps) = (Rc::clone(&output), self.n_rows, self.n_elems, self.eps);
        Ok(Built {
            record: Box::new(move |batch| rms_norm(batch, &src, weight.as_deref(), &out, n_rows, n_elems, eps)),
            output,
            output_type: OutType::F32,
            reference,
        })
    }

    /// Not for rows of one element: such a row normalizes to ±1 and its gradient, `eps/(x² + eps)^{3/2}·dy`, is
    /// what is left of `s·g − x²s³·g` after cancelling in f32 (NMSE ~5e-4 measured; ~1e-14 from 5 elements up).
    fn build_grad(&self, ctx: &Context) -> Option<CaseResult<BuiltGrad>> {
        (self.elems() <= GRAD_MAX_ELEMS && self.n_elems > 1).then(|| self.grad(ctx))
    }
}

impl RmsNormCase {
    fn grad(&self, ctx: &Context) -> CaseResult<BuiltGrad> {
        let name = self.name();
        let (n, rows) = (self.n_elems as usize, self.n_rows as usize);
        let x = seeded(&format!("{name}/x"), rows * n);
        let w = seeded(&format!("{name}/w"), n).iter().map(|v| 1.0 + v).collect::<Vec<f32>>();
        let dy = seeded(&format!("{name}/dy"), rows * n);
        let (weight, eps) = (self.weight, self.eps);
        let forward = |t: &[Tensor]| ops::rms_norm(&t[0], weight.then_some(&t[1]), eps);
        let inputs = [(x.clone(), vec![rows, n]), (w.clone(), vec![n])];
        let (finite_diff, autograd) = cpu_gradients(&inputs, &dy, &[0], &forward)?.remove(0);
        let (gx, gdy) = (upload_f32(ctx, "x", &x)?, upload_f32(ctx, "dy", &dy)?);
        let gw = if self.weight { Some(upload_f32(ctx, "w", &w)?) } else { None };
        let dx = guarded_output(ctx, rows * n, OutType::F32)?;
        let (out, n_rows, n_elems) = (Rc::clone(&dx), self.n_rows, self.n_elems);
        Ok(BuiltGrad {
            record: Box::new(move |b| rms_norm_back(b, &gx, gw.as_deref(), &gdy, &out, n_rows, n_elems, eps)),
            grads: vec![GradOutput { input: "x", output: dx, finite_diff, autograd }],
        })
    }
}
