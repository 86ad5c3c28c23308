//! Cases for `cross_entropy` (per row, integer targets) and, in grad mode, its backward: the reference is
//! `reference::ops::cross_entropy` in f64. Vocabularies from a few entries to Gemma's 262144, logits up to ±30 (the
//! range Gemma's final softcap leaves), and rows left out through `IGNORED_TARGET` as a chat mask leaves prompts.

use super::grad::{BuiltGrad, GRAD_MAX_ELEMS, GradOutput, cpu_gradients};
use super::{Built, CaseResult, OpCase, OutType, cpu, guarded_output, seeded, upload_f32};
use crate::reference::ops;
use crate::tolerance::max_nmse;
use candle_core::{DType, Tensor};
use ferrogem::gpu::{Category, Context, GpuBuffer};
use ferrogem::ops::cross_entropy::{CrossEntropyInput, IGNORED_TARGET, cross_entropy, cross_entropy_back};
use ferrogem::sampling::SplitMix64;
use std::rc::Rc;

pub struct CrossEntropyCase {
    vocab: u32,
    n_rows: u32,
    /// Logits are uniform in [-range, range).
    range: f32,
    /// Every other row is left out (target `IGNORED_TARGET`).
    ignored: bool,
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for (vocab, rows) in [(1, 2), (7, 3), (256, 4), (1000, 3), (4096, 1), (262144, 2)] {
        for range in [1.0, 30.0] {
            for ignored in [false, true] {
                cases.push(Box::new(CrossEntropyCase { vocab, n_rows: rows, range, ignored }));
            }
        }
    }
    cases
}

impl CrossEntropyCase {
    fn inputs(&self) -> (Vec<f32>, Vec<u32>) {
        let name = self.name();
        let n = self.vocab as usize * self.n_rows as usize;
        let logits = seeded(&format!("{name}/logits"), n).iter().map(|v| v * self.range).collect();
        let mut rng = SplitMix64::from_name(&format!("{name}/targets"));
        let targets =
            (0..self.n_rows)
                .map(|r| {
                    if self.ignored && r % 2 == 1 {
                        IGNORED_TARGET
                    } else {
                        (rng.next_u64() % self.vocab as u64) as u32
                    }
                })
                .collect();
        (logits, targets)
    }

    fn upload_targets(ctx: &Context, targets: &[u32]) -> ferrogem::Result<Rc<GpuBuffer>> {
        Ok(Rc::new(ctx.upload("targets", Category::Scratch, bytemuck::cast_slice(targets))?))
    }
}

impl OpCase for CrossEntropyCase {
    fn op(&self) -> &'static str {
        "cross_entropy"
    }

    fn vars(&self) -> String {
        format!("type=f32,ne=[{},{}],range={},ignored={}", self.vocab, self.n_rows, self.range, self.ignored as u8)
    }

    fn max_nmse(&self) -> f64 {
        max_nmse("cross_entropy", "f32")
    }

    fn flops(&self) -> u64 {
        4 * self.elems()
    }

    fn bytes(&self) -> u64 {
        4 * self.elems() + 8 * self.n_rows as u64
    }

    fn elems(&self) -> u64 {
        self.vocab as u64 * self.n_rows as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let (logits, targets) = self.inputs();
        let (rows, vocab) = (self.n_rows as usize, self.vocab as usize);
        let x = Tensor::from_vec(logits.clone(), (rows, vocab), &cpu())?.to_dtype(DType::F64)?;
        let reference = ops::cross_entropy(&x, &targets)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let (glogits, gtargets) = (upload_f32(ctx, "logits", &logits)?, Self::upload_targets(ctx, &targets)?);
        let output = guarded_output(ctx, rows, OutType::F32)?;
        let (out, n_rows, n_elems) = (Rc::clone(&output), self.n_rows, self.vocab);
        Ok(Built {
            record: Box::new(move |batch| {
                let input = CrossEntropyInput { logits: &glogits, targets: &gtargets, n_rows, n_elems };
                cross_entropy(batch, input, &out)
            }),
            output,
            output_type: OutType::F32,
            reference,
        })
    }

    fn build_grad(&self, ctx: &Context) -> Option<CaseResult<BuiltGrad>> {
        (self.elems() <= GRAD_MAX_ELEMS).then(|| self.grad(ctx))
    }
}

impl CrossEntropyCase {
    fn grad(&self, ctx: &Context) -> CaseResult<BuiltGrad> {
        let (logits, targets) = self.inputs();
        let (rows, vocab) = (self.n_rows as usize, self.vocab as usize);
        let d_loss = seeded(&format!("{}/d_loss", self.name()), rows);
        let forward = |t: &[Tensor]| ops::cross_entropy(&t[0], &targets);
        let inputs = [(logits.clone(), vec![rows, vocab])];
        let (finite_diff, autograd) = cpu_gradients(&inputs, &d_loss, &[0], &forward)?.remove(0);
        let (glogits, gtargets) = (upload_f32(ctx, "logits", &logits)?, Self::upload_targets(ctx, &targets)?);
        let gd_loss = upload_f32(ctx, "d_loss", &d_loss)?;
        let dx = guarded_output(ctx, rows * vocab, OutType::F32)?;
        let (out, n_rows, n_elems) = (Rc::clone(&dx), self.n_rows, self.vocab);
        Ok(BuiltGrad {
            record: Box::new(move |batch| {
                let input = CrossEntropyInput { logits: &glogits, targets: &gtargets, n_rows, n_elems };
                cross_entropy_back(batch, input, &gd_loss, &out)
            }),
            grads: vec![GradOutput { input: "logits", output: dx, finite_diff, autograd }],
        })
    }
}
