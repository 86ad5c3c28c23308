//! Cases for `rms_norm_add` (ggml rms_norm + mul + add (+ mul), then optionally the next rms_norm + mul): the
//! reference composes candle ops in f64, `h = (residual + rms(src) ⊙ w) · scale`, `normed = rms(h) ⊙ next_w`.
//! A case checks one of the two outputs (`out=h` or `out=normed`); both come from the same dispatch.

use super::{Built, CaseResult, OpCase, OutType, cpu, guarded_output, seeded, upload_f32};
use crate::reference::ops::rms_norm;
use crate::tolerance::max_nmse;
use candle_core::{DType, Tensor};
use ferrogem::gpu::Context;
use ferrogem::ops::rms_norm_add::{NormAdd, rms_norm_add};
use std::rc::Rc;

pub struct RmsNormAddCase {
    n_elems: u32,
    n_rows: u32,
    /// The layer scale, if any.
    scale: Option<f32>,
    next_norm: bool,
    /// Check `normed` instead of `h` (needs `next_norm`).
    check_normed: bool,
    eps: f32,
}

impl RmsNormAddCase {
    pub fn new(n_elems: u32, n_rows: u32, scale: Option<f32>, next_norm: bool, check_normed: bool, eps: f32) -> Self {
        RmsNormAddCase { n_elems, n_rows, scale, next_norm, check_normed: check_normed && next_norm, eps }
    }
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for (n_elems, n_rows) in [(1, 1), (7, 5), (13, 3), (128, 1), (256, 33), (1000, 2), (2048, 1), (4099, 3)] {
        for scale in [None, Some(0.625)] {
            cases.push(Box::new(RmsNormAddCase::new(n_elems, n_rows, scale, false, false, 1e-6)));
            for check_normed in [false, true] {
                cases.push(Box::new(RmsNormAddCase::new(n_elems, n_rows, scale, true, check_normed, 1e-6)));
            }
        }
    }
    // Gemma 3's eps, and one large enough to move the result (mean(x²) ≈ 1/3 here).
    cases.push(Box::new(RmsNormAddCase::new(640, 3, None, true, true, 1e-5)));
    cases.push(Box::new(RmsNormAddCase::new(256, 2, Some(2.0), true, true, 1e-2)));
    cases
}

impl OpCase for RmsNormAddCase {
    fn op(&self) -> &'static str {
        "rms_norm_add"
    }

    fn vars(&self) -> String {
        let scale = self.scale.map_or(String::new(), |s| format!(",scale={s}"));
        let out = if self.check_normed { "normed" } else { "h" };
        format!(
            "type=f32,ne=[{},{}]{scale},next_norm={},out={out},eps={:e}",
            self.n_elems, self.n_rows, self.next_norm as u8, self.eps
        )
    }

    fn max_nmse(&self) -> f64 {
        max_nmse("rms_norm_add", "f32")
    }

    fn flops(&self) -> u64 {
        (6 + 4 * self.next_norm as u64) * self.elems()
    }

    fn bytes(&self) -> u64 {
        4 * ((3 + self.next_norm as u64) * self.elems() + 2 * self.n_elems as u64)
    }

    fn elems(&self) -> u64 {
        self.n_elems as u64 * self.n_rows as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let (n, rows) = (self.n_elems as usize, self.n_rows as usize);
        let src = seeded(&format!("{name}/src"), rows * n);
        let residual: Vec<f32> = seeded(&format!("{name}/residual"), rows * n).iter().map(|v| 4.0 * v).collect();
        let weight: Vec<f32> = seeded(&format!("{name}/w"), n).iter().map(|v| 1.0 + v).collect();
        let next_weight: Vec<f32> = seeded(&format!("{name}/next_w"), n).iter().map(|v| 1.0 + v).collect();

        let t = |v: &[f32], shape: (usize, usize)| Tensor::from_vec(v.to_vec(), shape, &cpu())?.to_dtype(DType::F64);
        let normed_src = rms_norm(&t(&src, (rows, n))?, Some(&t(&weight, (1, n))?), self.eps)?;
        let mut h = (t(&residual, (rows, n))? + normed_src)?;
        if let Some(s) = self.scale {
            h = h.affine(s as f64, 0.0)?;
        }
        let want = if self.check_normed { rms_norm(&h, Some(&t(&next_weight, (1, n))?), self.eps)? } else { h };
        let reference = want.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;

        let gsrc = upload_f32(ctx, "src", &src)?;
        let gres = upload_f32(ctx, "residual", &residual)?;
        let gw = upload_f32(ctx, "w", &weight)?;
        let gnext = upload_f32(ctx, "next_w", &next_weight)?;
        let gscale = match self.scale {
            Some(s) => Some(upload_f32(ctx, "scale", &[s])?),
            None => None,
        };
        let h_out = guarded_output(ctx, rows * n, OutType::F32)?;
        let normed_out = guarded_output(ctx, rows * n, OutType::F32)?;
        let output = Rc::clone(if self.check_normed { &normed_out } else { &h_out });
        let (n_rows, n_elems, eps, next) = (self.n_rows, self.n_elems, self.eps, self.next_norm);
        Ok(Built {
            record: Box::new(move |batch| {
                let a = NormAdd {
                    src: &gsrc,
                    weight: &gw,
                    residual: &gres,
                    scale: gscale.as_deref(),
                    dst: &h_out,
                    next_norm: next.then_some((&*gnext, &*normed_out)),
                };
                rms_norm_add(batch, &a, n_rows, n_elems, eps)
            }),
            output,
            output_type: OutType::F32,
            reference,
        })
    }
}
