//! Cases for ggml `sum_rows` (f32).

use super::{Built, CaseResult, OpCase, OutType, cpu, guarded_output, seeded, upload_f32};
use crate::tolerance::max_nmse;
use candle_core::Tensor;
use ferrogem::gpu::Context;
use ferrogem::ops::sum_rows::sum_rows;
use std::rc::Rc;

pub struct SumRowsCase {
    cols: u32,
    rows: u32,
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    [(1, 1), (7, 5), (13, 11), (256, 13), (1000, 7), (2048, 64), (4099, 3)]
        .into_iter()
        .map(|(cols, rows)| Box::new(SumRowsCase { cols, rows }) as Box<dyn OpCase>)
        .collect()
}

impl OpCase for SumRowsCase {
    fn op(&self) -> &'static str {
        "sum_rows"
    }

    fn vars(&self) -> String {
        format!("type=f32,ne=[{},{}]", self.cols, self.rows)
    }

    fn max_nmse(&self) -> f64 {
        max_nmse("sum_rows", "f32")
    }

    fn flops(&self) -> u64 {
        self.cols as u64 * self.rows as u64
    }

    fn bytes(&self) -> u64 {
        4 * (self.cols as u64 + 1) * self.rows as u64
    }

    fn elems(&self) -> u64 {
        self.cols as u64 * self.rows as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let (cols, rows) = (self.cols as usize, self.rows as usize);
        let x = seeded(&self.name(), rows * cols);
        let reference = Tensor::from_vec(x.clone(), (rows, cols), &cpu())?.sum(1)?.to_vec1::<f32>()?;
        let src = upload_f32(ctx, "src", &x)?;
        let output = guarded_output(ctx, rows, OutType::F32)?;
        let (out, n_rows, n_cols) = (Rc::clone(&output), self.rows, self.cols);
        Ok(Built {
            record: Box::new(move |batch| sum_rows(batch, &src, &out, n_rows, n_cols)),
            output,
            output_type: OutType::F32,
            reference,
        })
    }
}
