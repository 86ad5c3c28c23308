//! Cases for `lora_vec_add` and `lora_vec_geglu`, a LoRA group's update in one dispatch: u = A·x per token in
//! workgroup memory, then `y_k += B_k·u[slice_k]` for up to three targets (into one buffer, or into two or three
//! buffers: the case checks the buffer `checked`, and other cases check the others), or the gate/up updates and
//! GeGLU on a `[gate | up]` product. The reference is candle: `x·Aᵀ`, then each slice `·B_kᵀ` added to y's
//! starting values (and `ops::geglu` for the GLU form); columns outside the targets must keep their values.

use super::{Built, CaseResult, GUARD_ELEMS, GUARD_VALUE, OpCase, OutType, cpu, guarded_output, seeded, upload_f32};
use crate::reference::ops;
use crate::tolerance::max_nmse;
use candle_core::{Result, Tensor};
use ferrogem::gpu::{Context, GpuBuffer};
use ferrogem::ops::lora_add::RowsView;
use ferrogem::ops::lora_vec::{LoraDown, LoraUp, lora_down, lora_vec_add, lora_vec_geglu};
use std::rc::Rc;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// Every target adds into one buffer, side by side in its rows.
    OneBuffer,
    /// Each target adds into its own buffer; the case compares buffer `checked`.
    Buffers { checked: usize },
    /// Two targets: gate and up halves of one `[gate | up]` row; the output is the GeGLU.
    Geglu,
    /// Only the down-projection u = A·x, written out (`lora_down`).
    Down,
}

pub struct LoraVecCase {
    in_dim: usize,
    n_tokens: usize,
    /// (rows, rank) of each target.
    targets: Vec<(usize, usize)>,
    layout: Layout,
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let case = |in_dim, n_tokens, targets: &[(usize, usize)], layout| -> Box<dyn OpCase> {
        Box::new(LoraVecCase { in_dim, n_tokens, targets: targets.to_vec(), layout })
    };
    let qkv = [(256, 16), (64, 16), (64, 8)];
    let mut cases = vec![
        case(128, 1, &[(128, 8)], Layout::OneBuffer),
        case(200, 3, &[(96, 1), (33, 5)], Layout::OneBuffer),
        case(1536, 1, &[(2048, 16), (256, 16), (256, 16)], Layout::OneBuffer),
        case(6144, 4, &[(1536, 64)], Layout::OneBuffer),
        // The stacked rank at its limit (256) over passes of 32 rows.
        case(128, 2, &[(300, 200), (10, 56)], Layout::OneBuffer),
        case(512, 1, &[(384, 8), (384, 8)], Layout::Geglu),
        case(1536, 4, &[(6144, 16), (6144, 16)], Layout::Geglu),
        // Only the up half updated: the gate's rank is 0.
        case(256, 1, &[(512, 0), (512, 4)], Layout::Geglu),
        case(1536, 64, &[(0, 48)], Layout::Down),
        case(12288, 7, &[(0, 16)], Layout::Down),
        case(100, 3, &[(0, 256)], Layout::Down),
    ];
    for checked in 0..3 {
        cases.push(case(128, 2, &qkv, Layout::Buffers { checked }));
    }
    cases.push(case(128, 1, &qkv[..2], Layout::Buffers { checked: 1 }));
    cases
}

impl LoraVecCase {
    fn rank_total(&self) -> usize {
        self.targets.iter().map(|t| t.1).sum()
    }

    /// Where target k's first rank sits in u, and its B block in the shared buffer.
    fn offsets(&self) -> Vec<(usize, usize)> {
        let (mut first_rank, mut b_offset) = (0, 0);
        self.targets
            .iter()
            .map(|&(rows, rank)| {
                let at = (first_rank, b_offset);
                first_rank += rank;
                b_offset += rows * rank;
                at
            })
            .collect()
    }

    /// Row layout of target k's output: (buffer index, first column, row stride).
    fn y_layout(&self, k: usize) -> (usize, usize, usize) {
        match self.layout {
            Layout::OneBuffer | Layout::Geglu | Layout::Down => {
                let first: usize = self.targets[..k].iter().map(|t| t.0).sum();
                (0, first, self.targets.iter().map(|t| t.0).sum())
            }
            Layout::Buffers { .. } => (k, 0, self.targets[k].0),
        }
    }

    fn n_buffers(&self) -> usize {
        if let Layout::Buffers { .. } = self.layout { self.targets.len() } else { 1 }
    }

    fn buffer_elems(&self, buffer: usize) -> usize {
        let k = if let Layout::Buffers { .. } = self.layout { buffer } else { 0 };
        self.n_tokens * self.y_layout(k).2
    }

    /// Per output buffer, y after the update (before GeGLU for the GLU layout).
    fn updated(&self, a: &[f32], x: &[f32], b: &[f32], y0: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let (n, r) = (self.n_tokens, self.rank_total());
        let x = Tensor::from_slice(x, (n, self.in_dim), &cpu())?;
        let a = Tensor::from_slice(a, (r, self.in_dim), &cpu())?;
        let u = x.matmul(&a.t()?)?;
        let mut y = y0.to_vec();
        for (k, (&(rows, rank), &(first_rank, b_offset))) in self.targets.iter().zip(&self.offsets()).enumerate() {
            if rank == 0 {
                continue;
            }
            let bk = Tensor::from_slice(&b[b_offset..b_offset + rows * rank], (rows, rank), &cpu())?;
            let delta = u.narrow(1, first_rank, rank)?.matmul(&bk.t()?)?.to_vec2::<f32>()?;
            let (buf, first, stride) = self.y_layout(k);
            for (t, row) in delta.iter().enumerate() {
                let at = t * stride + first;
                y[buf][at..at + rows].iter_mut().zip(row).for_each(|(v, d)| *v += d);
            }
        }
        Ok(y)
    }
}

