//! Cases for the unary ops of `unary.wgsl`: `scale`, `softcap` (incl. |x| ≫ cap), `gelu` (tanh approximation, incl.
//! |x| up to 10 and past the x³ overflow) and `mul_scalar` (scalar from a 1-element buffer), each out of place and in
//! place. References in candle f32: `affine`, `(x/cap).tanh()·cap`, `Tensor::gelu` (the tanh form), `broadcast_mul`.
//! In grad mode the out-of-place scale, softcap and gelu cases check `unary_back`.

use super::grad::{BuiltGrad, GRAD_MAX_ELEMS, GradOutput, cpu_gradients};
use super::{
    Built, CaseResult, GUARD_ELEMS, GUARD_VALUE, OpCase, OutType, Record, cpu, guarded_output, seeded, upload_f32,
};
use crate::reference::ops;
use crate::tolerance::max_nmse;
use candle_core::Tensor;
use ferrogem::gpu::Context;
use ferrogem::ops::unary::{UnaryOp, mul_scalar, mul_scalar_inplace, unary, unary_back, unary_inplace};
use std::rc::Rc;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryCaseOp {
    /// An op whose parameter is `value` (ignored by gelu).
    Op(UnaryOp, f32),
    /// Multiply by `value` read from a 1-element buffer.
    MulScalar(f32),
}

/// What `Built::record` holds.
pub struct UnaryCase {
    op: UnaryCaseOp,
    n: usize,
    /// Inputs are uniform in [-range, range).
    range: f32,
    inplace: bool,
}

impl UnaryCase {
    pub fn new(op: UnaryCaseOp, n: usize, range: f32, inplace: bool) -> Self {
        UnaryCase { op, n, range, inplace }
    }
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    use UnaryCaseOp::{MulScalar, Op};
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    let mut add =
        |op, n, range, inplace| cases.push(Box::new(UnaryCase::new(op, n, range, inplace)) as Box<dyn OpCase>);
    for n in [1, 7, 1000, 16385] {
        add(Op(UnaryOp::Scale, 0.125), n, 1.0, false);
    }
    // The embedding scale √1536, and in place.
    add(Op(UnaryOp::Scale, 1536f32.sqrt()), 1536, 1.0, false);
    add(Op(UnaryOp::Scale, 2560f32.sqrt()), 2560, 1.0, true);
    for (n, range) in [(1, 1.0), (7, 100.0), (1000, 30.0), (4099, 1000.0), (262144, 60.0)] {
        add(Op(UnaryOp::Softcap, 30.0), n, range, false);
    }
    add(Op(UnaryOp::Softcap, 30.0), 16385, 1e6, true);
    add(Op(UnaryOp::Softcap, 50.0), 1000, 200.0, true);
    for n in [1, 7, 256, 1000, 6144, 16385] {
        for range in [1.0, 10.0] {
            add(Op(UnaryOp::Gelu, 0.0), n, range, false);
        }
    }
    // Past x³ overflow (|x| > ~2e12) the clamped tanh still gives gelu(x) = x or 0.
    add(Op(UnaryOp::Gelu, 0.0), 1000, 1e13, false);
    add(Op(UnaryOp::Gelu, 0.0), 6144, 10.0, true);
    for n in [1, 7, 1536, 2560] {
        add(MulScalar(0.0625), n, 1.0, false);
    }
    add(MulScalar(-1.75), 1536, 10.0, true);
    add(MulScalar(0.5), 13, 1.0, true);
    cases
}

impl UnaryCase {
    fn reference(&self, x: &[f32]) -> CaseResult<Vec<f32>> {
        let t = Tensor::from_vec(x.to_vec(), x.len(), &cpu())?;
        Ok(self.forward(&t)?.to_vec1::<f32>()?)
    }

    /// The op on a candle tensor of any float dtype.
    fn forward(&self, t: &Tensor) -> candle_core::Result<Tensor> {
        match self.op {
            UnaryCaseOp::Op(UnaryOp::Scale, s) => t.affine(s as f64, 0.0),
            UnaryCaseOp::Op(UnaryOp::Softcap, cap) => ops::softcap(t, cap),
            UnaryCaseOp::Op(UnaryOp::Gelu, _) => t.gelu(),
            UnaryCaseOp::MulScalar(s) => t.broadcast_mul(&Tensor::new(&[s], t.device())?.to_dtype(t.dtype())?),
        }
    }

