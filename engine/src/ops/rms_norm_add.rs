//! `rms_norm_add`: a post-norm folded into the residual add that follows it (llama.cpp's Vulkan backend fuses
//! RMS_NORM+MUL+ADD(+MUL) the same way): `h = (residual + rms(src) ⊙ w) · scale`, and optionally the pre-norm of
//! whatever reads `h` next, `normed = rms(h) ⊙ next_w`, from the same workgroup. In a Gemma layer this turns
//! post-norm, add, layer scale and the next pre-norm (four dispatches) into one. With a [`NormLoraDown`] it also
//! makes the LoRA down-projections of the group that reads the pre-norm (`u = A·normed`), so a decoding layer's
//! q/k/v and gate/up updates need no `lora_down` dispatch of their own.

use super::WG_SIZE;
use super::args::{check_buffer, check_outputs, norm_rows};
use crate::gpu::kernels::{
    Access, BOOLS, KernelKey, Requires, VariantSource, defines_with, key_variants, reduction_name, variants_of,
};
use crate::gpu::{Batch, GpuBuffer, Grid};
use crate::gpu::{GpuError, Result};

/// `NEXT_NORM` adds the `normed` output binding, hence a const parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RmsNormAddKey<const NEXT_NORM: bool> {
    /// Multiply the sum by a scalar read from a 1-element buffer.
    pub scale: bool,
    /// Also `u = A·normed` into the A-and-u buffer (needs `NEXT_NORM`).
    pub lora_down: bool,
    pub subgroups: bool,
}

/// Matches `Params` in `rms_norm_add.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RmsNormAddParams {
    n_rows: u32,
    n_elems: u32,
    eps: f32,
    rank_total: u32,
    u_offset: u32,
    _pad: [u32; 3],
}
const _: () = assert!(size_of::<RmsNormAddParams>() == 32);

impl<const NEXT_NORM: bool> KernelKey for RmsNormAddKey<NEXT_NORM> {
    const FILE: &'static str = "rms_norm_add.wgsl";
    fn bindings(&self) -> &'static [Access] {
        if self.lora_down {
            &[
                Access::Read,
                Access::Read,
                Access::Read,
                Access::Read,
                Access::Read,
                Access::ReadWrite,
                Access::ReadWrite,
                Access::ReadWrite,
                Access::Uniform,
            ]
        } else if NEXT_NORM {
            &[
                Access::Read,
                Access::Read,
                Access::Read,
                Access::Read,
                Access::Read,
                Access::ReadWrite,
                Access::ReadWrite,
                Access::Uniform,
            ]
        } else {
            &[Access::Read, Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
        }
    }

    fn name(&self) -> String {
        let scale = if self.scale { "_scale" } else { "" };
        let next = if NEXT_NORM { "_norm" } else { "" };
        let lora = if self.lora_down { "_lora_down" } else { "" };
        format!("rms_norm_mul_add{scale}{next}{lora}_f32_{}_wg{WG_SIZE}", reduction_name(self.subgroups))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        let flags = [
            ("SCALE", self.scale),
            ("NEXT_NORM", NEXT_NORM),
            ("LORA_DOWN", self.lora_down),
            ("SUBGROUPS", self.subgroups),
        ];
        defines_with(WG_SIZE, &flags)
    }

    fn requires(&self) -> Requires {
        Requires { f16: false, subgroups: self.subgroups, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        let lora_downs: &[bool] = if NEXT_NORM { &BOOLS } else { &[false] };
        key_variants!(RmsNormAddKey { scale in BOOLS, lora_down in lora_downs.iter().copied(), subgroups in BOOLS })
    }
}

/// The inputs and outputs of one [`rms_norm_add`] over `n_rows` rows of `n_elems` f32 values.
#[derive(Debug, Clone, Copy)]
pub struct NormAdd<'a> {
    /// The vector to normalize (e.g. the attention output `o`), `[n_rows][n_elems]`.
    pub src: &'a GpuBuffer,
    /// The post-norm weight, `n_elems` values.
    pub weight: &'a GpuBuffer,
    /// The residual stream the normalized vector is added to, `[n_rows][n_elems]`.
    pub residual: &'a GpuBuffer,
    /// A 1-element buffer that multiplies the sum (`layer_output_scale`).
    pub scale: Option<&'a GpuBuffer>,
    /// The new residual, `[n_rows][n_elems]`.
    pub dst: &'a GpuBuffer,
    /// `(next_weight, normed)`: also write `rms(dst) ⊙ next_weight` into `normed`.
    pub next_norm: Option<(&'a GpuBuffer, &'a GpuBuffer)>,
    /// Also `u = A·normed` (needs `next_norm`).
    pub lora_down: Option<NormLoraDown<'a>>,
}

