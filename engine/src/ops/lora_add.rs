//! The up-projection of a LoRA update added to a base product in place (`shaders/lora_add.wgsl`):
//! `y[t][y_first + c] += Σ_j B[c][j]·u[t][u_offset + j]`, where `u = A·x` came from `mul_mat` with A as an F32
//! weight. Not a ggml op: ggml applies LoRA as two `mul_mat`s and an `add`; this is the second product and the add
//! in one pass, reading y once.

use super::WG_SIZE;
use super::args::{check_buffer, check_distinct, checked_u32};
use crate::gpu::kernels::{Access, KernelKey, Requires, VariantSource, defines_with, variants_of};
use crate::gpu::{Batch, GpuBuffer, Grid, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoraAddKey;

/// Matches `Params` in `lora_add.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LoraAddParams {
    n_elems: u32,
    n_rows: u32,
    rank: u32,
    u_offset: u32,
    u_stride: u32,
    y_first: u32,
    y_stride: u32,
    b_offset: u32,
}
const _: () = assert!(size_of::<LoraAddParams>() == 32);

impl KernelKey for LoraAddKey {
    const FILE: &'static str = "lora_add.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("lora_add_f32_wg{WG_SIZE}")
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        defines_with(WG_SIZE, &[])
    }

    fn requires(&self) -> Requires {
        Requires::default()
    }

    fn all_variants() -> Vec<Self> {
        vec![LoraAddKey]
    }
}

/// A strided `[n_tokens][cols]` view: element (t, j) is `buffer[offset_elems + t·row_stride_elems + j]`.
#[derive(Debug, Clone, Copy)]
pub struct RowsView<'a> {
    pub buffer: &'a GpuBuffer,
    pub offset_elems: u32,
    pub row_stride_elems: u32,
}

/// `y(t, c) += Σ_j b[b_offset + c·rank + j]·u(t, j)` for `t < n_tokens`, `c < n_rows`, `j < rank`: B is
/// `[n_rows][rank]` f32 from element `b_offset_elems` of `b`.
#[allow(clippy::too_many_arguments)]
pub fn lora_add(
    batch: &mut Batch,
    b: &GpuBuffer,
    b_offset_elems: u32,
    n_rows: u32,
    rank: u32,
    u: RowsView,
    y: RowsView,
    n_tokens: u32,
) -> Result<()> {
    let op = "lora_add";
    let n = checked_u32(op, "n_tokens × n_rows", n_tokens as u64 * n_rows as u64)?;
    if n == 0 {
        return Ok(());
    }
    check_buffer(op, "b", b, (b_offset_elems as u64 + n_rows as u64 * rank as u64) * 4)?;
    for (what, view, cols) in [("u", &u, rank), ("y", &y, n_rows)] {
        let last = view.offset_elems as u64 + (n_tokens as u64 - 1) * view.row_stride_elems as u64 + cols as u64;
        checked_u32(op, what, last)?;
        check_buffer(op, what, view.buffer, last * 4)?;
    }
    check_distinct(op, u.buffer, y.buffer)?;
    check_distinct(op, b, y.buffer)?;
    let params = LoraAddParams {
        n_elems: n,
        n_rows,
        rank,
        u_offset: u.offset_elems,
        u_stride: u.row_stride_elems,
        y_first: y.offset_elems,
        y_stride: y.row_stride_elems,
        b_offset: b_offset_elems,
    };
    let grid = Grid::for_items(n as u64, WG_SIZE, batch.max_workgroups_per_dimension());
    batch.dispatch(&LoraAddKey, &[b, u.buffer, y.buffer], &params, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<LoraAddKey>()
}
