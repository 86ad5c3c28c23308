//! A LoRA group's whole update for a few tokens in one dispatch (`shaders/lora_vec.wgsl`): the down-projection
//! `u = A·x` into workgroup memory, then `y_k += B_k·u[slice_k]` for up to three targets (q, k, v of a layer), or
//! with [`lora_vec_geglu`] the gate/up updates and GeGLU on a `[gate | up]` product. Decoding runs this instead of
//! `mul_mat` + one `lora_add` per target (+ `geglu`): one dispatch per group rather than two to five, which is what
//! a decode step of small kernels pays for.

use super::WG_SIZE;
use super::args::{check_buffer, check_distinct, checked_u32};
use super::lora_add::RowsView;
use crate::gpu::kernels::{Access, KernelKey, Requires, VariantSource, defines_with, variants_of};
use crate::gpu::{Batch, GpuBuffer, GpuError, Grid, Result};

/// The most stacked rank a group may have here (workgroup memory for u); larger groups take `mul_mat` + `lora_add`.
pub const LORA_VEC_MAX_RANK: u32 = 256;
/// Targets (and output buffers) of one dispatch.
const MAX_TARGETS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoraVecKey {
    /// Adds into 1–3 distinct output buffers.
    Add { outputs: u32 },
    /// Gate and up updates, then GeGLU.
    Geglu,
    /// Only the down-projection, written out (prefill).
    Down,
}

impl KernelKey for LoraVecKey {
    const FILE: &'static str = "lora_vec.wgsl";
    fn bindings(&self) -> &'static [Access] {
        use Access::{Read, ReadWrite, Uniform};
        match self {
            LoraVecKey::Add { outputs: 1 } => &[Read, Read, Read, ReadWrite, Uniform],
            LoraVecKey::Add { outputs: 2 } => &[Read, Read, Read, ReadWrite, ReadWrite, Uniform],
            LoraVecKey::Add { .. } => &[Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, Uniform],
            LoraVecKey::Geglu => &[Read, Read, Read, Read, ReadWrite, Uniform],
            LoraVecKey::Down => &[Read, Read, ReadWrite, Uniform],
        }
    }

    fn name(&self) -> String {
        match self {
            LoraVecKey::Add { outputs } => format!("lora_vec_add{outputs}_f32_wg{WG_SIZE}"),
            LoraVecKey::Geglu => format!("lora_vec_geglu_f32_wg{WG_SIZE}"),
            LoraVecKey::Down => format!("lora_down_f32_wg{WG_SIZE}"),
        }
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        let outputs = match *self {
            LoraVecKey::Add { outputs } => outputs,
            LoraVecKey::Geglu | LoraVecKey::Down => 0,
        };
        let flags = [
            ("Y1", outputs >= 2),
            ("Y2", outputs >= 3),
            ("GLU", *self == LoraVecKey::Geglu),
            ("DOWN_ONLY", *self == LoraVecKey::Down),
        ];
        let mut d = defines_with(WG_SIZE, &flags);
        d.push(("MAX_RANK", format!("{LORA_VEC_MAX_RANK}u")));
        d
    }

    fn requires(&self) -> Requires {
        Requires::default()
    }

    fn all_variants() -> Vec<Self> {
        let mut all: Vec<Self> = (1..=MAX_TARGETS as u32).map(|outputs| LoraVecKey::Add { outputs }).collect();
        all.extend([LoraVecKey::Geglu, LoraVecKey::Down]);
        all
    }
}

/// Matches `Target` in `lora_vec.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct TargetParams {
    n_rows: u32,
    rank: u32,
    first_rank: u32,
    b_offset: u32,
    y_first: u32,
    y_stride: u32,
    y_binding: u32,
    _pad: u32,
}

/// Matches `Params` in `lora_vec.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LoraVecParams {
    in_dim: u32,
    rank_total: u32,
    n_targets: u32,
    n_cols: u32,
    n_col_groups: u32,
    n_tokens: u32,
    _pad: [u32; 2],
    targets: [TargetParams; MAX_TARGETS],
}
const _: () = assert!(size_of::<LoraVecParams>() == 128);

