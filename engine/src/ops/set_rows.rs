//! ggml `set_rows`, the KV-cache write: `dst[ids[i]] = src[i]` for `n_ids` rows of `row_elems`. `src` is f32;
//! `dst` is f32, or f16 when the device grants SHADER_F16 (the f16 cache; the f32 cache is the fallback everywhere).
//! `ids` are u32 destination rows: ring slots (`pos % capacity`) are the caller's to compute. An id ≥ `n_dst_rows`
//! is never written; two equal ids race (unspecified winner, as in ggml).

use super::WG_SIZE;
use super::args::{check_buffer, check_distinct, checked_u32};
use super::binary::StorageType;
use crate::gpu::kernels::{Access, KernelKey, Requires, VariantSource, defines_with, key_variants, variants_of};
use crate::gpu::{Batch, GpuBuffer, Grid};
use crate::gpu::{GpuError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SetRowsKey {
    /// Storage of the destination; the source is always f32.
    pub dst: StorageType,
}

/// Matches `Params` in `set_rows.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SetRowsParams {
    n_elems: u32,
    row_elems: u32,
    n_dst_rows: u32,
    _pad: u32,
}
const _: () = assert!(size_of::<SetRowsParams>() == 16);

impl KernelKey for SetRowsKey {
    const FILE: &'static str = "set_rows.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        let t = match self.dst {
            StorageType::F32 => "f32",
            StorageType::F16 => "f16",
        };
        format!("set_rows_f32_{t}_wg{WG_SIZE}")
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        defines_with(WG_SIZE, &[])
    }

    fn requires(&self) -> Requires {
        Requires { f16: self.dst == StorageType::F16, subgroups: false, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        key_variants!(SetRowsKey { dst in [StorageType::F32, StorageType::F16] })
    }
}

/// `dst[ids[i]][..] = src[i][..]` for `i < n_ids`: `src` is `[n_ids][row_elems]` f32, `dst` is
/// `[n_dst_rows][row_elems]` of `dst_type`. Rows whose id is ≥ `n_dst_rows` are skipped.
#[allow(clippy::too_many_arguments)]
pub fn set_rows(
    batch: &mut Batch,
    src: &GpuBuffer,
    ids: &GpuBuffer,
    n_ids: u32,
    dst: &GpuBuffer,
    dst_type: StorageType,
    n_dst_rows: u32,
    row_elems: u32,
) -> Result<()> {
    let op = "set_rows";
    if row_elems == 0 {
        return Err(GpuError::Unsupported { op: op.into(), reason: "rows of zero elements".into() });
    }
    let n_elems = checked_u32(op, "n_ids × row_elems", n_ids as u64 * row_elems as u64)?;
    let dst_elems = n_dst_rows as u64 * row_elems as u64;
    checked_u32(op, "n_dst_rows × row_elems", dst_elems)?;
    check_buffer(op, "src", src, n_elems as u64 * 4)?;
    check_buffer(op, "ids", ids, n_ids as u64 * 4)?;
    check_buffer(op, "dst", dst, dst_elems * dst_type.elem_bytes())?;
    check_distinct(op, src, dst)?;
    check_distinct(op, ids, dst)?;
    let params = SetRowsParams { n_elems, row_elems, n_dst_rows, _pad: 0 };
    let grid = Grid::for_items(n_elems as u64, WG_SIZE, batch.max_workgroups_per_dimension());
    batch.dispatch(&SetRowsKey { dst: dst_type }, &[src, ids, dst], &params, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<SetRowsKey>()
}
