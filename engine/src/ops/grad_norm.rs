//! The gradient scale AdamW reads (`adamw::AdamwState::grad_scale`): the micro-batch average and
//! torch.nn.utils.clip_grad_norm_'s clipping factor from the global L2 norm of every trainable gradient, each
//! tensor in its own buffer (`shaders/grad_norm.wgsl`). One dispatch per tensor and one to finish; nothing is read
//! back.

use super::WG_SIZE;
use super::args::{check_buffer, check_distinct, checked_u32};
use crate::gpu::kernels::{
    Access, BOOLS, KernelKey, Requires, VariantSource, defines_with, key_variants, reduction_name, variants_of,
};
use crate::gpu::{Batch, GpuBuffer, GpuError, Grid, Result};

/// Partial sums of squares the first pass writes: the `partials` buffer holds this many f32.
pub const GRAD_NORM_PARTIALS: u32 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GradNormKey {
    /// The second pass: partials to the scale.
    pub finalize: bool,
    pub subgroups: bool,
}

/// Matches `Params` in `grad_norm.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GradNormParams {
    n_elems: u32,
    n_partials: u32,
    max_norm: f32,
    accum_scale: f32,
    /// 1: the sums of squares add to the partials (every tensor after the first).
    accumulate: u32,
    _pad: [u32; 3],
}
const _: () = assert!(size_of::<GradNormParams>() == 32);

impl KernelKey for GradNormKey {
    const FILE: &'static str = "grad_norm.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        let pass = if self.finalize { "scale" } else { "sumsq" };
        format!("grad_norm_{pass}_f32_{}_wg{WG_SIZE}", reduction_name(self.subgroups))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        defines_with(WG_SIZE, &[("FINALIZE", self.finalize), ("SUBGROUPS", self.subgroups)])
    }

    fn requires(&self) -> Requires {
        Requires { f16: false, subgroups: self.subgroups, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        key_variants!(GradNormKey { finalize in BOOLS, subgroups in BOOLS })
    }
}

/// Writes `scale[0] = accum_scale · min(1, max_norm / (‖accum_scale · g‖₂ + 1e-6))`, g every gradient tensor of
/// `grads` (a buffer and its first `n_elems` f32) side by side; `max_norm` `None` leaves out the clipping.
/// `partials` holds [`GRAD_NORM_PARTIALS`] f32.
pub fn grad_scale(
    batch: &mut Batch,
    grads: &[(&GpuBuffer, u64)],
    partials: &GpuBuffer,
    scale: &GpuBuffer,
    max_norm: Option<f32>,
    accum_scale: f32,
) -> Result<()> {
    let op = "grad_norm";
    let bad = |reason: String| Err(GpuError::Unsupported { op: op.into(), reason });
    if max_norm.is_some_and(|m| !(m.is_finite() && m > 0.0)) {
        return bad(format!("max_norm must be finite and > 0, got {max_norm:?}"));
    }
    if !(accum_scale.is_finite() && accum_scale > 0.0) {
        return bad(format!("accum_scale must be finite and > 0, got {accum_scale}"));
    }
    if grads.is_empty() {
        return bad("no gradient tensors".into());
    }
    check_buffer(op, "partials", partials, GRAD_NORM_PARTIALS as u64 * 4)?;
    check_buffer(op, "scale", scale, 4)?;
    check_distinct(op, partials, scale)?;
    let mut params = GradNormParams {
        n_elems: 0,
        n_partials: GRAD_NORM_PARTIALS,
        max_norm: max_norm.unwrap_or(0.0),
        accum_scale,
        accumulate: 0,
        _pad: [0; 3],
    };
    for &(grad, n_elems) in grads {
        params.n_elems = checked_u32(op, "n_elems", n_elems)?;
        check_buffer(op, "grads", grad, n_elems * 4)?;
        check_distinct(op, grad, partials)?;
        check_distinct(op, grad, scale)?;
    }
    let subgroups = batch.caps().subgroups;
    let max_dim = batch.max_workgroups_per_dimension();
    let sums = GradNormKey { finalize: false, subgroups };
    for (i, &(grad, n_elems)) in grads.iter().enumerate() {
        params.n_elems = n_elems as u32;
        params.accumulate = u32::from(i > 0);
        batch.dispatch(&sums, &[grad, partials], &params, Grid::for_items(GRAD_NORM_PARTIALS as u64, 1, max_dim))?;
    }
    let finalize = GradNormKey { finalize: true, subgroups };
    batch.dispatch(&finalize, &[partials, scale], &params, Grid::for_items(1, 1, max_dim))
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<GradNormKey>()
}
