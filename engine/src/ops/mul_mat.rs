//! ggml `mul_mat` with weights stored as GGUF blocks: y[t][r] = dot(W[r], x[t]) with W [m_rows][k] in any of
//! [`WEIGHT_TYPES`], x [n_tokens][k] f32 and y [n_tokens][m_rows] f32, dequantized on the fly and accumulated in
//! f32. Three kernels: `mul_mat_vec` (decode, a few tokens: bandwidth-bound, one pass over W per token; see
//! `super::mul_mat_vec`), the tiled `mul_mat` (prefill: 64×64 workgroup tiles of f32 products) and `mul_mat_coop`
//! (the same tiles on cooperative matrices, f16 operands and f32 sums, where the device grants them). [`mul_mat`]
//! picks by token count and device; [`mul_mat_with`] and a [`MulMatPath`] force one path so each can be tested at
//! any size.
//!
//! Tensors larger than one binding are split on rows (`SplitTensor`); dispatch each part with
//! [`MulMatArgs::part`] so its rows land at their columns of the shared y.

use super::args::check_coop_matrix;
pub use super::mul_mat_vec::VEC_MAX_TOKENS;
use super::mul_mat_vec::record_vec;
pub use super::weights::{MulMatArgs, WEIGHT_TYPES};
use super::weights::{MulMatParams, checked_args, type_stem, weight_defines};
use crate::gpu::kernels::{Access, KernelKey, Requires, VariantSource, variants_of};
use crate::gpu::{Batch, GpuBuffer, Grid};
use crate::gpu::{GpuError, Result};
use crate::quant::QuantType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MulMatKey {
    pub wtype: QuantType,
}

/// Output tile of the tiled kernel (rows × tokens), fixed in `mul_mat.wgsl`.
const TILE_M: u32 = 64;
const TILE_N: u32 = 64;

impl KernelKey for MulMatKey {
    const FILE: &'static str = "mul_mat.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("mul_mat_{}_f32_t{TILE_M}x{TILE_N}x32", type_stem(self.wtype))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        weight_defines(self.wtype)
    }

    fn requires(&self) -> Requires {
        Requires::default()
    }

    fn all_variants() -> Vec<Self> {
        WEIGHT_TYPES.iter().map(|&wtype| MulMatKey { wtype }).collect()
    }
}

/// The tiled product on cooperative matrices (`mul_mat_coop.wgsl`): the same tiles, parameters and bindings as
/// [`MulMatKey`]'s, 128 invocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MulMatCoopKey {
    pub wtype: QuantType,
}

impl KernelKey for MulMatCoopKey {
    const FILE: &'static str = "mul_mat_coop.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("mul_mat_{}_f32_coop16_t{TILE_M}x{TILE_N}x32", type_stem(self.wtype))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        weight_defines(self.wtype)
    }

    fn requires(&self) -> Requires {
        Requires::COOP_MATRIX
    }

    fn all_variants() -> Vec<Self> {
        WEIGHT_TYPES.iter().map(|&wtype| MulMatCoopKey { wtype }).collect()
    }
}

/// Which kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MulMatPath {
    /// `mul_mat_vec` up to [`VEC_MAX_TOKENS`] tokens; beyond, `mul_mat_coop` where the device has cooperative
    /// matrices, else the tiled kernel.
    Auto,
    Vec,
    /// The tiled kernel's f32 products.
    Tiled,
    /// The tiled kernel on cooperative matrices: an `Unsupported` error where the device has none.
    Coop,
}

/// y = x · Wᵀ, picking the kernel by token count. `mul_mat_with` forces a path or dispatches one part of a
/// split weight.
#[allow(clippy::too_many_arguments)]
pub fn mul_mat(
    batch: &mut Batch,
    weights: &GpuBuffer,
    wtype: QuantType,
    m_rows: u32,
    k: u32,
    x: &GpuBuffer,
    n_tokens: u32,
    y: &GpuBuffer,
) -> Result<()> {
    mul_mat_with(batch, &MulMatArgs::new(weights, wtype, m_rows, k, x, n_tokens, y), MulMatPath::Auto)
}

/// The general entry: validates, picks the variant and records one dispatch (none for zero rows or tokens).
pub fn mul_mat_with(batch: &mut Batch, a: &MulMatArgs, path: MulMatPath) -> Result<()> {
    let Some(row_bytes) = checked_args("mul_mat", a, batch)? else { return Ok(()) };
    let coop_matrix = batch.caps().coop_matrix;
    let path = match path {
        MulMatPath::Auto if a.n_tokens <= VEC_MAX_TOKENS => MulMatPath::Vec,
        MulMatPath::Auto if coop_matrix => MulMatPath::Coop,
        MulMatPath::Auto => MulMatPath::Tiled,
        MulMatPath::Coop => {
            check_coop_matrix("mul_mat", coop_matrix)?;
            MulMatPath::Coop
        }
        other => other,
    };
    let mut params = MulMatParams {
        m_rows: a.m_rows,
        k: a.k,
        n_tokens: a.n_tokens,
        row_bytes: row_bytes as u32,
        y_first_row: a.y_first_row,
        y_row_stride: a.y_row_stride,
        n_row_groups: a.m_rows.div_ceil(TILE_M),
        _pad: 0,
    };
    if path == MulMatPath::Vec {
        return record_vec(batch, a, &mut params, None);
    }
    if a.lora.is_some() {
        return Err(GpuError::Unsupported {
            op: "mul_mat".into(),
            reason: "a LoRA epilogue needs the mat-vec path; add prompt updates with lora_add".into(),
        });
    }
    let grid = Grid::for_items(
        params.n_row_groups as u64 * a.n_tokens.div_ceil(TILE_N) as u64,
        1,
        batch.max_workgroups_per_dimension(),
    );
    let buffers = [a.weights, a.x, a.y];
    match path {
        MulMatPath::Coop => batch.dispatch(&MulMatCoopKey { wtype: a.wtype }, &buffers, &params, grid),
        _ => batch.dispatch(&MulMatKey { wtype: a.wtype }, &buffers, &params, grid),
    }
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    let mut all = super::mul_mat_vec::variants()?;
    all.extend(variants_of::<MulMatKey>()?);
    all.extend(variants_of::<MulMatCoopKey>()?);
    Ok(all)
}
