//! ggml `soft_max_ext` without ALiBi: `y = softmax(x·scale + mask)` over rows, max-subtracted, f32. The optional
//! additive mask has `n_mask_rows` rows broadcast over the input rows (row `r` uses mask row `r mod n_mask_rows`),
//! e.g. one row of −inf logit biases for suppressed tokens. A row with every entry −inf comes out as zeros.
//! For sampling and logit processing; attention fuses its own softmax.

use super::WG_SIZE;
use super::args::{check_buffer, check_distinct, checked_u32};
use crate::gpu::kernels::{
    Access, BOOLS, KernelKey, Requires, VariantSource, defines_with, key_variants, reduction_name, variants_of,
};
use crate::gpu::{Batch, GpuBuffer, Grid};
use crate::gpu::{GpuError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SoftMaxKey {
    pub mask: bool,
    pub subgroups: bool,
}

/// Matches `Params` in `soft_max.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SoftMaxParams {
    n_rows: u32,
    n_elems: u32,
    n_mask_rows: u32,
    scale: f32,
}
const _: () = assert!(size_of::<SoftMaxParams>() == 16);

impl KernelKey for SoftMaxKey {
    const FILE: &'static str = "soft_max.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        let mask = if self.mask { "_mask" } else { "" };
        format!("soft_max{mask}_f32_{}_wg{WG_SIZE}", reduction_name(self.subgroups))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        defines_with(WG_SIZE, &[("MASK", self.mask), ("SUBGROUPS", self.subgroups)])
    }

    fn requires(&self) -> Requires {
        Requires { f16: false, subgroups: self.subgroups, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        key_variants!(SoftMaxKey { mask in BOOLS, subgroups in BOOLS })
    }
}

/// An additive f32 mask of `n_rows` rows of the input's row length.
#[derive(Clone, Copy)]
pub struct SoftMaxMask<'a> {
    pub buffer: &'a GpuBuffer,
    pub n_rows: u32,
}

/// `dst[r] = softmax(src[r]·scale + mask[r mod mask.n_rows])` for the rows of a row-major `[n_rows][n_elems]` f32
/// tensor. `dst` must be a different buffer from `src` and the mask.
pub fn soft_max(
    batch: &mut Batch,
    src: &GpuBuffer,
    mask: Option<SoftMaxMask>,
    dst: &GpuBuffer,
    n_rows: u32,
    n_elems: u32,
    scale: f32,
) -> Result<()> {
    let op = "soft_max";
    let total_elems = n_rows as u64 * n_elems as u64;
    checked_u32(op, "n_rows × n_elems", total_elems)?;
    if n_rows == 0 {
        return Ok(());
    }
    if n_elems == 0 {
        return Err(GpuError::Unsupported { op: op.into(), reason: "rows of zero elements".into() });
    }
    if !scale.is_finite() {
        return Err(GpuError::Unsupported { op: op.into(), reason: format!("scale {scale} is not finite") });
    }
    check_buffer(op, "src", src, total_elems * 4)?;
    check_buffer(op, "dst", dst, total_elems * 4)?;
    check_distinct(op, src, dst)?;
    let n_mask_rows = match mask {
        Some(m) => {
            if m.n_rows == 0 {
                return Err(GpuError::Unsupported { op: op.into(), reason: "a mask of zero rows".into() });
            }
            check_buffer(op, "mask", m.buffer, m.n_rows as u64 * n_elems as u64 * 4)?;
            checked_u32(op, "mask elements", m.n_rows as u64 * n_elems as u64)?;
            check_distinct(op, m.buffer, dst)?;
            m.n_rows
        }
        None => 1,
    };
    let key = SoftMaxKey { mask: mask.is_some(), subgroups: batch.caps().subgroups };
    let params = SoftMaxParams { n_rows, n_elems, n_mask_rows, scale };
    let grid = Grid::for_items(n_rows as u64, 1, batch.max_workgroups_per_dimension());
    // Without a mask, src stands in for the unused mask binding (inputs are read-only, so they may alias).
    batch.dispatch(&key, &[src, mask.map_or(src, |m| m.buffer), dst], &params, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<SoftMaxKey>()
}
