//! Cases for `grad_norm` (the gradient scale AdamW reads): the global-norm clipping factor of
//! torch.nn.utils.clip_grad_norm_ times the micro-batch average, against the same formula in f64. Sizes from one
//! element to more than the partial sums cover in one stride, with clipping active, inactive and off; the
//! gradients in one tensor, or in three of unequal sizes (the norm is taken over them all).

use super::{Built, CaseResult, OpCase, OutType, guarded_output, seeded, upload_f32};
use crate::tolerance::max_nmse;
use ferrogem::gpu::{Category, Context};
use ferrogem::ops::grad_norm::{GRAD_NORM_PARTIALS, grad_scale};
use std::rc::Rc;

pub struct GradNormCase {
    n: usize,
    /// The n elements split into this many tensors.
    tensors: usize,
    max_norm: Option<f32>,
    accum_scale: f32,
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    // ‖g‖ ≈ sqrt(n/3) for g uniform in [-1, 1): 1.0 clips every size here but n = 1 (also after averaging by
    // 0.25), 1e4 clips none.
    for n in [1, 1000, 196_608, 3_000_000] {
        for (max_norm, accum_scale) in [(Some(1.0), 1.0), (Some(1.0), 0.25), (Some(1e4), 0.25), (None, 0.125)] {
            cases.push(Box::new(GradNormCase { n, tensors: 1, max_norm, accum_scale }));
        }
    }
    // Clipping active at every size (0.1 is below each norm), so a tensor left out of the norm changes the scale.
    for n in [7, 1000, 196_608] {
        cases.push(Box::new(GradNormCase { n, tensors: 3, max_norm: Some(0.1), accum_scale: 0.5 }));
    }
    cases
}

impl GradNormCase {
    /// Element ranges of the tensors: halving sizes, the last taking the rest.
    fn splits(&self) -> Vec<std::ops::Range<usize>> {
        let mut ranges = Vec::with_capacity(self.tensors);
        let mut start = 0;
        for t in 0..self.tensors {
            let end = if t + 1 == self.tensors { self.n } else { start + (self.n - start).div_ceil(2) };
            ranges.push(start..end);
            start = end;
        }
        ranges
    }

    fn reference(&self, g: &[f32]) -> f32 {
        let accum = self.accum_scale as f64;
        let norm = accum * g.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        let coef = self.max_norm.map_or(1.0, |m| (m as f64 / (norm + 1e-6)).min(1.0));
        (accum * coef) as f32
    }
}

impl OpCase for GradNormCase {
    fn op(&self) -> &'static str {
        "grad_norm"
    }

    fn vars(&self) -> String {
        let max_norm = self.max_norm.map_or("none".to_owned(), |m| format!("{m:e}"));
        let ne: Vec<String> = self.splits().iter().map(|r| r.len().to_string()).collect();
        format!("type=f32,ne=[{}],max_norm={max_norm},accum_scale={}", ne.join(","), self.accum_scale)
    }

    fn max_nmse(&self) -> f64 {
        max_nmse("grad_norm", "f32")
    }

    fn flops(&self) -> u64 {
        2 * self.n as u64
    }

    fn bytes(&self) -> u64 {
        4 * self.n as u64
    }

    fn elems(&self) -> u64 {
        self.n as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let g = seeded(&format!("{}/g", self.name()), self.n);
        let reference = vec![self.reference(&g)];
        let grads = (self.splits().into_iter())
            .map(|r| Ok((upload_f32(ctx, "grads", &g[r.clone()])?, r.len() as u64)))
            .collect::<CaseResult<Vec<_>>>()?;
        let partials = Rc::new(ctx.alloc("partials", Category::Scratch, GRAD_NORM_PARTIALS as u64 * 4, None)?);
        let output = guarded_output(ctx, 1, OutType::F32)?;
        let (scale, max_norm, accum_scale) = (Rc::clone(&output), self.max_norm, self.accum_scale);
        Ok(Built {
            record: Box::new(move |batch| {
                let tensors: Vec<_> = grads.iter().map(|(buffer, n)| (&**buffer, *n)).collect();
                grad_scale(batch, &tensors, &partials, &scale, max_norm, accum_scale)
            }),
            output,
            output_type: OutType::F32,
            reference,
        })
    }
}
