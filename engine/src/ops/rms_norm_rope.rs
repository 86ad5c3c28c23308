//! `rms_norm_rope`: the per-head q/k norm and NeoX RoPE in one pass (llama.cpp's Vulkan backend fuses
//! RMS_NORM+MUL+ROPE(+SET_ROWS) the same way), and with [`rms_norm_rope_kv`] the KV-cache write too: keys are
//! normalized, rotated and stored at their ring slots, and the values beside them get Gemma 4's unweighted V norm
//! (or, on Gemma 3, a plain copy) and their store, all in one dispatch. The separate `rms_norm`, `rope` and
//! `set_rows` ops remain for other callers and as the references these kernels are tested beside.

use super::WG_SIZE;
use super::args::{check_buffer, check_distinct, check_eps, checked_u32};
use super::binary::StorageType;
use super::rope::RopeShape;
use crate::gpu::Result;
use crate::gpu::kernels::{
    Access, BOOLS, KernelKey, Requires, VariantSource, defines_with, key_variants, reduction_name, variants_of,
};
use crate::gpu::{Batch, GpuBuffer, Grid};

/// `KV` selects the cache-writing layout (two sources, slots, two caches), hence a const parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RmsNormRopeKey<const KV: bool> {
    pub freq_factors: bool,
    pub subgroups: bool,
    /// Cache storage (KV only; the plain form writes f32).
    pub cache: StorageType,
    /// Unweighted RMSNorm of the V heads (Gemma 4) rather than a copy (KV only).
    pub v_norm: bool,
}

/// Matches `Params` in `rms_norm_rope.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RmsNormRopeParams {
    n_rows: u32,
    n_heads: u32,
    head_dim: u32,
    n_dims: u32,
    inv_freq_log2_step: f32,
    freq_scale: f32,
    eps: f32,
    n_dst_rows: u32,
}
const _: () = assert!(size_of::<RmsNormRopeParams>() == 32);

impl<const KV: bool> KernelKey for RmsNormRopeKey<KV> {
    const FILE: &'static str = "rms_norm_rope.wgsl";
    fn bindings(&self) -> &'static [Access] {
        if KV {
            use Access::*;
            &[Read, Read, Read, Read, Read, Read, ReadWrite, ReadWrite, Uniform]
        } else {
            &[Access::Read, Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
        }
    }

    fn name(&self) -> String {
        let ff = if self.freq_factors { "_ff" } else { "" };
        let kv = match (KV, self.cache, self.v_norm) {
            (false, ..) => String::new(),
            (true, cache, v_norm) => {
                let t = if cache == StorageType::F16 { "f16" } else { "f32" };
                format!("_set_rows_{t}{}", if v_norm { "_vnorm" } else { "" })
            }
        };
        format!("rms_norm_mul_rope_neox{ff}{kv}_f32_{}_wg{WG_SIZE}", reduction_name(self.subgroups))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        let flags = [
            ("FREQ_FACTORS", self.freq_factors),
            ("SUBGROUPS", self.subgroups),
            ("KV_WRITE", KV),
            ("V_NORM", KV && self.v_norm),
        ];
        defines_with(WG_SIZE, &flags)
    }

    fn requires(&self) -> Requires {
        Requires { f16: KV && self.cache == StorageType::F16, subgroups: self.subgroups, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        let caches: &[StorageType] = if KV { &[StorageType::F32, StorageType::F16] } else { &[StorageType::F32] };
        let v_norms: &[bool] = if KV { &[false, true] } else { &[false] };
        key_variants!(Self {
            freq_factors in BOOLS,
            subgroups in BOOLS,
            cache in caches.iter().copied(),
            v_norm in v_norms.iter().copied(),
        })
    }
}

/// The norm and rotation shared by both forms: heads of `shape` (`n_tokens × n_heads` rows of `head_dim`).
#[derive(Debug, Clone, Copy)]
pub struct NormRope<'a> {
    /// The norm weight, `head_dim` f32 values shared by every head.
    pub weight: &'a GpuBuffer,
    /// One absolute u32 position per token.
    pub positions: &'a GpuBuffer,
    /// `n_dims/2` f32 per-pair divisors (Gemma 4 full layers), if any.
    pub freq_factors: Option<&'a GpuBuffer>,
    pub shape: RopeShape,
    pub eps: f32,
}

/// Where [`rms_norm_rope_kv`] writes: rings of `n_dst_rows` slots of `n_heads × head_dim` values.
#[derive(Debug, Clone, Copy)]
pub struct KvWrite<'a> {
    /// The raw V heads, shaped as the keys (the keys themselves on K = V layers).
    pub v: &'a GpuBuffer,
    /// One u32 ring slot per token; a slot ≥ `n_dst_rows` is skipped.
    pub slots: &'a GpuBuffer,
    pub k_cache: &'a GpuBuffer,
    pub v_cache: &'a GpuBuffer,
    pub cache_type: StorageType,
    pub n_dst_rows: u32,
    /// Gemma 4's unweighted V norm; without it V is stored as it is.
    pub v_norm: bool,
}

