//! The gradients of `mul_mat` (y = x·Wᵀ, x `[n][k]`, W `[m][k]`) for training: the input gradient `dx = dy·W` for
//! every weight type (f32 in `shaders/mul_mat_grad.wgsl`, any shape, overwritten or accumulated; the frozen base's
//! block types and f16/bf16 decoded as read, never into memory: `shaders/mul_mat_grad_q.wgsl` for few tokens,
//! `mul_mat_grad_q_tiled.wgsl` for a sequence, `mul_mat_grad_q_coop.wgsl` for its tiles on cooperative matrices),
//! and the weight gradient `dW = scale·dyᵀ·x` (ggml `out_prod`) for f32 weights, LoRA's A and B.

use super::WG_SIZE;
use super::args::{check_binding, check_buffer, check_coop_matrix, check_distinct, checked_u32};
use super::mul_mat::WEIGHT_TYPES;
use super::sum_splits::sum_splits;
use super::tile::{TILE_INVOCATIONS, Tile};
use super::weights::{checked_row_bytes, type_stem, weight_defines};
use crate::gpu::kernels::{
    Access, BOOLS, KernelKey, Requires, VariantSource, defines_with, key_variants, reduction_name, variants_of,
};
use crate::gpu::{Batch, GpuBuffer, GpuError, Grid, Result};
use crate::quant::QuantType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MulMatGradKey {
    /// Reads lhs as `[n_inner][n_out_rows]`: the weight gradient.
    pub transpose_lhs: bool,
    /// Adds to the output instead of overwriting it.
    pub accumulate: bool,
    pub inner: InnerSum,
}

/// Who takes an output element's inner sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InnerSum {
    /// One invocation walks it: many outputs, each a short sum.
    Serial,
    /// One workgroup shares it and then reduces (with subgroups where granted): few outputs, each a long sum, as
    /// LoRA's `g = dy·B` (seq × rank outputs, each over up to 12288 products) and `dA = gᵀ·x` (rank × k outputs).
    Workgroup { subgroups: bool },
}

const INNER_SUMS: [InnerSum; 3] =
    [InnerSum::Serial, InnerSum::Workgroup { subgroups: false }, InnerSum::Workgroup { subgroups: true }];

/// Outputs up to which a workgroup takes each one's sum: this many workgroups already fill a large GPU (an H200
/// holds ~270k invocations resident), where one invocation per output would leave most lanes idle.
const WORKGROUP_SUM_MAX_OUTPUTS: u32 = 1 << 16;
/// Inner lengths from which a workgroup's sum pays: a quarter of its lanes busy. The registry's grad cases (inner 5
/// to 64) take both paths; on training shapes (inner = the sequence, or a projection's width) the output count
/// decides.
const WORKGROUP_SUM_MIN_INNER: u32 = WG_SIZE / 4;

/// The inner sum for a product of `n_outputs` elements, each over `n_inner` products.
pub fn inner_sum(n_outputs: u32, n_inner: u32, subgroups: bool) -> InnerSum {
    if n_outputs <= WORKGROUP_SUM_MAX_OUTPUTS && n_inner >= WORKGROUP_SUM_MIN_INNER {
        InnerSum::Workgroup { subgroups }
    } else {
        InnerSum::Serial
    }
}

/// Matches `Params` in `mul_mat_grad.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MulMatGradParams {
    n_elems: u32,
    n_out_cols: u32,
    n_inner: u32,
    n_out_rows: u32,
    scale: f32,
    _pad: [u32; 3],
}
const _: () = assert!(size_of::<MulMatGradParams>() == 32);

impl KernelKey for MulMatGradKey {
    const FILE: &'static str = "mul_mat_grad.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        let which = if self.transpose_lhs { "w" } else { "x" };
        let acc = if self.accumulate { "_acc" } else { "" };
        let inner = match self.inner {
            InnerSum::Serial => String::new(),
            InnerSum::Workgroup { subgroups } => format!("_wgsum_{}", reduction_name(subgroups)),
        };
        format!("mul_mat_grad_{which}{acc}{inner}_f32_wg{WG_SIZE}")
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        let (workgroup_sum, subgroups) = match self.inner {
            InnerSum::Serial => (false, false),
            InnerSum::Workgroup { subgroups } => (true, subgroups),
        };
        defines_with(
            WG_SIZE,
            &[
                ("TRANSPOSE_LHS", self.transpose_lhs),
                ("ACCUMULATE", self.accumulate),
                ("WORKGROUP_SUM", workgroup_sum),
                ("SUBGROUPS", subgroups),
            ],
        )
    }

    fn requires(&self) -> Requires {
        Requires { f16: false, subgroups: self.inner == InnerSum::Workgroup { subgroups: true }, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        key_variants!(MulMatGradKey { transpose_lhs in BOOLS, accumulate in BOOLS, inner in INNER_SUMS })
    }
}

