//! ggml `rms_norm`, optionally fused with the multiply by a weight (ggml `rms_norm` + `mul`): over rows of
//! `n_elems`, `y = x / sqrt(mean(x²) + eps) ⊙ w`. Without a weight it is Gemma 4's V norm. A per-head norm (Q/K
//! norms, the PLE projection norm) is the same call over rows of `head_dim` with one `[head_dim]` weight shared by
//! every row. Reduction in f32 through `shaders/include/reduce.wgsl`, with subgroups where the device grants them.

use super::WG_SIZE;
use super::args::{check_buffer, check_distinct, norm_rows};
use crate::gpu::Result;
use crate::gpu::kernels::{
    Access, BOOLS, KernelKey, Requires, VariantSource, defines_with, key_variants, reduction_name, variants_of,
};
use crate::gpu::{Batch, GpuBuffer, Grid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RmsNormKey {
    /// Multiply by a weight of one row's length.
    pub weight: bool,
    pub subgroups: bool,
}

/// Matches `Params` in `rms_norm.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RmsNormParams {
    n_rows: u32,
    n_elems: u32,
    eps: f32,
    _pad: u32,
}
const _: () = assert!(size_of::<RmsNormParams>() == 16);

impl KernelKey for RmsNormKey {
    const FILE: &'static str = "rms_norm.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        let weight = if self.weight { "_mul" } else { "" };
        format!("rms_norm{weight}_f32_{}_wg{WG_SIZE}", reduction_name(self.subgroups))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        defines_with(WG_SIZE, &[("WEIGHT", self.weight), ("SUBGROUPS", self.subgroups)])
    }

    fn requires(&self) -> Requires {
        Requires { f16: false, subgroups: self.subgroups, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        key_variants!(RmsNormKey { weight in BOOLS, subgroups in BOOLS })
    }
}

/// `dst[r] = src[r] / sqrt(mean(src[r]²) + eps) ⊙ weight` for the `n_rows` rows of a row-major
/// `[n_rows][n_elems]` f32 tensor; `weight` (f32, `n_elems` values) is optional. `dst` must be a different buffer
/// from `src` (wgpu rejects a buffer bound both read-only and writable in one dispatch).
pub fn rms_norm(
    batch: &mut Batch,
    src: &GpuBuffer,
    weight: Option<&GpuBuffer>,
    dst: &GpuBuffer,
    n_rows: u32,
    n_elems: u32,
    eps: f32,
) -> Result<()> {
    let op = "rms_norm";
    let Some(total_elems) = norm_rows(op, n_rows, n_elems, eps)? else { return Ok(()) };
    check_distinct(op, src, dst)?;
    check_buffer(op, "src", src, total_elems * 4)?;
    check_buffer(op, "dst", dst, total_elems * 4)?;
    if let Some(w) = weight {
        check_buffer(op, "weight", w, n_elems as u64 * 4)?;
    }
    let key = RmsNormKey { weight: weight.is_some(), subgroups: batch.caps().subgroups };
    let params = RmsNormParams { n_rows, n_elems, eps, _pad: 0 };
    let grid = Grid::for_items(n_rows as u64, 1, batch.max_workgroups_per_dimension());
    // Without a weight, src stands in for the unused weight binding (inputs are read-only, so they may alias).
    batch.dispatch(&key, &[src, weight.unwrap_or(src), dst], &params, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<RmsNormKey>()
}
