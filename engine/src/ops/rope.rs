//! ggml `rope` in NeoX mode (Gemma 3/4): rotates pairs `(i, i + n_dims/2)` of every head by
//! `θ_i = freq_scale · pos · base^(−2i/n_dims) / ff_i`; elements past `n_dims` pass through. Optional frequency
//! factors `ff` (`rope_freqs.weight`: Gemma 4's proportional RoPE on full layers, 1e30 = pair not rotated).
//! `x` is `[n_tokens][n_heads][head_dim]` f32 with one absolute u32 position per token.
//!
//! Two forms: out of place ([`rope`], `dst` a different buffer, pass-through elements copied) and in place
//! ([`rope_inplace`], only the rotated pairs are rewritten). They bind differently, hence `RopeKey<INPLACE>`.

use super::WG_SIZE;
use super::args::{check_buffer, check_distinct, checked_u32};
use crate::gpu::kernels::{Access, BOOLS, KernelKey, Requires, VariantSource, defines_with, key_variants, variants_of};
use crate::gpu::{Batch, GpuBuffer, Grid};
use crate::gpu::{GpuError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RopeKey<const INPLACE: bool> {
    /// Divide each pair's angle by `freq_factors[i]`.
    pub freq_factors: bool,
    /// The input gradient: every pair turns by −θ (out of place only).
    pub back: bool,
}

impl<const INPLACE: bool> KernelKey for RopeKey<INPLACE> {
    const FILE: &'static str = "rope.wgsl";
    fn bindings(&self) -> &'static [Access] {
        if INPLACE {
            &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
        } else {
            &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
        }
    }

    fn name(&self) -> String {
        let ff = if self.freq_factors { "_ff" } else { "" };
        let back = if self.back { "_back" } else { "" };
        let inplace = if INPLACE { "_inplace" } else { "" };
        format!("rope_neox{ff}{back}_f32{inplace}_wg{WG_SIZE}")
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        defines_with(WG_SIZE, &[("FREQ_FACTORS", self.freq_factors), ("INPLACE", INPLACE), ("BACK", self.back)])
    }

    fn requires(&self) -> Requires {
        Requires::default()
    }

    fn all_variants() -> Vec<Self> {
        let all: Vec<Self> = key_variants!(RopeKey { freq_factors in BOOLS, back in BOOLS });
        all.into_iter().filter(|k| !(INPLACE && k.back)).collect()
    }
}

/// Matches `Params` in `rope.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RopeParams {
    n_items: u32,
    items_per_row: u32,
    n_heads: u32,
    head_dim: u32,
    n_dims: u32,
    inv_freq_log2_step: f32,
    freq_scale: f32,
    _pad: u32,
}
const _: () = assert!(size_of::<RopeParams>() == 32);

/// The shape and frequencies of one rope call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeShape {
    pub n_tokens: u32,
    pub n_heads: u32,
    pub head_dim: u32,
    /// Rotated dimensions (ggml `n_dims`, GGUF `rope.dimension_count`): even, ≤ `head_dim`; also the
    /// denominator of the frequency exponent.
    pub n_dims: u32,
    /// `rope.freq_base` (1e6 on Gemma 4 full layers) or `rope.freq_base_swa` (1e4).
    pub freq_base: f32,
    /// Multiplies every angle: 1, or 1/factor for linear rope scaling (Gemma 3 4B+ global layers: 1/8).
    pub freq_scale: f32,
}

impl RopeShape {
    pub fn elems(&self) -> u64 {
        self.n_tokens as u64 * self.n_heads as u64 * self.head_dim as u64
    }

    /// Errors unless the kernels can rotate this shape.
    pub(crate) fn check(&self, op: &str) -> Result<()> {
        let unsupported = |reason: String| Err(GpuError::Unsupported { op: op.into(), reason });
        if self.head_dim == 0 || self.n_dims < 2 || !self.n_dims.is_multiple_of(2) || self.n_dims > self.head_dim {
            return unsupported(format!("n_dims {} must be even, ≥ 2 and ≤ head_dim {}", self.n_dims, self.head_dim));
        }
        if !(self.freq_base.is_finite() && self.freq_base > 0.0 && self.freq_scale.is_finite()) {
            return unsupported(format!(
                "freq_base {} must be finite and > 0, freq_scale {} finite",
                self.freq_base, self.freq_scale
            ));
        }
        Ok(())
    }

