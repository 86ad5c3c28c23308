//! ggml `get_rows`: gathers rows `ids[i]` of a weight table in any of [`WEIGHT_TYPES`] into f32 (the embedding
//! lookup; the model scales by √H separately). The dequantization is the one the mul_mat kernels use
//! (`shaders/include/quant_blocks.wgsl`), so a gather also checks those block readers against CPU references.
//!
//! Out-of-range ids never read outside the table: [`get_rows`] writes a zero row for them. For a table split on
//! rows (`SplitTensor`), [`get_rows_part`] gathers only the ids that fall in one part and leaves the other output
//! rows untouched, so one dispatch per part fills every row once.

use super::WG_SIZE;
use super::args::check_binding;
use super::weights::{WEIGHT_TYPES, checked_row_bytes, type_stem, weight_defines};
use crate::gpu::kernels::{Access, KernelKey, Requires, VariantSource, variants_of};
use crate::gpu::{Batch, GpuBuffer, Grid};
use crate::gpu::{GpuError, Result};
use crate::quant::QuantType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GetRowsKey {
    pub ttype: QuantType,
}

impl KernelKey for GetRowsKey {
    const FILE: &'static str = "get_rows.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("get_rows_{}_f32_wg{WG_SIZE}", type_stem(self.ttype))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        let mut d = weight_defines(self.ttype);
        d.push(("WG_SIZE", format!("{WG_SIZE}u")));
        d
    }

    fn requires(&self) -> Requires {
        Requires::default()
    }

    fn all_variants() -> Vec<Self> {
        WEIGHT_TYPES.iter().map(|&ttype| GetRowsKey { ttype }).collect()
    }
}

/// Matches `Params` in `get_rows.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GetRowsParams {
    row_elems: u32,
    n_table_rows: u32,
    n_ids: u32,
    row_bytes: u32,
    first_row: u32,
    zero_outside: u32,
    _pad: [u32; 2],
}
const _: () = assert!(size_of::<GetRowsParams>() == 32);

/// dst[i] = table[ids[i]] dequantized to f32, for a `[n_table_rows][row_elems]` table of `ttype`; dst is
/// `[n_ids][row_elems]` f32. An id ≥ `n_table_rows` yields a row of zeros.
#[allow(clippy::too_many_arguments)]
pub fn get_rows(
    batch: &mut Batch,
    table: &GpuBuffer,
    ttype: QuantType,
    row_elems: u32,
    n_table_rows: u32,
    ids: &GpuBuffer,
    n_ids: u32,
    dst: &GpuBuffer,
) -> Result<()> {
    record(batch, table, ttype, row_elems, 0, n_table_rows, true, ids, n_ids, dst)
}

/// The gather for one part of a table split on rows: `table_part` holds global rows
/// `first_row..first_row + n_part_rows`. Only output rows whose id falls in the part are written.
#[allow(clippy::too_many_arguments)]
pub fn get_rows_part(
    batch: &mut Batch,
    table_part: &GpuBuffer,
    ttype: QuantType,
    row_elems: u32,
    first_row: u32,
    n_part_rows: u32,
    ids: &GpuBuffer,
    n_ids: u32,
    dst: &GpuBuffer,
) -> Result<()> {
    record(batch, table_part, ttype, row_elems, first_row, n_part_rows, false, ids, n_ids, dst)
}

#[allow(clippy::too_many_arguments)]
fn record(
    batch: &mut Batch,
    table: &GpuBuffer,
    ttype: QuantType,
    row_elems: u32,
    first_row: u32,
    n_table_rows: u32,
    zero_outside: bool,
    ids: &GpuBuffer,
    n_ids: u32,
    dst: &GpuBuffer,
) -> Result<()> {
    let op = "get_rows";
    let row_bytes = checked_row_bytes(op, ttype, row_elems)?;
    if row_elems == 0 {
        return Err(GpuError::Unsupported { op: op.into(), reason: "rows of zero elements".into() });
    }
    if n_ids == 0 {
        return Ok(());
    }
    let max_binding = batch.caps().max_storage_buffer_binding_bytes;
    check_binding(op, "table", table, n_table_rows as u64 * row_bytes, max_binding)?;
    check_binding(op, "ids", ids, n_ids as u64 * 4, max_binding)?;
    check_binding(op, "dst", dst, n_ids as u64 * row_elems as u64 * 4, max_binding)?;
    let params = GetRowsParams {
        row_elems,
        n_table_rows,
        n_ids,
        row_bytes: row_bytes as u32,
        first_row,
        zero_outside: zero_outside as u32,
        _pad: [0; 2],
    };
    let grid = Grid::for_items(n_ids as u64 * (row_elems / 8) as u64, WG_SIZE, batch.max_workgroups_per_dimension());
    batch.dispatch(&GetRowsKey { ttype }, &[table, ids, dst], &params, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<GetRowsKey>()
}
