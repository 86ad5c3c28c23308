//! Cases for ggml `soft_max` (`soft_max_ext` without ALiBi): `softmax(x·scale + mask)` over rows, with an optional
//! additive mask broadcast over rows (entries of −inf included). Reference: candle in f64, max-subtracted.

use super::{Built, CaseResult, OpCase, OutType, cpu, guarded_output, seeded, upload_f32};
use crate::tolerance::max_nmse;
use candle_core::{D, DType, Tensor};
use ferrogem::gpu::Context;
use ferrogem::ops::soft_max::{SoftMaxMask, soft_max};
use std::rc::Rc;

pub struct SoftMaxCase {
    n_elems: u32,
    n_rows: u32,
    scale: f32,
    /// Rows of the additive mask (0: no mask); row r of the input uses mask row r mod mask_rows.
    mask_rows: u32,
    /// Inputs are uniform in [-range, range).
    range: f32,
}

impl SoftMaxCase {
    pub fn new(n_elems: u32, n_rows: u32, scale: f32, mask_rows: u32, range: f32) -> Self {
        SoftMaxCase { n_elems, n_rows, scale, mask_rows, range }
    }

    /// Seeded values in [-2, 2), with every 5th entry −inf unless the row would be all −inf.
    fn mask(&self) -> Vec<f32> {
        let n = self.n_elems as usize;
        let mut m: Vec<f32> =
            seeded(&format!("{}/mask", self.name()), self.mask_rows as usize * n).iter().map(|v| 2.0 * v).collect();
        if n > 1 {
            for (i, v) in m.iter_mut().enumerate() {
                if i % n % 5 == 3 {
                    *v = f32::NEG_INFINITY;
                }
            }
        }
        m
    }
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for n_elems in [1, 7, 256, 1000, 32768] {
        let n_rows = if n_elems >= 32768 { 2 } else { 3 };
        for scale in [1.0, 0.125] {
            for mask_rows in [0, 1, n_rows] {
                cases.push(Box::new(SoftMaxCase::new(n_elems, n_rows, scale, mask_rows, 10.0)));
            }
        }
    }
    // Logit-sized rows and large logits (softcapped logits reach ±30): the max subtraction must hold.
    cases.push(Box::new(SoftMaxCase::new(262144, 1, 1.0, 0, 30.0)));
    cases.push(Box::new(SoftMaxCase::new(4099, 5, 1.0, 1, 80.0)));
    cases
}

impl OpCase for SoftMaxCase {
    fn op(&self) -> &'static str {
        "soft_max"
    }

    fn vars(&self) -> String {
        format!(
            "type=f32,ne=[{},{}],scale={},mask_rows={},range={}",
            self.n_elems, self.n_rows, self.scale, self.mask_rows, self.range
        )
    }

    fn max_nmse(&self) -> f64 {
        max_nmse("soft_max", "f32")
    }

    fn flops(&self) -> u64 {
        5 * self.elems()
    }

    fn bytes(&self) -> u64 {
        4 * (2 * self.elems() + self.mask_rows as u64 * self.n_elems as u64)
    }

    fn elems(&self) -> u64 {
        self.n_elems as u64 * self.n_rows as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let (n, rows) = (self.n_elems as usize, self.n_rows as usize);
        let x: Vec<f32> = seeded(&format!("{name}/x"), rows * n).iter().map(|v| v * self.range).collect();
        let mut v =
            Tensor::from_vec(x.clone(), (rows, n), &cpu())?.to_dtype(DType::F64)?.affine(self.scale as f64, 0.0)?;
        let mask = (self.mask_rows > 0).then(|| self.mask());
        if let Some(m) = &mask {
            let mask_t = Tensor::from_vec(m.clone(), (self.mask_rows as usize, n), &cpu())?.to_dtype(DType::F64)?;
            let row_of: Vec<u32> = (0..self.n_rows).map(|r| r % self.mask_rows).collect();
            v = (v + mask_t.index_select(&Tensor::new(row_of.as_slice(), &cpu())?, 0)?)?;
        }
        let e = v.broadcast_sub(&v.max_keepdim(D::Minus1)?)?.exp()?;
        let y = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
        let reference = y.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;

        let src = upload_f32(ctx, "x", &x)?;
        let gmask = match &mask {
            Some(m) => Some(upload_f32(ctx, "mask", m)?),
            None => None,
        };
        let output = guarded_output(ctx, rows * n, OutType::F32)?;
        let (out, n_rows, n_elems, scale, mask_rows) =
            (Rc::clone(&output), self.n_rows, self.n_elems, self.scale, self.mask_rows);
        Ok(Built {
            record: Box::new(move |batch| {
                let mask = gmask.as_deref().map(|buffer| SoftMaxMask { buffer, n_rows: mask_rows });
                soft_max(batch, &src, mask, &out, n_rows, n_elems, scale)
            }),
            output,
            output_type: OutType::F32,
            reference,
        })
    }
}