/// Validates `nr` against `src` and returns the parameters (without `n_dst_rows`).
fn params(op: &str, src: &GpuBuffer, nr: &NormRope) -> Result<RmsNormRopeParams> {
    let s = &nr.shape;
    s.check(op)?;
    check_eps(op, nr.eps)?;
    let n_rows = checked_u32(op, "heads", s.n_tokens as u64 * s.n_heads as u64)?;
    checked_u32(op, "elements", s.elems())?;
    check_buffer(op, "src", src, s.elems() * 4)?;
    check_buffer(op, "weight", nr.weight, s.head_dim as u64 * 4)?;
    check_buffer(op, "positions", nr.positions, s.n_tokens as u64 * 4)?;
    if let Some(ff) = nr.freq_factors {
        check_buffer(op, "freq_factors", ff, (s.n_dims / 2) as u64 * 4)?;
    }
    Ok(RmsNormRopeParams {
        n_rows,
        n_heads: s.n_heads,
        head_dim: s.head_dim,
        n_dims: s.n_dims,
        inv_freq_log2_step: s.inv_freq_log2_step(),
        freq_scale: s.freq_scale,
        eps: nr.eps,
        n_dst_rows: 0,
    })
}

fn check_outputs(op: &str, inputs: &[&GpuBuffer], outputs: &[&GpuBuffer]) -> Result<()> {
    for out in outputs {
        for input in inputs {
            check_distinct(op, input, out)?;
        }
    }
    Ok(())
}

/// `dst = rope(rms(src) ⊙ weight)` per head: `src` and `dst` are `[n_tokens][n_heads][head_dim]` f32 (the queries).
pub fn rms_norm_rope(batch: &mut Batch, src: &GpuBuffer, dst: &GpuBuffer, nr: &NormRope) -> Result<()> {
    let op = "rms_norm_rope";
    let params = params(op, src, nr)?;
    check_buffer(op, "dst", dst, nr.shape.elems() * 4)?;
    let mut inputs = vec![src, nr.weight, nr.positions];
    inputs.extend(nr.freq_factors);
    check_outputs(op, &inputs, &[dst])?;
    if params.n_rows == 0 {
        return Ok(());
    }
    let key = RmsNormRopeKey::<false> {
        freq_factors: nr.freq_factors.is_some(),
        subgroups: batch.caps().subgroups,
        cache: StorageType::F32,
        v_norm: false,
    };
    let grid = Grid::for_items(params.n_rows as u64, 1, batch.max_workgroups_per_dimension());
    // Without frequency factors, positions stand in for the unused binding (inputs are read-only, so they may alias).
    let ff = nr.freq_factors.unwrap_or(nr.positions);
    batch.dispatch(&key, &[src, nr.weight, nr.positions, ff, dst], &params, grid)
}

/// The keys `k` (`[n_tokens][n_heads][head_dim]` f32) normalized, rotated and written to `k_cache` at their ring
/// slots; the values `kv.v` (same shape) normalized without a weight (or copied) and written to `v_cache`.
pub fn rms_norm_rope_kv(batch: &mut Batch, k: &GpuBuffer, nr: &NormRope, kv: &KvWrite) -> Result<()> {
    let op = "rms_norm_rope_kv";
    let mut params = params(op, k, nr)?;
    let s = &nr.shape;
    check_buffer(op, "v", kv.v, s.elems() * 4)?;
    check_buffer(op, "slots", kv.slots, s.n_tokens as u64 * 4)?;
    let cache_elems = kv.n_dst_rows as u64 * s.n_heads as u64 * s.head_dim as u64;
    checked_u32(op, "cache elements", cache_elems)?;
    for (what, cache) in [("k_cache", kv.k_cache), ("v_cache", kv.v_cache)] {
        check_buffer(op, what, cache, cache_elems * kv.cache_type.elem_bytes())?;
    }
    let mut inputs = vec![k, kv.v, nr.weight, nr.positions, kv.slots];
    inputs.extend(nr.freq_factors);
    check_outputs(op, &inputs, &[kv.k_cache, kv.v_cache])?;
    check_distinct(op, kv.k_cache, kv.v_cache)?;
    if params.n_rows == 0 {
        return Ok(());
    }
    params.n_dst_rows = kv.n_dst_rows;
    let key = RmsNormRopeKey::<true> {
        freq_factors: nr.freq_factors.is_some(),
        subgroups: batch.caps().subgroups,
        cache: kv.cache_type,
        v_norm: kv.v_norm,
    };
    let grid = Grid::for_items(2 * params.n_rows as u64, 1, batch.max_workgroups_per_dimension());
    let ff = nr.freq_factors.unwrap_or(nr.positions);
    let buffers = [k, kv.v, nr.weight, nr.positions, ff, kv.slots, kv.k_cache, kv.v_cache];
    batch.dispatch(&key, &buffers, &params, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    let mut v = variants_of::<RmsNormRopeKey<false>>()?;
    v.extend(variants_of::<RmsNormRopeKey<true>>()?);
    Ok(v)
}
