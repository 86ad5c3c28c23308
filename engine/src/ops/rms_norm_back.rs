//! ggml `rms_norm_back`, with the weight of the fused multiply: the input gradient of `rms_norm` for training
//! (`shaders/rms_norm_back.wgsl` has the formula). Rows of `n_elems`, f32; the weight's gradient is not computed
//! (norms stay frozen under LoRA).

use super::WG_SIZE;
use super::args::{check_buffer, check_distinct, norm_rows};
use crate::gpu::Result;
use crate::gpu::kernels::{
    Access, BOOLS, KernelKey, Requires, VariantSource, defines_with, key_variants, reduction_name, variants_of,
};
use crate::gpu::{Batch, GpuBuffer, Grid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RmsNormBackKey {
    pub weight: bool,
    pub subgroups: bool,
}

/// Matches `Params` in `rms_norm_back.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RmsNormBackParams {
    n_rows: u32,
    n_elems: u32,
    eps: f32,
    _pad: u32,
}
const _: () = assert!(size_of::<RmsNormBackParams>() == 16);

impl KernelKey for RmsNormBackKey {
    const FILE: &'static str = "rms_norm_back.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        let weight = if self.weight { "_mul" } else { "" };
        format!("rms_norm{weight}_back_f32_{}_wg{WG_SIZE}", reduction_name(self.subgroups))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        defines_with(WG_SIZE, &[("WEIGHT", self.weight), ("SUBGROUPS", self.subgroups)])
    }

    fn requires(&self) -> Requires {
        Requires { f16: false, subgroups: self.subgroups, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        key_variants!(RmsNormBackKey { weight in BOOLS, subgroups in BOOLS })
    }
}

/// `dx` = the gradient, with respect to `x`, of `Σ dy ⊙ rms_norm(x, weight, eps)` over `n_rows` rows of `n_elems`
/// f32 values; `weight` is optional as in `rms_norm`. `dx` must differ from `x` and `dy`.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_back(
    batch: &mut Batch,
    x: &GpuBuffer,
    weight: Option<&GpuBuffer>,
    dy: &GpuBuffer,
    dx: &GpuBuffer,
    n_rows: u32,
    n_elems: u32,
    eps: f32,
) -> Result<()> {
    let op = "rms_norm_back";
    let Some(total_elems) = norm_rows(op, n_rows, n_elems, eps)? else { return Ok(()) };
    check_distinct(op, x, dx)?;
    check_distinct(op, dy, dx)?;
    for (what, buffer) in [("x", x), ("dy", dy), ("dx", dx)] {
        check_buffer(op, what, buffer, total_elems * 4)?;
    }
    if let Some(w) = weight {
        check_buffer(op, "weight", w, n_elems as u64 * 4)?;
        check_distinct(op, w, dx)?;
    }
    let key = RmsNormBackKey { weight: weight.is_some(), subgroups: batch.caps().subgroups };
    let params = RmsNormBackParams { n_rows, n_elems, eps, _pad: 0 };
    let grid = Grid::for_items(n_rows as u64, 1, batch.max_workgroups_per_dimension());
    batch.dispatch(&key, &[x, weight.unwrap_or(x), dy, dx], &params, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<RmsNormBackKey>()
}
