//! Cases for ggml `geglu` with separate gate and up tensors: `gelu(gate) ⊙ up`, gelu the tanh approximation.
//! The reference is candle's `Tensor::gelu` (the tanh form; `gelu_erf` is the exact one) times `up`, in f32. In grad
//! mode the same cases check `geglu_back` (the gradients of gate and up).

use super::grad::{BuiltGrad, GRAD_MAX_ELEMS, GradOutput, cpu_gradients};
use super::{Built, CaseResult, OpCase, OutType, cpu, guarded_output, seeded, upload_f32};
use crate::reference::ops;
use crate::tolerance::max_nmse;
use candle_core::Tensor;
use ferrogem::gpu::Context;
use ferrogem::ops::glu::geglu;
use ferrogem::ops::glu_back::geglu_back;
use std::rc::Rc;

pub struct GegluCase {
    n: usize,
    /// Inputs are uniform in [-range, range).
    range: f32,
}

impl GegluCase {
    pub fn new(n: usize, range: f32) -> Self {
        GegluCase { n, range }
    }
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for n in [1, 7, 256, 1000, 6144, 16385] {
        for range in [1.0, 10.0] {
            cases.push(Box::new(GegluCase::new(n, range)));
        }
    }
    cases
}

impl OpCase for GegluCase {
    fn op(&self) -> &'static str {
        "geglu"
    }

    fn vars(&self) -> String {
        format!("type=f32,ne=[{}],range={}", self.n, self.range)
    }

    fn max_nmse(&self) -> f64 {
        max_nmse("geglu", "f32")
    }

    fn flops(&self) -> u64 {
        10 * self.n as u64
    }

    fn bytes(&self) -> u64 {
        12 * self.n as u64
    }

    fn elems(&self) -> u64 {
        self.n as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let gate: Vec<f32> = seeded(&format!("{name}/gate"), self.n).iter().map(|v| v * self.range).collect();
        let up: Vec<f32> = seeded(&format!("{name}/up"), self.n).iter().map(|v| v * self.range).collect();
        let g = Tensor::from_vec(gate.clone(), self.n, &cpu())?;
        let u = Tensor::from_vec(up.clone(), self.n, &cpu())?;
        let reference = ops::geglu(&g, &u)?.to_vec1::<f32>()?;
        let (ggate, gup) = (upload_f32(ctx, "gate", &gate)?, upload_f32(ctx, "up", &up)?);
        let output = guarded_output(ctx, self.n, OutType::F32)?;
        let (out, n) = (Rc::clone(&output), self.n as u64);
        Ok(Built {
            record: Box::new(move |batch| geglu(batch, &ggate, &gup, &out, n)),
            output,
            output_type: OutType::F32,
            reference,
        })
    }

    fn build_grad(&self, ctx: &Context) -> Option<CaseResult<BuiltGrad>> {
        (self.elems() <= GRAD_MAX_ELEMS).then(|| self.grad(ctx))
    }
}

impl GegluCase {
    fn grad(&self, ctx: &Context) -> CaseResult<BuiltGrad> {
        let name = self.name();
        let gate: Vec<f32> = seeded(&format!("{name}/gate"), self.n).iter().map(|v| v * self.range).collect();
        let up: Vec<f32> = seeded(&format!("{name}/up"), self.n).iter().map(|v| v * self.range).collect();
        let dy = seeded(&format!("{name}/dy"), self.n);
        let forward = |t: &[Tensor]| ops::geglu(&t[0], &t[1]);
        let inputs = [(gate.clone(), vec![self.n]), (up.clone(), vec![self.n])];
        let mut cpu = cpu_gradients(&inputs, &dy, &[0, 1], &forward)?.into_iter();
        let (Some((gate_fd, gate_auto)), Some((up_fd, up_auto))) = (cpu.next(), cpu.next()) else {
            return Err("cpu_gradients gave fewer than two gradients".into());
        };
        let (ggate, gup, gdy) =
            (upload_f32(ctx, "gate", &gate)?, upload_f32(ctx, "up", &up)?, upload_f32(ctx, "dy", &dy)?);
        let d_gate = guarded_output(ctx, self.n, OutType::F32)?;
        let d_up = guarded_output(ctx, self.n, OutType::F32)?;
        let (dg, du, n) = (Rc::clone(&d_gate), Rc::clone(&d_up), self.n as u64);
        Ok(BuiltGrad {
            record: Box::new(move |b| geglu_back(b, &ggate, &gup, &gdy, &dg, &du, n)),
            grads: vec![
                GradOutput { input: "gate", output: d_gate, finite_diff: gate_fd, autograd: gate_auto },
                GradOutput { input: "up", output: d_up, finite_diff: up_fd, autograd: up_auto },
            ],
        })
    }
}
