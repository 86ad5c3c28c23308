//! The down-projections of a LoRA group (`shaders/lora_down.wgsl`): `u[t] = A·x[t]`, one workgroup per row of A,
//! slice of its columns and block of 4 tokens. The products then add `B·u`: a prompt's with `lora_add` (whole rows,
//! one part), a decode step's in the mat-vec's epilogue (`weights::LoraEpilogue`), which sums the slices' parts.

use super::WG_SIZE;
use super::args::{check_buffer, check_distinct};
use crate::gpu::kernels::{
    Access, BOOLS, KernelKey, Requires, VariantSource, defines_with, key_variants, reduction_name, variants_of,
};
use crate::gpu::{Batch, GpuBuffer, GpuError, Grid, Result};

/// Tokens per workgroup, fixed in `lora_down.wgsl`.
const TOKENS_PER_WORKGROUP: u32 = 4;

/// Columns of a row one workgroup sums when rows are sliced: one pass of its lanes, four columns each. A decode
/// step's rank-16 group over a 12288-wide input then takes 192 workgroups instead of 16 each walking 12 passes.
const PART_ELEMS: u32 = 4 * WG_SIZE;

/// Parts to slice rows of `in_dim` into so that no workgroup walks more than one pass over its slice.
pub fn row_parts(in_dim: u32) -> u32 {
    in_dim.div_ceil(PART_ELEMS).max(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoraDownKey {
    pub subgroups: bool,
}

impl KernelKey for LoraDownKey {
    const FILE: &'static str = "lora_down.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("lora_down_f32_{}_wg{WG_SIZE}", reduction_name(self.subgroups))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        defines_with(WG_SIZE, &[("SUBGROUPS", self.subgroups)])
    }

    fn requires(&self) -> Requires {
        Requires { f16: false, subgroups: self.subgroups, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        key_variants!(LoraDownKey { subgroups in BOOLS })
    }
}

/// Matches `Params` in `lora_down.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LoraDownParams {
    in_dim: u32,
    rank_total: u32,
    n_tokens: u32,
    k_parts: u32,
    part_elems: u32,
    _pad: [u32; 3],
}

/// The stacked down-projection of a group: A `[rank_total][in_dim]` and its input x `[n_tokens][in_dim]`; `u` in
/// `k_parts` parts over slices of the columns (1: whole rows; [`row_parts`] for a decode step's epilogue).
#[derive(Debug, Clone, Copy)]
pub struct LoraDown<'a> {
    pub a: &'a GpuBuffer,
    pub rank_total: u32,
    pub in_dim: u32,
    pub x: &'a GpuBuffer,
    pub n_tokens: u32,
    pub k_parts: u32,
}

/// `u[t] = A·x[t]` (`[n_tokens][k_parts][rank_total]`); indices must fit u32 (the group's buffers are one binding
/// each).
pub fn lora_down(batch: &mut Batch, down: &LoraDown, u: &GpuBuffer) -> Result<()> {
    let op = "lora_down";
    if down.k_parts == 0 || down.k_parts > down.in_dim.max(1) {
        let reason = format!("{} parts of rows of {}", down.k_parts, down.in_dim);
        return Err(GpuError::Unsupported { op: op.into(), reason });
    }
    check_buffer(op, "a", down.a, down.rank_total as u64 * down.in_dim as u64 * 4)?;
    check_buffer(op, "x", down.x, down.n_tokens as u64 * down.in_dim as u64 * 4)?;
    let u_elems = down.n_tokens as u64 * down.k_parts as u64 * down.rank_total as u64;
    check_buffer(op, "u", u, u_elems * 4)?;
    for input in [down.a, down.x] {
        check_distinct(op, input, u)?;
    }
    if down.n_tokens == 0 || down.rank_total == 0 {
        return Ok(());
    }
    let params = LoraDownParams {
        in_dim: down.in_dim,
        rank_total: down.rank_total,
        n_tokens: down.n_tokens,
        k_parts: down.k_parts,
        part_elems: down.in_dim.div_ceil(down.k_parts),
        _pad: [0; 3],
    };
    let token_blocks = down.n_tokens.div_ceil(TOKENS_PER_WORKGROUP) as u64;
    let groups = down.rank_total as u64 * down.k_parts as u64 * token_blocks;
    let grid = Grid::for_items(groups, 1, batch.max_workgroups_per_dimension());
    let key = LoraDownKey { subgroups: batch.caps().subgroups };
    batch.dispatch(&key, &[down.a, down.x, u], &params, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<LoraDownKey>()
}
