//! Cases for `lora_add`, the up-projection of a LoRA update added in place: `y(t, c) += Σ_j B[c][j]·u(t, j)`,
//! with `u` a slice of a stacked down-projection and `y` possibly a slice of wider rows (the gate half of a
//! `[gate | up]` product). The reference is candle's `u · Bᵀ` added to y's starting values; the columns of y
//! outside the slice must keep them.

use super::{Built, CaseResult, GUARD_ELEMS, GUARD_VALUE, OpCase, OutType, cpu, seeded, upload_f32};
use crate::tolerance::max_nmse;
use candle_core::Tensor;
use ferrogem::gpu::Context;
use ferrogem::ops::lora_add::{RowsView, lora_add};
use std::rc::Rc;

#[derive(Clone, Copy)]
pub struct LoraAddCase {
    n_rows: u32,
    rank: u32,
    n_tokens: u32,
    /// u(t, j) = u[u_offset + t·u_stride + j].
    u_offset: u32,
    u_stride: u32,
    /// y(t, c) = y[y_first + t·y_stride + c].
    y_first: u32,
    y_stride: u32,
    /// B starts this many elements into its buffer (a group's targets share one).
    b_offset: u32,
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let case = |n_rows, rank, n_tokens, u_offset, u_stride, y_first, y_stride| -> Box<dyn OpCase> {
        // Every case but the first reads B past a neighbour's block, as a group's second target does.
        let b_offset = if n_rows == 256 && rank == 8 { 0 } else { 4 * rank + 8 };
        Box::new(LoraAddCase { n_rows, rank, n_tokens, u_offset, u_stride, y_first, y_stride, b_offset })
    };
    vec![
        case(256, 8, 1, 0, 8, 0, 256),
        case(256, 1, 3, 0, 1, 0, 256),
        // q/k/v of one layer share u: k's slice of a [q 16 | k 16 | v 16] row.
        case(512, 16, 4, 16, 48, 0, 512),
        // The up half of a stacked [gate | up] product.
        case(384, 4, 7, 0, 8, 384, 768),
        case(1536, 64, 33, 0, 64, 0, 1536),
        // E2B shapes: a rank-16 update of the 6144-wide gate (decode) and of o_proj over a prompt chunk.
        case(6144, 16, 1, 0, 32, 0, 12288),
        case(1536, 16, 64, 16, 32, 0, 1536),
    ]
}

impl OpCase for LoraAddCase {
    fn op(&self) -> &'static str {
        "lora_add"
    }

    fn vars(&self) -> String {
        format!(
            "type=f32,rows={},rank={},tokens={},u=[{}+{}],y=[{}+{}],b_offset={}",
            self.n_rows,
            self.rank,
            self.n_tokens,
            self.u_offset,
            self.u_stride,
            self.y_first,
            self.y_stride,
            self.b_offset
        )
    }

    fn max_nmse(&self) -> f64 {
        max_nmse("lora_add", "f32")
    }

    fn flops(&self) -> u64 {
        2 * (self.n_rows * self.rank * self.n_tokens) as u64
    }

    fn bytes(&self) -> u64 {
        4 * (self.n_rows * self.rank + self.n_tokens * (self.rank + 2 * self.n_rows)) as u64
    }

    fn elems(&self) -> u64 {
        self.y_elems() as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let (rows, rank, n) = (self.n_rows as usize, self.rank as usize, self.n_tokens as usize);
        let b_all = seeded(&format!("{name}/b"), self.b_offset as usize + rows * rank);
        let b = b_all[self.b_offset as usize..].to_vec();
        let u_elems = self.u_offset as usize + (n - 1) * self.u_stride as usize + rank;
        let u = seeded(&format!("{name}/u"), u_elems);
        let y0 = seeded(&format!("{name}/y"), self.y_elems());
        // The reference: y0 everywhere, plus u_slice · Bᵀ on the slice.
        let u_slice: Vec<f32> = (0..n)
            .flat_map(|t| {
                let start = self.u_offset as usize + t * self.u_stride as usize;
                u[start..start + rank].to_vec()
            })
            .collect();
        let u_t = Tensor::from_vec(u_slice, (n, rank), &cpu())?;
        let b_t = Tensor::from_vec(b.clone(), (rows, rank), &cpu())?;
        let delta = u_t.matmul(&b_t.t()?)?.to_vec2::<f32>()?;
        let mut reference = y0.clone();
        for (t, row) in delta.iter().enumerate() {
            let start = self.y_first as usize + t * self.y_stride as usize;
            reference[start..start + rows].iter_mut().zip(row).for_each(|(r, d)| *r += d);
        }
        let mut y_init = y0;
        y_init.extend(std::iter::repeat_n(GUARD_VALUE, GUARD_ELEMS));
        let output = upload_f32(ctx, "y", &y_init)?;
        let (gb, gu) = (upload_f32(ctx, "b", &b_all)?, upload_f32(ctx, "u", &u)?);
        let (out, c) = (Rc::clone(&output), *self);
        Ok(Built {
            record: Box::new(move |batch| {
                let u = RowsView { buffer: &gu, offset_elems: c.u_offset, row_stride_elems: c.u_stride };
                let y = RowsView { buffer: &out, offset_elems: c.y_first, row_stride_elems: c.y_stride };
                lora_add(batch, &gb, c.b_offset, c.n_rows, c.rank, u, y, c.n_tokens)
            }),
            output,
            output_type: OutType::F32,
            reference,
        })
    }
}

impl LoraAddCase {
    /// y spans every row up to the last token's slice.
    fn y_elems(&self) -> usize {
        self.y_first as usize + (self.n_tokens as usize - 1) * self.y_stride as usize + self.n_rows as usize
    }
}
