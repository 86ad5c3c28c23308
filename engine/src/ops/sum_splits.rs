//! Adds the partial sums of work split into independent parts (`sum_splits.wgsl`): a prompt's product split on k
//! (`mul_mat`), the input gradient split on rows (`mul_mat_grad`). Splitting fills a GPU that a few long sums
//! would leave idle; the sum is one more pass over the partials.

use super::WG_SIZE;
use crate::gpu::kernels::{Access, KernelKey, Requires, VariantSource, variants_of};
use crate::gpu::{Batch, GpuBuffer, Grid, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SumSplitsKey;

/// Matches `Params` in `sum_splits.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SumSplitsParams {
    n_vec4: u32,
    n_splits: u32,
    _pad: [u32; 2],
}

impl KernelKey for SumSplitsKey {
    const FILE: &'static str = "sum_splits.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("sum_splits_f32_wg{WG_SIZE}")
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        vec![("WG_SIZE", format!("{WG_SIZE}u"))]
    }

    fn requires(&self) -> Requires {
        Requires::default()
    }

    fn all_variants() -> Vec<Self> {
        vec![SumSplitsKey]
    }
}

/// `dst[i] = Σ_s partials[s·n_elems + i]` for i < `n_elems` (a multiple of 4) and s < `n_splits`. The callers check
/// that `partials` holds the splits and differs from `dst`.
pub(crate) fn sum_splits(
    batch: &mut Batch,
    partials: &GpuBuffer,
    dst: &GpuBuffer,
    n_elems: u32,
    n_splits: u32,
) -> Result<()> {
    let n_vec4 = n_elems / 4;
    let params = SumSplitsParams { n_vec4, n_splits, _pad: [0; 2] };
    let grid = Grid::for_items(n_vec4 as u64, WG_SIZE, batch.max_workgroups_per_dimension());
    batch.dispatch(&SumSplitsKey, &[partials, dst], &params, grid)
}

pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<SumSplitsKey>()
}