/// The stacked down-projection of a group: A `[rank_total][in_dim]` and its input x `[n_tokens][in_dim]`.
#[derive(Debug, Clone, Copy)]
pub struct LoraDown<'a> {
    pub a: &'a GpuBuffer,
    pub rank_total: u32,
    pub in_dim: u32,
    pub x: &'a GpuBuffer,
    pub n_tokens: u32,
}

/// One target's up-projection: rows `b[b_offset_elems..]` `[n_rows][rank]` of the group's B buffer, reading
/// `u[first_rank..first_rank + rank]`, added into `y`.
#[derive(Debug, Clone, Copy)]
pub struct LoraUp<'a> {
    pub b_offset_elems: u32,
    pub n_rows: u32,
    pub rank: u32,
    pub first_rank: u32,
    pub y: RowsView<'a>,
}

fn checked_down(op: &str, d: &LoraDown, b: &GpuBuffer, ups: &[LoraUp]) -> Result<()> {
    let unsupported = |reason: String| GpuError::Unsupported { op: op.into(), reason };
    if d.rank_total > LORA_VEC_MAX_RANK {
        return Err(unsupported(format!("a stacked rank of {} exceeds {LORA_VEC_MAX_RANK}", d.rank_total)));
    }
    if ups.is_empty() || ups.len() > MAX_TARGETS {
        return Err(unsupported(format!("{} targets; 1 to {MAX_TARGETS} are supported", ups.len())));
    }
    check_buffer(op, "a", d.a, d.rank_total as u64 * d.in_dim as u64 * 4)?;
    check_buffer(op, "x", d.x, d.n_tokens as u64 * d.in_dim as u64 * 4)?;
    for up in ups {
        if up.first_rank as u64 + up.rank as u64 > d.rank_total as u64 {
            return Err(unsupported(format!("u slice {}+{} past rank {}", up.first_rank, up.rank, d.rank_total)));
        }
        check_buffer(op, "b", b, (up.b_offset_elems as u64 + up.n_rows as u64 * up.rank as u64) * 4)?;
        let last = up.y.offset_elems as u64
            + (d.n_tokens as u64).saturating_sub(1) * up.y.row_stride_elems as u64
            + up.n_rows as u64;
        checked_u32(op, "y", last)?;
        check_buffer(op, "y", up.y.buffer, last * 4)?;
        for input in [d.a, d.x, b] {
            check_distinct(op, input, up.y.buffer)?;
        }
    }
    Ok(())
}

fn target_params(up: &LoraUp, y_binding: u32) -> TargetParams {
    TargetParams {
        n_rows: up.n_rows,
        rank: up.rank,
        first_rank: up.first_rank,
        b_offset: up.b_offset_elems,
        y_first: up.y.offset_elems,
        y_stride: up.y.row_stride_elems,
        y_binding,
        _pad: 0,
    }
}

fn params(d: &LoraDown, targets: [TargetParams; MAX_TARGETS], n_targets: usize, n_cols: u32) -> LoraVecParams {
    LoraVecParams {
        in_dim: d.in_dim,
        rank_total: d.rank_total,
        n_targets: n_targets as u32,
        n_cols,
        n_col_groups: n_cols.div_ceil(WG_SIZE),
        n_tokens: d.n_tokens,
        _pad: [0; 2],
        targets,
    }
}