    fn grad(&self, ctx: &Context, op: UnaryOp, value: f32) -> CaseResult<BuiltGrad> {
        let name = self.name();
        let x: Vec<f32> = seeded(&format!("{name}/x"), self.n).iter().map(|v| v * self.range).collect();
        let dy = seeded(&format!("{name}/dy"), self.n);
        let forward = |t: &[Tensor]| self.forward(&t[0]);
        let (finite_diff, autograd) = cpu_gradients(&[(x.clone(), vec![self.n])], &dy, &[0], &forward)?.remove(0);
        let (gx, gdy) = (upload_f32(ctx, "x", &x)?, upload_f32(ctx, "dy", &dy)?);
        let dx = guarded_output(ctx, self.n, OutType::F32)?;
        let (out, n) = (Rc::clone(&dx), self.n as u64);
        Ok(BuiltGrad {
            record: Box::new(move |batch| unary_back(batch, op, value, &gx, &gdy, &out, n)),
            grads: vec![GradOutput { input: "x", output: dx, finite_diff, autograd }],
        })
    }
}

impl OpCase for UnaryCase {
    fn op(&self) -> &'static str {
        match self.op {
            UnaryCaseOp::Op(op, _) => op.ggml_name(),
            UnaryCaseOp::MulScalar(_) => "mul_scalar",
        }
    }

    fn vars(&self) -> String {
        let param = match self.op {
            UnaryCaseOp::Op(UnaryOp::Scale, s) => format!(",s={s}"),
            UnaryCaseOp::Op(UnaryOp::Softcap, cap) => format!(",cap={cap}"),
            UnaryCaseOp::Op(UnaryOp::Gelu, _) => String::new(),
            UnaryCaseOp::MulScalar(s) => format!(",scalar={s}"),
        };
        format!("type=f32,ne=[{}]{param},range={:e},inplace={}", self.n, self.range, self.inplace as u8)
    }

    fn max_nmse(&self) -> f64 {
        max_nmse(self.op(), "f32")
    }

    fn flops(&self) -> u64 {
        self.n as u64
    }

    fn bytes(&self) -> u64 {
        8 * self.n as u64
    }

    fn elems(&self) -> u64 {
        self.n as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let x: Vec<f32> = seeded(&format!("{name}/x"), self.n).iter().map(|v| v * self.range).collect();
        let reference = self.reference(&x)?;
        let n = self.n as u64;
        let (output, src) = if self.inplace {
            // The output buffer starts as the input (followed by the guards) and is rewritten where it lies.
            let mut init = x.clone();
            init.extend([GUARD_VALUE; GUARD_ELEMS]);
            (upload_f32(ctx, "x", &init)?, None)
        } else {
            (guarded_output(ctx, self.n, OutType::F32)?, Some(upload_f32(ctx, "x", &x)?))
        };
        let out = Rc::clone(&output);
        let record: Record = match (self.op, src) {
            (UnaryCaseOp::Op(op, value), Some(src)) => Box::new(move |batch| unary(batch, op, value, &src, &out, n)),
            (UnaryCaseOp::Op(op, value), None) => Box::new(move |batch| unary_inplace(batch, op, value, &out, n)),
            (UnaryCaseOp::MulScalar(s), src) => {
                let scalar = upload_f32(ctx, "scalar", &[s])?;
                match src {
                    Some(src) => Box::new(move |batch| mul_scalar(batch, &src, &scalar, &out, n)),
                    None => Box::new(move |batch| mul_scalar_inplace(batch, &scalar, &out, n)),
                }
            }
        };
        Ok(Built { record, output, output_type: OutType::F32, reference })
    }

    /// The out-of-place cases of the ops `unary_back` covers (in place changes nothing in the backward).
    fn build_grad(&self, ctx: &Context) -> Option<CaseResult<BuiltGrad>> {
        match self.op {
            UnaryCaseOp::Op(op, value) if !self.inplace && self.elems() <= GRAD_MAX_ELEMS => {
                Some(self.grad(ctx, op, value))
            }
            _ => None,
        }
    }
}
