//! ggml `sum_rows`: one f32 sum per row, reduced with subgroups where the device grants them.

use super::WG_SIZE;
use crate::gpu::kernels::{Access, BOOLS, KernelKey, Requires, defines_with, key_variants, reduction_name};
use crate::gpu::{Batch, GpuBuffer, Grid};
use crate::gpu::{GpuError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SumRowsKey {
    pub subgroups: bool,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SumRowsParams {
    n_rows: u32,
    n_cols: u32,
    _pad: [u32; 2],
}
const _: () = assert!(size_of::<SumRowsParams>() == 16);

impl KernelKey for SumRowsKey {
    const FILE: &'static str = "sum_rows.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("sum_rows_f32_{}_wg{WG_SIZE}", reduction_name(self.subgroups))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        defines_with(WG_SIZE, &[("SUBGROUPS", self.subgroups)])
    }

    fn requires(&self) -> Requires {
        Requires { f16: false, subgroups: self.subgroups, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        key_variants!(SumRowsKey { subgroups in BOOLS })
    }
}

/// dst[r] = sum(src[r, ..]) for a row-major [n_rows, n_cols] f32 tensor.
pub fn sum_rows(batch: &mut Batch, src: &GpuBuffer, dst: &GpuBuffer, n_rows: u32, n_cols: u32) -> Result<()> {
    let (src_bytes, dst_bytes) = (n_rows as u64 * n_cols as u64 * 4, n_rows as u64 * 4);
    if src.size_bytes() < src_bytes || dst.size_bytes() < dst_bytes || n_rows as u64 * n_cols as u64 > u32::MAX as u64 {
        return Err(GpuError::Unsupported {
            op: "sum_rows".into(),
            reason: format!(
                "[{n_rows}, {n_cols}] needs {src_bytes} source and {dst_bytes} destination bytes; got {} and {}",
                src.size_bytes(),
                dst.size_bytes()
            ),
        });
    }
    let key = SumRowsKey { subgroups: batch.caps().subgroups };
    let grid = Grid::for_items(n_rows as u64, 1, batch.max_workgroups_per_dimension());
    batch.dispatch(&key, &[src, dst], &SumRowsParams { n_rows, n_cols, _pad: [0; 2] }, grid)
}