/// The shape of the forward product: `n` tokens, `m` outputs, `k` inputs.
#[derive(Debug, Clone, Copy)]
pub struct MulMatShape {
    pub m: u32,
    pub k: u32,
    pub n: u32,
}

/// `dx` `[n][k]` = `dy` `[n][m]` · `w` `[m][k]`, `w` stored as `wtype`. Overwritten, or with `accumulate` (f32
/// weights only: the base's product comes first, the adapters' add to it) added to. For the other types,
/// `partials` (scratch nothing else reads) lets the rows be split over more invocations when there are few
/// (few tokens, long rows: an LM head), each split's sum written there and then added up into dx; the more room,
/// the more splits it can take ([`grad_x_plan`]). The kernel is picked by token count; [`mul_mat_grad_x_with`]
/// forces one.
#[allow(clippy::too_many_arguments)]
pub fn mul_mat_grad_x(
    batch: &mut Batch,
    shape: MulMatShape,
    dy: &GpuBuffer,
    w: &GpuBuffer,
    wtype: QuantType,
    dx: &GpuBuffer,
    accumulate: bool,
    partials: Option<&GpuBuffer>,
) -> Result<()> {
    mul_mat_grad_x_with(batch, shape, dy, w, wtype, dx, accumulate, partials, GradXPath::Auto)
}

/// Which kernel takes the input gradient of a weight other than f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradXPath {
    /// [`GradXPath::Columns`] below [`TILED_MIN_TOKENS`] tokens, [`GradXPath::Tiled`] from there. Not
    /// [`GradXPath::Coop`]: on an H100 it passed every grad case but took 1.7× the tiled kernel's time in a
    /// training step (perf/LOG.md, stop 35).
    Auto,
    /// `mul_mat_grad_q.wgsl`: an invocation per group of 8 columns and 4 tokens.
    Columns,
    /// `mul_mat_grad_q_tiled.wgsl`: a workgroup per tile of columns × tokens ([`Tile`]).
    Tiled,
    /// `mul_mat_grad_q_coop.wgsl`: the square tiles on cooperative matrices (f16 operands, dy scaled per token,
    /// f32 sums); an `Unsupported` error where the device has none.
    Coop,
}

/// Tokens from which the tiles pay: below, part of even the wide tile's 16 tokens would be padding, where the
/// columns kernel's items of 4 tokens waste at most 3.
pub const TILED_MIN_TOKENS: u32 = 16;

