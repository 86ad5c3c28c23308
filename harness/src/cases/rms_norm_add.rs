//! Cases for `rms_norm_add` (ggml rms_norm + mul + add (+ mul), then optionally the next rms_norm + mul): the
//! reference composes candle ops in f64, `h = (residual + rms(src) ⊙ w) · scale`, `normed = rms(h) ⊙ next_w`, and
//! with a LoRA rank the down-projections `u = A·normed`. A case checks one output (`out=h`, `out=normed` or `out=u`);
//! all come from the same dispatch. `out=u` checks the whole A-and-u buffer, A included: the kernel must leave A
//! as it was.

use super::{Built, CaseResult, GUARD_ELEMS, GUARD_VALUE, OpCase, OutType, cpu, guarded_output, seeded, upload_f32};
use crate::reference::ops::{self, rms_norm};
use crate::tolerance::max_nmse;
use candle_core::{DType, Tensor};
use ferrogem::gpu::Context;
use ferrogem::ops::rms_norm_add::{NormAdd, NormLoraDown, rms_norm_add};
use std::rc::Rc;

pub struct RmsNormAddCase {
    n_elems: u32,
    n_rows: u32,
    /// The layer scale, if any.
    scale: Option<f32>,
    next_norm: bool,
    /// Check `normed` instead of `h` (needs `next_norm`).
    check_normed: bool,
    /// The rows of a LoRA A made into `u` (needs `next_norm`; 0: none); `u` is then the checked output.
    lora_rank: u32,
    eps: f32,
}

impl RmsNormAddCase {
    pub fn new(n_elems: u32, n_rows: u32, scale: Option<f32>, next_norm: bool, check_normed: bool, eps: f32) -> Self {
        let check_normed = check_normed && next_norm;
        RmsNormAddCase { n_elems, n_rows, scale, next_norm, check_normed, lora_rank: 0, eps }
    }

    fn with_lora(n_elems: u32, n_rows: u32, scale: Option<f32>, lora_rank: u32) -> Self {
        RmsNormAddCase { lora_rank, ..RmsNormAddCase::new(n_elems, n_rows, scale, true, false, 1e-6) }
    }

    fn out(&self) -> Out {
        match (self.lora_rank > 0, self.check_normed) {
            (true, _) => Out::U,
            (false, true) => Out::Normed,
            (false, false) => Out::H,
        }
    }

    /// Where u starts in the A-and-u buffer: past A, at an element the kernel must not assume is aligned.
    fn u_offset_elems(&self) -> u32 {
        self.lora_rank * self.n_elems + 3
    }
}

/// The output a case checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    H,
    Normed,
    U,
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
    // The LoRA down-projections a decode step makes here: ranks of one and several targets (q/k/v: 3 · 16), one to
    // four tokens, E2B's hidden size.
    for (n_elems, n_rows, rank) in [(7, 3, 1), (13, 4, 5), (256, 2, 13), (1000, 1, 16), (1536, 1, 48), (1536, 4, 32)] {
        for scale in [None, Some(0.625)] {
            cases.push(Box::new(RmsNormAddCase::with_lora(n_elems, n_rows, scale, rank)));
        }
    }
    cases
}

impl OpCase for RmsNormAddCase {
    fn op(&self) -> &'static str {
        "rms_norm_add"
    }

    fn vars(&self) -> String {
        let scale = self.scale.map_or(String::new(), |s| format!(",scale={s}"));
        let lora = if self.lora_rank > 0 { format!(",lora_rank={}", self.lora_rank) } else { String::new() };
        format!(
            "type=f32,ne=[{},{}]{scale},next_norm={}{lora},out={},eps={:e}",
            self.n_elems,
            self.n_rows,
            self.next_norm as u8,
            format!("{:?}", self.out()).to_lowercase(),
            self.eps
        )
    }

    fn max_nmse(&self) -> f64 {
        max_nmse("rms_norm_add", "f32")
    }

    fn flops(&self) -> u64 {
        (6 + 4 * self.next_norm as u64 + 2 * self.lora_rank as u64) * self.elems()
    }

    fn bytes(&self) -> u64 {
        let lora = self.lora_rank as u64 * (self.n_elems as u64 + self.n_rows as u64);
        4 * ((3 + self.next_norm as u64) * self.elems() + 2 * self.n_elems as u64 + lora)
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
        let normed = rms_norm(&h, Some(&t(&next_weight, (1, n))?), self.eps)?;
        let rank = self.lora_rank as usize;
        let a: Vec<f32> = seeded(&format!("{name}/lora_a"), rank * n);
        let reference = match self.out() {
            Out::U => {
                let u = ops::mul_mat(&normed, &t(&a, (rank, n))?)?;
                let mut au = a.clone();
                au.resize(self.u_offset_elems() as usize, GUARD_VALUE);
                au.extend(u.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
                au
            }
            Out::Normed => normed.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
            Out::H => h.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
        };

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
        // A, then guard values up to and past u.
        let mut au_init = a;
        au_init.resize(reference.len() + GUARD_ELEMS, GUARD_VALUE);
        let a_and_u = upload_f32(ctx, "lora_a_and_u", &au_init)?;
        let output = Rc::clone(match self.out() {
            Out::U => &a_and_u,
            Out::Normed => &normed_out,
            Out::H => &h_out,
        });
        let (n_rows, n_elems, eps, next) = (self.n_rows, self.n_elems, self.eps, self.next_norm);
        let (lora_rank, u_offset_elems) = (self.lora_rank, self.u_offset_elems());
        Ok(Built {
            record: Box::new(move |batch| {
                let a = NormAdd {
                    src: &gsrc,
                    weight: &gw,
                    residual: &gres,
                    scale: gscale.as_deref(),
                    dst: &h_out,
                    next_norm: next.then_some((&*gnext, &*normed_out)),
                    lora_down: (lora_rank > 0).then_some(NormLoraDown {
                        a_and_u: &a_and_u,
                        rank_total: lora_rank,
                        u_offset_elems,
                    }),
                };
                rms_norm_add(batch, &a, n_rows, n_elems, eps)
            }),
            output,
            output_type: OutType::F32,
            reference,
        })
    }
}
