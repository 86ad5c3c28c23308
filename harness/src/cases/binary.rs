//! Cases for ggml `add` and `mul` in f32 and f16 storage.

use super::{Built, CaseResult, OpCase, OutType, cpu, guarded_output, seeded};
use crate::tolerance::max_nmse;
use candle_core::{DType, Tensor};
use ferrogem::gpu::kernels::Requires;
use ferrogem::gpu::{Category, Context};
use ferrogem::ops::binary::{BinaryOp, StorageType, binary};
use std::rc::Rc;

pub struct BinaryCase {
    op: BinaryOp,
    storage: StorageType,
    n: usize,
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for op in [BinaryOp::Add, BinaryOp::Mul] {
        for storage in [StorageType::F32, StorageType::F16] {
            for n in [1, 7, 13, 256, 1000, 4099] {
                cases.push(Box::new(BinaryCase { op, storage, n }));
            }
        }
    }
    cases
}

fn dtype_name(s: StorageType) -> &'static str {
    match s {
        StorageType::F32 => "f32",
        StorageType::F16 => "f16",
    }
}

impl OpCase for BinaryCase {
    fn op(&self) -> &'static str {
        match self.op {
            BinaryOp::Add => "add",
            BinaryOp::Mul => "mul",
        }
    }

    fn vars(&self) -> String {
        format!("type={},ne=[{}]", dtype_name(self.storage), self.n)
    }

    fn requires(&self) -> Requires {
        Requires { f16: self.storage == StorageType::F16, subgroups: false, coop_matrix: false }
    }

    fn max_nmse(&self) -> f64 {
        max_nmse(self.op(), dtype_name(self.storage))
    }

    fn flops(&self) -> u64 {
        self.n as u64
    }

    fn bytes(&self) -> u64 {
        3 * self.n as u64 * self.storage.elem_bytes()
    }

    fn elems(&self) -> u64 {
        self.n as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let dtype = match self.storage {
            StorageType::F32 => DType::F32,
            StorageType::F16 => DType::F16,
        };
        let a = Tensor::from_vec(seeded(&format!("{name}/a"), self.n), self.n, &cpu())?.to_dtype(dtype)?;
        let b = Tensor::from_vec(seeded(&format!("{name}/b"), self.n), self.n, &cpu())?.to_dtype(dtype)?;
        let reference = match self.op {
            BinaryOp::Add => (&a + &b)?,
            BinaryOp::Mul => (&a * &b)?,
        };
        let bytes_of = |t: &Tensor| -> CaseResult<Vec<u8>> {
            Ok(match self.storage {
                StorageType::F32 => bytemuck::cast_slice(&t.to_vec1::<f32>()?).to_vec(),
                StorageType::F16 => bytemuck::cast_slice(&t.to_vec1::<half::f16>()?).to_vec(),
            })
        };
        let ga = Rc::new(ctx.upload("a", Category::Scratch, &bytes_of(&a)?)?);
        let gb = Rc::new(ctx.upload("b", Category::Scratch, &bytes_of(&b)?)?);
        let out_type = match self.storage {
            StorageType::F32 => OutType::F32,
            StorageType::F16 => OutType::F16,
        };
        let output = guarded_output(ctx, self.n, out_type)?;
        let (op, storage, n, out) = (self.op, self.storage, self.n as u64, Rc::clone(&output));
        Ok(Built {
            record: Box::new(move |batch| binary(batch, op, storage, &ga, &gb, &out, n)),
            output,
            output_type: out_type,
            reference: reference.to_dtype(DType::F32)?.to_vec1()?,
        })
    }
}