impl OpCase for LoraVecCase {
    fn op(&self) -> &'static str {
        match self.layout {
            Layout::Geglu => "lora_vec_geglu",
            Layout::Down => "lora_down",
            _ => "lora_vec_add",
        }
    }

    fn vars(&self) -> String {
        let targets: Vec<String> = self.targets.iter().map(|(rows, rank)| format!("{rows}x{rank}")).collect();
        format!(
            "type=f32,in={},tokens={},targets=[{}],layout={:?}",
            self.in_dim,
            self.n_tokens,
            targets.join(","),
            self.layout
        )
        .replace(' ', "")
    }

    fn max_nmse(&self) -> f64 {
        max_nmse(self.op(), "f32")
    }

    fn flops(&self) -> u64 {
        let down = 2 * self.rank_total() * self.in_dim;
        let up: usize = self.targets.iter().map(|(rows, rank)| 2 * rows * rank).sum();
        (self.n_tokens * (down + up)) as u64
    }

    fn bytes(&self) -> u64 {
        let weights = self.rank_total() * self.in_dim + self.targets.iter().map(|(r, k)| r * k).sum::<usize>();
        let cols: usize = self.targets.iter().map(|t| t.0).sum();
        4 * (weights + self.n_tokens * (self.in_dim + 2 * cols)) as u64
    }

    fn elems(&self) -> u64 {
        (self.rank_total() * self.in_dim).max(self.n_tokens * self.in_dim) as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let (n, r) = (self.n_tokens, self.rank_total());
        let b_len: usize = self.targets.iter().map(|(rows, rank)| rows * rank).sum();
        let a = seeded(&format!("{name}/a"), r * self.in_dim);
        let x = seeded(&format!("{name}/x"), n * self.in_dim);
        let b = seeded(&format!("{name}/b"), b_len);
        let y0: Vec<Vec<f32>> =
            (0..self.n_buffers()).map(|i| seeded(&format!("{name}/y{i}"), self.buffer_elems(i))).collect();
        let y = self.updated(&a, &x, &b, &y0)?;
        let with_guards = |v: &[f32]| [v, &[GUARD_VALUE; GUARD_ELEMS][..]].concat();
        let (ga, gx, gb) = (upload_f32(ctx, "a", &a)?, upload_f32(ctx, "x", &x)?, upload_f32(ctx, "b", &b)?);
        let ys: Vec<Rc<GpuBuffer>> = y0
            .iter()
            .enumerate()
            .map(|(i, v)| upload_f32(ctx, &format!("y{i}"), &with_guards(v)))
            .collect::<ferrogem::Result<_>>()?;
        let (output, reference) = match self.layout {
            Layout::Down => {
                let xt = Tensor::from_slice(&x, (n, self.in_dim), &cpu())?;
                let at = Tensor::from_slice(&a, (r, self.in_dim), &cpu())?;
                let u = xt.matmul(&at.t()?)?.flatten_all()?.to_vec1::<f32>()?;
                (guarded_output(ctx, n * r, OutType::F32)?, u)
            }
            Layout::Geglu => {
                let ffn = self.targets[0].0;
                let gu = Tensor::from_slice(&y[0], (n, 2 * ffn), &cpu())?;
                let act = ops::geglu(&gu.narrow(1, 0, ffn)?, &gu.narrow(1, ffn, ffn)?)?;
                let output = guarded_output(ctx, n * ffn, OutType::F32)?;
                (output, act.flatten_all()?.to_vec1::<f32>()?)
            }
            Layout::Buffers { checked } => (Rc::clone(&ys[checked]), y[checked].clone()),
            Layout::OneBuffer => (Rc::clone(&ys[0]), y[0].clone()),
        };
        let case = LoraVecCase { targets: self.targets.clone(), ..*self };
        let out = Rc::clone(&output);
        Ok(Built {
            record: Box::new(move |batch| {
                let down =
                    LoraDown { a: &ga, rank_total: r as u32, in_dim: case.in_dim as u32, x: &gx, n_tokens: n as u32 };
                let ups: Vec<LoraUp> = (0..case.targets.len())
                    .map(|k| {
                        let (buf, first, stride) = case.y_layout(k);
                        let (rows, rank) = case.targets[k];
                        let (first_rank, b_offset) = case.offsets()[k];
                        let y =
                            RowsView { buffer: &ys[buf], offset_elems: first as u32, row_stride_elems: stride as u32 };
                        LoraUp {
                            b_offset_elems: b_offset as u32,
                            n_rows: rows as u32,
                            rank: rank as u32,
                            first_rank: first_rank as u32,
                            y,
                        }
                    })
                    .collect();
                match case.layout {
                    Layout::Geglu => lora_vec_geglu(batch, &down, &gb, &ups[0], &ups[1], &out),
                    Layout::Down => lora_down(batch, &down, &out),
                    _ => lora_vec_add(batch, &down, &gb, &ups),
                }
            }),
            output,
            output_type: OutType::F32,
            reference,
        })
    }
}