/// [`mul_mat_grad_x`] on the given path (f32 weights ignore it: they have one kernel).
#[allow(clippy::too_many_arguments)]
pub fn mul_mat_grad_x_with(
    batch: &mut Batch,
    shape: MulMatShape,
    dy: &GpuBuffer,
    w: &GpuBuffer,
    wtype: QuantType,
    dx: &GpuBuffer,
    accumulate: bool,
    partials: Option<&GpuBuffer>,
    path: GradXPath,
) -> Result<()> {
    let op = "mul_mat_grad_x";
    if wtype == QuantType::F32 {
        return product(
            batch,
            op,
            false,
            accumulate,
            [("dy", dy, shape.n, shape.m), ("w", w, shape.m, shape.k)],
            dx,
            1.0,
        );
    }
    if accumulate {
        return Err(GpuError::Unsupported {
            op: op.into(),
            reason: format!("accumulating into dx is for f32 weights; {wtype} weights overwrite it"),
        });
    }
    let row_bytes = checked_row_bytes(op, wtype, shape.k)?;
    let dx_elems = checked_u32(op, "dx elements", shape.n as u64 * shape.k as u64)?;
    // The kernel's byte offsets into W are u32, as the forward's (check_binding refuses more).
    check_binding(op, "w", w, shape.m as u64 * row_bytes, batch.caps().max_storage_buffer_binding_bytes)?;
    check_buffer(op, "dy", dy, shape.n as u64 * shape.m as u64 * 4)?;
    check_buffer(op, "dx", dx, dx_elems as u64 * 4)?;
    check_distinct(op, dy, dx)?;
    check_distinct(op, w, dx)?;
    if dx_elems == 0 || shape.m == 0 {
        return Ok(());
    }
    let room = partials.map_or(0, |p| p.size_bytes());
    // The matrix-core kernel has the square tile's geometry, so the plan (and its partials) is the same.
    let coop = path == GradXPath::Coop;
    if coop {
        check_coop_matrix(op, batch.caps().coop_matrix)?;
    }
    let plan = grad_x_plan(shape, path, room);
    let out = match (plan.n_splits, partials) {
        (1, _) | (_, None) => dx,
        (_, Some(p)) => {
            for input in [dy, w, dx] {
                check_distinct(op, input, p)?;
            }
            p
        }
    };
    let row_bytes = checked_u32(op, "row bytes", row_bytes)?;
    if let Some(tile) = plan.tile {
        let params = MulMatGradQTiledParams {
            n_rows: shape.m,
            row_elems: shape.k,
            n_tokens: shape.n,
            row_bytes,
            n_column_tiles: shape.k.div_ceil(tile.width()),
            n_token_tiles: shape.n.div_ceil(tile.tokens()),
            n_splits: plan.n_splits,
            rows_per_split: plan.rows_per_split,
        };
        let workgroups = checked_u32(op, "workgroups", plan.n_splits as u64 * tiles(shape, tile))?;
        let grid = Grid::for_items(workgroups as u64, 1, batch.max_workgroups_per_dimension());
        if coop {
            batch.dispatch(&MulMatGradQCoopKey { wtype }, &[w, dy, out], &params, grid)?;
        } else {
            batch.dispatch(&MulMatGradQTiledKey { wtype, tile }, &[w, dy, out], &params, grid)?;
        }
    } else {
        let n_items = checked_u32(op, "items", columns_items(shape))?;
        let params = MulMatGradQParams {
            n_items,
            row_elems: shape.k,
            n_rows: shape.m,
            n_tokens: shape.n,
            row_bytes,
            n_splits: plan.n_splits,
            rows_per_split: plan.rows_per_split,
            _pad: 0,
        };
        let invocations = checked_u32(op, "invocations", n_items as u64 * plan.n_splits as u64)?;
        let grid = Grid::for_items(invocations as u64, WG_SIZE, batch.max_workgroups_per_dimension());
        batch.dispatch(&MulMatGradQKey { wtype }, &[w, dy, out], &params, grid)?;
    }
    if plan.n_splits == 1 {
        return Ok(());
    }
    sum_splits(batch, out, dx, dx_elems, plan.n_splits)
}

/// Invocations worth having in flight: a few per lane of a large GPU (an H200 holds ~270k resident).
const TARGET_INVOCATIONS: u64 = 1 << 17;
/// Rows a split walks at least. Small, so that the registry's grad cases (m up to 16) take the split path too;
/// on real shapes the invocation target decides first.
const MIN_ROWS_PER_SPLIT: u32 = 4;

/// How the quantized input gradient runs: which kernel, and the m rows split `n_splits` ways of `rows_per_split`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GradXPlan {
    /// The tile, or None for the columns kernel.
    pub tile: Option<Tile>,
    pub n_splits: u32,
    pub rows_per_split: u32,
}

/// The plan for `shape` on `path`: splits enough to fill the device, at least [`MIN_ROWS_PER_SPLIT`] rows each
/// (a tile's step on the tiled path), as many `[n][k]` partial sums as `room_bytes` holds; 1 is no split.
pub fn grad_x_plan(shape: MulMatShape, path: GradXPath, room_bytes: u64) -> GradXPlan {
    let tile = match path {
        GradXPath::Auto => (shape.n >= TILED_MIN_TOKENS).then(|| Tile::for_tokens(shape.n)),
        GradXPath::Columns => None,
        GradXPath::Tiled => Some(Tile::for_tokens(shape.n)),
        GradXPath::Coop => Some(Tile::Square),
    };
    let (invocations, min_rows) = match tile {
        Some(t) => (tiles(shape, t) * TILE_INVOCATIONS as u64, t.step()),
        None => (columns_items(shape), MIN_ROWS_PER_SPLIT),
    };
    let partial_bytes = (shape.n as u64 * shape.k as u64 * 4).max(1);
    let wanted = TARGET_INVOCATIONS.div_ceil(invocations.max(1));
    let by_rows = (shape.m / min_rows).max(1) as u64;
    let splits = wanted.min(by_rows).min(room_bytes / partial_bytes).max(1) as u32;
    // Equal splits of whole rows (whole steps of a tile): as many as ceil(m / rows each) leaves.
    let step = tile.map_or(1, |t| t.step().min(shape.m).max(1));
    let rows_per_split = shape.m.div_ceil(splits).next_multiple_of(step).max(1);
    GradXPlan { tile, n_splits: shape.m.div_ceil(rows_per_split).max(1), rows_per_split }
}

