//! Elementwise binary ops (ggml `add`, `mul`) on equally shaped f32 or f16 tensors.

use super::WG_SIZE;
use crate::gpu::kernels::{Access, KernelKey, Requires, defines_with, key_variants};
use crate::gpu::{Batch, GpuBuffer, Grid};
use crate::gpu::{GpuError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Mul,
}

/// Storage type of the tensors; arithmetic is always f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageType {
    F32,
    F16,
}

impl StorageType {
    pub fn elem_bytes(self) -> u64 {
        match self {
            StorageType::F32 => 4,
            StorageType::F16 => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BinaryKey {
    pub op: BinaryOp,
    pub storage: StorageType,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BinaryParams {
    n_elems: u32,
    _pad: [u32; 3],
}
const _: () = assert!(size_of::<BinaryParams>() == 16);

impl KernelKey for BinaryKey {
    const FILE: &'static str = "binary.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        let op = match self.op {
            BinaryOp::Add => "add",
            BinaryOp::Mul => "mul",
        };
        let t = match self.storage {
            StorageType::F32 => "f32",
            StorageType::F16 => "f16",
        };
        format!("binary_{op}_{t}_wg{WG_SIZE}")
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        defines_with(WG_SIZE, &[("MUL", self.op == BinaryOp::Mul)])
    }

    fn requires(&self) -> Requires {
        Requires { f16: self.storage == StorageType::F16, subgroups: false, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        key_variants!(BinaryKey { op in [BinaryOp::Add, BinaryOp::Mul], storage in [StorageType::F32, StorageType::F16] })
    }
}

/// dst = a OP b over the first `n_elems` elements.
pub fn binary(
    batch: &mut Batch,
    op: BinaryOp,
    storage: StorageType,
    a: &GpuBuffer,
    b: &GpuBuffer,
    dst: &GpuBuffer,
    n_elems: u64,
) -> Result<()> {
    let needed_bytes = n_elems * storage.elem_bytes();
    for t in [a, b, dst] {
        if t.size_bytes() < needed_bytes {
            return Err(GpuError::Unsupported {
                op: "binary".into(),
                reason: format!(
                    "`{}` holds {} bytes, {n_elems} elements need {needed_bytes}",
                    t.label(),
                    t.size_bytes()
                ),
            });
        }
    }
    let n_elems_u32 = u32::try_from(n_elems).map_err(|_| GpuError::Unsupported {
        op: "binary".into(),
        reason: format!("{n_elems} elements exceed the 2^32 index range"),
    })?;
    let grid = Grid::for_items(n_elems, WG_SIZE, batch.max_workgroups_per_dimension());
    batch.dispatch(&BinaryKey { op, storage }, &[a, b, dst], &BinaryParams { n_elems: n_elems_u32, _pad: [0; 3] }, grid)
}