    /// `−2·log2(base)/n_dims`, the kernels' exponent step. In f64 so that the only f32 roundings are the kernel's,
    /// as in ggml's powf.
    pub(crate) fn inv_freq_log2_step(&self) -> f32 {
        (-2.0 * (self.freq_base as f64).log2() / self.n_dims as f64) as f32
    }
}

#[allow(clippy::too_many_arguments)]
fn record<const INPLACE: bool>(
    batch: &mut Batch,
    back: bool,
    src: Option<&GpuBuffer>,
    dst: &GpuBuffer,
    positions: &GpuBuffer,
    freq_factors: Option<&GpuBuffer>,
    s: &RopeShape,
) -> Result<()> {
    let op = if back { "rope_back" } else { "rope" };
    s.check(op)?;
    let n_rows = s.n_tokens as u64 * s.n_heads as u64;
    checked_u32(op, "elements", s.elems())?;
    let items_per_row = if INPLACE { s.n_dims / 2 } else { s.head_dim - s.n_dims / 2 };
    let n_items = checked_u32(op, "items", n_rows * items_per_row as u64)?;
    check_buffer(op, "positions", positions, s.n_tokens as u64 * 4)?;
    check_buffer(op, "dst", dst, s.elems() * 4)?;
    check_distinct(op, positions, dst)?;
    if let Some(src) = src {
        check_buffer(op, "src", src, s.elems() * 4)?;
        check_distinct(op, src, dst)?;
    }
    if let Some(ff) = freq_factors {
        check_buffer(op, "freq_factors", ff, (s.n_dims / 2) as u64 * 4)?;
        check_distinct(op, ff, dst)?;
    }
    let params = RopeParams {
        n_items,
        items_per_row,
        n_heads: s.n_heads,
        head_dim: s.head_dim,
        n_dims: s.n_dims,
        inv_freq_log2_step: s.inv_freq_log2_step(),
        freq_scale: s.freq_scale,
        _pad: 0,
    };
    let key = RopeKey::<INPLACE> { freq_factors: freq_factors.is_some(), back };
    let grid = Grid::for_items(n_items as u64, WG_SIZE, batch.max_workgroups_per_dimension());
    // Without frequency factors, positions stand in for the unused binding (inputs are read-only, so they may alias).
    let ff = freq_factors.unwrap_or(positions);
    match src {
        Some(src) => batch.dispatch(&key, &[positions, ff, src, dst], &params, grid),
        None => batch.dispatch(&key, &[positions, ff, dst], &params, grid),
    }
}

/// `dst = rope(src)`; `positions` holds `n_tokens` u32 absolute positions, `freq_factors` (optional) `n_dims/2` f32.
pub fn rope(
    batch: &mut Batch,
    src: &GpuBuffer,
    dst: &GpuBuffer,
    positions: &GpuBuffer,
    freq_factors: Option<&GpuBuffer>,
    shape: &RopeShape,
) -> Result<()> {
    record::<false>(batch, false, Some(src), dst, positions, freq_factors, shape)
}

/// `dx` = rope's input gradient given `dy`: each pair turns back by its angle (the rotation's transpose), the
/// elements past `n_dims` copy through. Arguments as [`rope`].
pub fn rope_back(
    batch: &mut Batch,
    dy: &GpuBuffer,
    dx: &GpuBuffer,
    positions: &GpuBuffer,
    freq_factors: Option<&GpuBuffer>,
    shape: &RopeShape,
) -> Result<()> {
    record::<false>(batch, true, Some(dy), dx, positions, freq_factors, shape)
}

/// `x = rope(x)` in place; elements past `n_dims` are left as they are.
pub fn rope_inplace(
    batch: &mut Batch,
    x: &GpuBuffer,
    positions: &GpuBuffer,
    freq_factors: Option<&GpuBuffer>,
    shape: &RopeShape,
) -> Result<()> {
    record::<true>(batch, false, None, x, positions, freq_factors, shape)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    let mut v = variants_of::<RopeKey<false>>()?;
    v.extend(variants_of::<RopeKey<true>>()?);
    Ok(v)
}