/// The workgroups of one split of the tiled kernel: column tiles × token tiles.
fn tiles(shape: MulMatShape, tile: Tile) -> u64 {
    shape.k.div_ceil(tile.width()) as u64 * shape.n.div_ceil(tile.tokens()) as u64
}

/// The `[splits][n][k]` partial-sum bytes [`mul_mat_grad_x_with`] uses for `shape` on `path` when given room
/// without limit.
pub fn grad_x_partials_bytes(shape: MulMatShape, path: GradXPath) -> u64 {
    let splits = grad_x_plan(shape, path, u64::MAX).n_splits;
    if splits == 1 { 0 } else { splits as u64 * shape.n as u64 * shape.k as u64 * 4 }
}

/// Tokens each invocation of `mul_mat_grad_q.wgsl` serves per decoded group (`TOKENS` there): W is read once
/// per this many tokens. 8 instead of 4 changed nothing overall on the H200 (E2B, 512 tokens: Q4_K 596 → 555 ms
/// per step, Q6_K 188 → 222), so the smaller register footprint stays.
const QUANT_TOKENS: u32 = 4;

/// The input gradient for a weight type other than f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MulMatGradQKey {
    pub wtype: QuantType,
}

/// Matches `Params` in `mul_mat_grad_q.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MulMatGradQParams {
    n_items: u32,
    row_elems: u32,
    n_rows: u32,
    n_tokens: u32,
    row_bytes: u32,
    n_splits: u32,
    rows_per_split: u32,
    _pad: u32,
}
const _: () = assert!(size_of::<MulMatGradQParams>() == 32);

impl KernelKey for MulMatGradQKey {
    const FILE: &'static str = "mul_mat_grad_q.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("mul_mat_grad_x_{}_f32_wg{WG_SIZE}", type_stem(self.wtype))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        let mut d = weight_defines(self.wtype);
        d.push(("WG_SIZE", format!("{WG_SIZE}u")));
        d.push(("TOKENS", format!("{QUANT_TOKENS}u")));
        d
    }

    fn requires(&self) -> Requires {
        Requires::default()
    }

    fn all_variants() -> Vec<Self> {
        WEIGHT_TYPES.iter().filter(|&&t| t != QuantType::F32).map(|&wtype| MulMatGradQKey { wtype }).collect()
    }
}

/// The invocations of `mul_mat_grad_q.wgsl` for `shape` before any split: one per group of 8 columns and
/// [`QUANT_TOKENS`] tokens.
fn columns_items(shape: MulMatShape) -> u64 {
    shape.n.div_ceil(QUANT_TOKENS) as u64 * (shape.k / 8) as u64
}

/// The tiled input gradient for a weight type other than f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MulMatGradQTiledKey {
    pub wtype: QuantType,
    pub tile: Tile,
}

/// Matches `Params` in `mul_mat_grad_q_tiled.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MulMatGradQTiledParams {
    n_rows: u32,
    row_elems: u32,
    n_tokens: u32,
    row_bytes: u32,
    n_column_tiles: u32,
    n_token_tiles: u32,
    n_splits: u32,
    rows_per_split: u32,
}
const _: () = assert!(size_of::<MulMatGradQTiledParams>() == 32);

