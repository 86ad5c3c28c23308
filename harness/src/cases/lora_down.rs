//! Cases for `lora_down`, a LoRA group's down-projections: u[t] = A·x[t] with every target's A stacked, one
//! workgroup per row of A, slice of its columns and block of 4 tokens. The reference is candle's `x·Aᵀ` on each
//! slice. (The products add `B·u` with `lora_add`, or in the mat-vec's epilogue, which sums the slices' parts:
//! `mul_mat_vec` and `mul_mat_vec_geglu` cases with `lora=`.)

use super::{Built, CaseResult, OpCase, OutType, cpu, guarded_output, seeded, upload_f32};
use crate::tolerance::max_nmse;
use candle_core::Tensor;
use ferrogem::gpu::Context;
use ferrogem::ops::lora_down::{LoraDown, lora_down, row_parts};
use std::rc::Rc;

pub struct LoraDownCase {
    in_dim: usize,
    n_tokens: usize,
    rank_total: usize,
    /// Slices of the columns, each its own part of u.
    k_parts: usize,
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    // E2B's q/k/v for one decode step and for a prompt chunk, the double-wide down_proj with a partial last block
    // of 4 tokens, odd widths and ranks, and a stacked rank of several adapters; then decode's sliced rows (E2B's
    // down_proj and q/k/v) and slices of odd length, the last one short.
    let whole = [(1536, 1, 48), (1536, 64, 48), (12288, 7, 16), (6144, 2, 16), (200, 3, 13), (100, 5, 256)]
        .map(|(in_dim, n_tokens, rank_total)| (in_dim, n_tokens, rank_total, 1));
    let sliced = [(12288, 1, 16), (6144, 2, 16), (1536, 5, 48)]
        .map(|(in_dim, n_tokens, rank_total)| (in_dim, n_tokens, rank_total, row_parts(in_dim as u32) as usize));
    whole
        .into_iter()
        .chain(sliced)
        .chain([(200, 3, 13, 3)])
        .map(|(in_dim, n_tokens, rank_total, k_parts)| {
            Box::new(LoraDownCase { in_dim, n_tokens, rank_total, k_parts }) as Box<dyn OpCase>
        })
        .collect()
}

impl OpCase for LoraDownCase {
    fn op(&self) -> &'static str {
        "lora_down"
    }

    fn vars(&self) -> String {
        let parts = if self.k_parts > 1 { format!(",parts={}", self.k_parts) } else { String::new() };
        format!("type=f32,in={},tokens={},rank={}{parts}", self.in_dim, self.n_tokens, self.rank_total)
    }

    fn max_nmse(&self) -> f64 {
        max_nmse(self.op(), "f32")
    }

    fn flops(&self) -> u64 {
        (2 * self.n_tokens * self.rank_total * self.in_dim) as u64
    }

    fn bytes(&self) -> u64 {
        4 * (self.rank_total * self.in_dim + self.n_tokens * (self.in_dim + self.k_parts * self.rank_total)) as u64
    }

    fn elems(&self) -> u64 {
        (self.rank_total * self.in_dim).max(self.n_tokens * self.in_dim) as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let (n, r, k, parts) = (self.n_tokens, self.rank_total, self.in_dim, self.k_parts);
        let a = seeded(&format!("{name}/a"), r * k);
        let x = seeded(&format!("{name}/x"), n * k);
        let xt = Tensor::from_slice(&x, (n, k), &cpu())?;
        let at = Tensor::from_slice(&a, (r, k), &cpu())?;
        // [n][parts][r]: each slice's product, side by side.
        let slice = k.div_ceil(parts);
        let part_products = (0..parts)
            .map(|p| {
                let (first, len) = (p * slice, slice.min(k - (p * slice).min(k)));
                Ok(xt.narrow(1, first, len)?.matmul(&at.narrow(1, first, len)?.t()?)?)
            })
            .collect::<CaseResult<Vec<Tensor>>>()?;
        let reference = Tensor::stack(&part_products, 1)?.flatten_all()?.to_vec1::<f32>()?;
        let (ga, gx) = (upload_f32(ctx, "a", &a)?, upload_f32(ctx, "x", &x)?);
        let output = guarded_output(ctx, n * parts * r, OutType::F32)?;
        let out = Rc::clone(&output);
        let down = (r as u32, k as u32, n as u32, parts as u32);
        Ok(Built {
            record: Box::new(move |batch| {
                let (rank_total, in_dim, n_tokens, k_parts) = down;
                lora_down(batch, &LoraDown { a: &ga, rank_total, in_dim, x: &gx, n_tokens, k_parts }, &out)
            }),
            output,
            output_type: OutType::F32,
            reference,
        })
    }
}