/// A LoRA group's stacked down-projections `A` (`[rank_total][n_elems]`, from element 0) and, from element
/// `u_offset_elems` of the same buffer, the `u` rows it writes (`[n_rows][rank_total]`).
#[derive(Debug, Clone, Copy)]
pub struct NormLoraDown<'a> {
    pub a_and_u: &'a GpuBuffer,
    pub rank_total: u32,
    pub u_offset_elems: u32,
}

/// `dst = (residual + rms(src) ⊙ weight) · scale[0]` row by row, and `normed = rms(dst) ⊙ next_weight` when asked;
/// one dispatch. Outputs must be distinct from every input and from each other.
pub fn rms_norm_add(batch: &mut Batch, a: &NormAdd, n_rows: u32, n_elems: u32, eps: f32) -> Result<()> {
    let op = "rms_norm_add";
    let Some(total_elems) = norm_rows(op, n_rows, n_elems, eps)? else { return Ok(()) };
    let row_bytes = n_elems as u64 * 4;
    let mut inputs = vec![("src", a.src, total_elems * 4), ("weight", a.weight, row_bytes)];
    inputs.push(("residual", a.residual, total_elems * 4));
    inputs.extend(a.scale.map(|s| ("scale", s, 4)));
    inputs.extend(a.next_norm.map(|(w, _)| ("next_weight", w, row_bytes)));
    let mut outputs = vec![a.dst];
    outputs.extend(a.next_norm.map(|(_, normed)| normed));
    for &(what, buf, bytes) in &inputs {
        check_buffer(op, what, buf, bytes)?;
    }
    for out in &outputs {
        check_buffer(op, "output", out, total_elems * 4)?;
    }
    let lora_down = match (a.lora_down, a.next_norm) {
        (None, _) => None,
        (Some(down), Some(_)) if down.rank_total > 0 => {
            let a_elems = down.rank_total as u64 * n_elems as u64;
            if (down.u_offset_elems as u64) < a_elems {
                return Err(GpuError::Unsupported {
                    op: op.into(),
                    reason: format!("u starts at element {} inside A's {a_elems}", down.u_offset_elems),
                });
            }
            let end_elems = down.u_offset_elems as u64 + n_rows as u64 * down.rank_total as u64;
            check_buffer(op, "LoRA A and u", down.a_and_u, end_elems * 4)?;
            outputs.push(down.a_and_u);
            Some(down)
        }
        (Some(down), next_norm) => {
            let reason = match next_norm {
                None => "the LoRA down-projection reads the next norm, and there is none".to_owned(),
                Some(_) => format!("LoRA rank {}", down.rank_total),
            };
            return Err(GpuError::Unsupported { op: op.into(), reason });
        }
    };
    let input_buffers: Vec<&GpuBuffer> = inputs.iter().map(|&(_, buf, _)| buf).collect();
    check_outputs(op, &input_buffers, &outputs)?;
    let (rank_total, u_offset) = lora_down.map_or((0, 0), |d| (d.rank_total, d.u_offset_elems));
    let params = RmsNormAddParams { n_rows, n_elems, eps, rank_total, u_offset, _pad: [0; 3] };
    let workgroups = n_rows as u64 * (1 + rank_total as u64);
    let grid = Grid::for_items(workgroups, 1, batch.max_workgroups_per_dimension());
    let subgroups = batch.caps().subgroups;
    // Absent optional inputs bind src as a stand-in (inputs are read-only, so they may alias).
    let scale = a.scale.unwrap_or(a.src);
    match a.next_norm {
        Some((next_weight, normed)) => {
            let key = RmsNormAddKey::<true> { scale: a.scale.is_some(), lora_down: lora_down.is_some(), subgroups };
            let mut buffers = vec![a.src, a.weight, a.residual, scale, next_weight, a.dst, normed];
            buffers.extend(lora_down.map(|d| d.a_and_u));
            batch.dispatch(&key, &buffers, &params, grid)
        }
        None => {
            let key = RmsNormAddKey::<false> { scale: a.scale.is_some(), lora_down: false, subgroups };
            batch.dispatch(&key, &[a.src, a.weight, a.residual, scale, a.src, a.dst], &params, grid)
        }
    }
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    let mut v = variants_of::<RmsNormAddKey<false>>()?;
    v.extend(variants_of::<RmsNormAddKey<true>>()?);
    Ok(v)
}