impl KernelKey for MulMatGradQTiledKey {
    const FILE: &'static str = "mul_mat_grad_q_tiled.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("mul_mat_grad_x_{}_f32_t{}", type_stem(self.wtype), self.tile.label())
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        let mut d = weight_defines(self.wtype);
        d.push(("TILE_C", format!("{}u", self.tile.width())));
        d
    }

    fn requires(&self) -> Requires {
        Requires::default()
    }

    fn all_variants() -> Vec<Self> {
        let types = WEIGHT_TYPES.iter().filter(|&&t| t != QuantType::F32);
        types.flat_map(|&wtype| Tile::ALL.map(|tile| MulMatGradQTiledKey { wtype, tile })).collect()
    }
}

/// The square tiles of [`MulMatGradQTiledKey`] on cooperative matrices, 128 invocations; the same parameters and
/// bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MulMatGradQCoopKey {
    pub wtype: QuantType,
}

impl KernelKey for MulMatGradQCoopKey {
    const FILE: &'static str = "mul_mat_grad_q_coop.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("mul_mat_grad_x_{}_f32_coop16_t{}", type_stem(self.wtype), Tile::Square.label())
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        weight_defines(self.wtype)
    }

    fn requires(&self) -> Requires {
        Requires::COOP_MATRIX
    }

    fn all_variants() -> Vec<Self> {
        WEIGHT_TYPES.iter().filter(|&&t| t != QuantType::F32).map(|&wtype| MulMatGradQCoopKey { wtype }).collect()
    }
}

/// `dw` `[m][k]` = `scale`·`dy`ᵀ · `x` (`dy` `[n][m]`, `x` `[n][k]`, f32), overwritten or, with `accumulate`, added to.
pub fn mul_mat_grad_w(
    batch: &mut Batch,
    shape: MulMatShape,
    dy: &GpuBuffer,
    x: &GpuBuffer,
    dw: &GpuBuffer,
    scale: f32,
    accumulate: bool,
) -> Result<()> {
    product(
        batch,
        "mul_mat_grad_w",
        true,
        accumulate,
        [("dy", dy, shape.n, shape.m), ("x", x, shape.n, shape.k)],
        dw,
        scale,
    )
}

/// `operands`: (name, buffer, rows, cols) of lhs as stored, then rhs `[n_inner][n_out_cols]`; lhs is read
/// transposed for the weight gradient, and the inner sum is chosen from the shape.
fn product(
    batch: &mut Batch,
    op: &str,
    transpose_lhs: bool,
    accumulate: bool,
    operands: [(&str, &GpuBuffer, u32, u32); 2],
    out: &GpuBuffer,
    scale: f32,
) -> Result<()> {
    let [(_, lhs, lhs_rows, lhs_cols), (_, rhs, n_inner, n_out_cols)] = operands;
    let n_out_rows = if transpose_lhs { lhs_cols } else { lhs_rows };
    let lhs_inner = if transpose_lhs { lhs_rows } else { lhs_cols };
    if lhs_inner != n_inner {
        return Err(GpuError::Unsupported {
            op: op.into(),
            reason: format!("inner lengths differ: {lhs_inner} and {n_inner}"),
        });
    }
    if !scale.is_finite() {
        return Err(GpuError::Unsupported { op: op.into(), reason: format!("scale must be finite, got {scale}") });
    }
    for (what, buffer, rows, cols) in operands {
        check_buffer(op, what, buffer, rows as u64 * cols as u64 * 4)?;
        check_distinct(op, buffer, out)?;
    }
    let n_elems = checked_u32(op, "output elements", n_out_rows as u64 * n_out_cols as u64)?;
    check_buffer(op, "out", out, n_elems as u64 * 4)?;
    if n_elems == 0 {
        return Ok(());
    }
    let params = MulMatGradParams { n_elems, n_out_cols, n_inner, n_out_rows, scale, _pad: [0; 3] };
    let key = MulMatGradKey { transpose_lhs, accumulate, inner: inner_sum(n_elems, n_inner, batch.caps().subgroups) };
    let per_workgroup = match key.inner {
        InnerSum::Serial => WG_SIZE,
        InnerSum::Workgroup { .. } => 1,
    };
    let grid = Grid::for_items(n_elems as u64, per_workgroup, batch.max_workgroups_per_dimension());
    batch.dispatch(&key, &[lhs, rhs, out], &params, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    let mut v = variants_of::<MulMatGradKey>()?;
    v.extend(variants_of::<MulMatGradQKey>()?);
    v.extend(variants_of::<MulMatGradQTiledKey>()?);
    v.extend(variants_of::<MulMatGradQCoopKey>()?);
    Ok(v)
}