/// `y_k(t, c) += Σ_j b[b_offset_k + c·rank_k + j]·u(t, first_rank_k + j)` with `u(t) = A·x[t]`, for every target of
/// `ups` (1 to 3; they may share output buffers), in one dispatch.
pub fn lora_vec_add(batch: &mut Batch, down: &LoraDown, b: &GpuBuffer, ups: &[LoraUp]) -> Result<()> {
    let op = "lora_vec_add";
    checked_down(op, down, b, ups)?;
    let mut outputs: Vec<&GpuBuffer> = Vec::new();
    let mut targets = [TargetParams::default(); MAX_TARGETS];
    for (k, up) in ups.iter().enumerate() {
        let slot = match outputs.iter().position(|y| y.id() == up.y.buffer.id()) {
            Some(slot) => slot,
            None => {
                outputs.push(up.y.buffer);
                outputs.len() - 1
            }
        };
        targets[k] = target_params(up, slot as u32);
    }
    let n_cols = checked_u32(op, "columns", ups.iter().map(|u| u.n_rows as u64).sum())?;
    if n_cols == 0 || down.n_tokens == 0 {
        return Ok(());
    }
    let params = params(down, targets, ups.len(), n_cols);
    let groups = params.n_col_groups as u64 * down.n_tokens as u64;
    let grid = Grid::for_items(groups, 1, batch.max_workgroups_per_dimension());
    let mut bindings = vec![down.a, down.x, b];
    bindings.extend(&outputs);
    batch.dispatch(&LoraVecKey::Add { outputs: outputs.len() as u32 }, &bindings, &params, grid)
}

/// `act(t, c) = gelu(gate_up(t, gate) + Δgate) · (gate_up(t, up) + Δup)` for `c < ffn`, with the updates as in
/// [`lora_vec_add`] (`gate.y` and `up.y` are the two halves of the `[gate | up]` rows, read only; a rank of 0 is no
/// update); `act` is `[n_tokens][ffn]`.
pub fn lora_vec_geglu(
    batch: &mut Batch,
    down: &LoraDown,
    b: &GpuBuffer,
    gate: &LoraUp,
    up: &LoraUp,
    act: &GpuBuffer,
) -> Result<()> {
    let op = "lora_vec_geglu";
    checked_down(op, down, b, &[*gate, *up])?;
    let ffn = gate.n_rows;
    if up.n_rows != ffn || gate.y.buffer.id() != up.y.buffer.id() || gate.y.row_stride_elems != up.y.row_stride_elems {
        return Err(GpuError::Unsupported {
            op: op.into(),
            reason: "gate and up must be the two halves of the same [gate | up] rows".into(),
        });
    }
    check_buffer(op, "act", act, down.n_tokens as u64 * ffn as u64 * 4)?;
    for input in [down.a, down.x, b, gate.y.buffer] {
        check_distinct(op, input, act)?;
    }
    if ffn == 0 || down.n_tokens == 0 {
        return Ok(());
    }
    let targets = [target_params(gate, 0), target_params(up, 0), TargetParams::default()];
    let params = params(down, targets, 2, ffn);
    let groups = params.n_col_groups as u64 * down.n_tokens as u64;
    let grid = Grid::for_items(groups, 1, batch.max_workgroups_per_dimension());
    batch.dispatch(&LoraVecKey::Geglu, &[down.a, down.x, b, gate.y.buffer, act], &params, grid)
}

/// `u[t] = A·x[t]` (`[n_tokens][rank_total]`), one workgroup per token: the down-projection of a group for a
/// prompt chunk, where a tiled product over so few rows would leave most of the GPU idle.
pub fn lora_down(batch: &mut Batch, down: &LoraDown, u: &GpuBuffer) -> Result<()> {
    let op = "lora_down";
    if down.rank_total > LORA_VEC_MAX_RANK {
        return Err(GpuError::Unsupported {
            op: op.into(),
            reason: format!("a stacked rank of {} exceeds {LORA_VEC_MAX_RANK}", down.rank_total),
        });
    }
    check_buffer(op, "a", down.a, down.rank_total as u64 * down.in_dim as u64 * 4)?;
    check_buffer(op, "x", down.x, down.n_tokens as u64 * down.in_dim as u64 * 4)?;
    check_buffer(op, "u", u, down.n_tokens as u64 * down.rank_total as u64 * 4)?;
    for input in [down.a, down.x] {
        check_distinct(op, input, u)?;
    }
    if down.n_tokens == 0 || down.rank_total == 0 {
        return Ok(());
    }
    let mut p = params(down, [TargetParams::default(); MAX_TARGETS], 0, 0);
    p.n_col_groups = 1;
    let grid = Grid::for_items(down.n_tokens as u64, 1, batch.max_workgroups_per_dimension());
    batch.dispatch(&LoraVecKey::Down, &[down.a, down.x, u], &p, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<LoraVecKey>()
}
