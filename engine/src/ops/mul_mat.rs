//! ggml `mul_mat` with weights stored as GGUF blocks: y[t][r] = dot(W[r], x[t]) with W [m_rows][k] in any of
//! [`WEIGHT_TYPES`], x [n_tokens][k] f32 and y [n_tokens][m_rows] f32, dequantized on the fly and accumulated in
//! f32. Three kernels: `mul_mat_vec` (decode, a few tokens: bandwidth-bound, one pass over W per token; see
//! `super::mul_mat_vec`), the tiled `mul_mat` (prefill: 64×64 workgroup tiles of f32 products) and `mul_mat_coop`
//! (the same tiles on cooperative matrices, f16 operands and f32 sums, where the device grants them). [`mul_mat`]
//! picks by token count and device; [`mul_mat_with`] and a [`MulMatPath`] force one path so each can be tested at
//! any size.
//!
//! Tensors larger than one binding are split on rows (`SplitTensor`); dispatch each part with
//! [`MulMatArgs::part`] so its rows land at their columns of the shared y. A prompt's product with few tiles (few
//! rows) splits k where the caller lends scratch ([`MulMatArgs::with_partials`]), and one more dispatch sums the
//! splits into y.

use super::args::{check_coop_matrix, check_distinct};
pub use super::mul_mat_vec::VEC_MAX_TOKENS;
use super::mul_mat_vec::record_vec;
use super::sum_splits::sum_splits;
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
/// Groups of 8 along k per step of both tiled kernels (`TILE_K / 8` in their WGSL).
const TILE_K_GROUPS: u32 = 4;

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

/// The tiled product on cooperative matrices (`mul_mat_coop.wgsl`): [`MulMatKey`]'s parameters and bindings, 64
/// rows by [`CoopTile::tokens`] tokens, two invocations per token of the tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MulMatCoopKey {
    pub wtype: QuantType,
    pub tile: CoopTile,
}

/// The token side of a cooperative-matrix tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoopTile {
    /// 64 × 64, as the f32 tiles.
    Square,
    /// 64 rows × 128 tokens: each W element dequantized half as often, for long prompts.
    Wide,
}

impl CoopTile {
    pub fn tokens(self) -> u32 {
        match self {
            CoopTile::Square => 64,
            CoopTile::Wide => 128,
        }
    }
}

impl KernelKey for MulMatCoopKey {
    const FILE: &'static str = "mul_mat_coop.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("mul_mat_{}_f32_coop16_t{TILE_M}x{}x32", type_stem(self.wtype), self.tile.tokens())
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        let tokens = self.tile.tokens();
        let mut defines = weight_defines(self.wtype);
        defines.extend([("TILE_TOKENS", format!("{tokens}u")), ("WG_SIZE", format!("{}u", 2 * tokens))]);
        defines
    }

    fn requires(&self) -> Requires {
        Requires::COOP_MATRIX
    }

    fn all_variants() -> Vec<Self> {
        let tiles = [CoopTile::Square, CoopTile::Wide];
        WEIGHT_TYPES.iter().flat_map(|&wtype| tiles.map(|tile| MulMatCoopKey { wtype, tile })).collect()
    }
}

/// Which kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MulMatPath {
    /// `mul_mat_vec` up to [`VEC_MAX_TOKENS`] tokens; beyond, `mul_mat_coop` where the device has cooperative
    /// matrices (the wide tile past 64 tokens where [`WIDE_MIN_ROWS`] and [`WIDE_MAX_K`] say it pays), else the
    /// tiled kernel.
    Auto,
    Vec,
    /// The tiled kernel's f32 products.
    Tiled,
    /// The tiled kernel on cooperative matrices, 64 × 64 tiles: an `Unsupported` error where the device has none.
    Coop,
    /// As [`MulMatPath::Coop`], 64 × 128 tiles ([`CoopTile::Wide`]).
    CoopWide,
}

impl MulMatPath {
    /// The cooperative-matrix tile this path forces, if any.
    pub fn coop_tile(self) -> Option<CoopTile> {
        match self {
            MulMatPath::Coop => Some(CoopTile::Square),
            MulMatPath::CoopWide => Some(CoopTile::Wide),
            _ => None,
        }
    }
}

/// Where the wide coop tile pays, measured on an H100 at 512 tokens (perf/LOG.md, stop 35): products of many rows
/// (4096–12288 × 1536 or 2560: 1.04–1.38× the square tile). With fewer rows its half as many workgroups do not
/// fill the GPU (256–2560 rows: up to 20% slower), nor with long rows, where each walks the whole k (1536 × 12288:
/// 2.3× slower).
const WIDE_MIN_ROWS: u32 = 4096;
const WIDE_MAX_K: u32 = 4096;

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
        MulMatPath::Auto if coop_matrix && a.n_tokens > CoopTile::Square.tokens() && wide_pays(a) => {
            MulMatPath::CoopWide
        }
        MulMatPath::Auto if coop_matrix => MulMatPath::Coop,
        MulMatPath::Auto => MulMatPath::Tiled,
        MulMatPath::Coop | MulMatPath::CoopWide => {
            check_coop_matrix("mul_mat", coop_matrix)?;
            path
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
        groups_per_split: 0,
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
    let coop_tile = path.coop_tile();
    let tile_tokens = coop_tile.map_or(TILE_N, CoopTile::tokens);
    let n_tiles = params.n_row_groups as u64 * a.n_tokens.div_ceil(tile_tokens) as u64;
    let n_groups = a.k / 8;
    let split = k_split(a, n_tiles, n_groups, batch.caps().max_storage_buffer_binding_bytes);
    params.groups_per_split = split.groups_per_split;
    let out = match split.partials {
        Some(partials) => {
            for input in [a.weights, a.x, a.y] {
                check_distinct("mul_mat", input, partials)?;
            }
            partials
        }
        None => a.y,
    };
    let grid = Grid::for_items(split.n_splits as u64 * n_tiles, 1, batch.max_workgroups_per_dimension());
    let buffers = [a.weights, a.x, out];
    match coop_tile {
        Some(tile) => batch.dispatch(&MulMatCoopKey { wtype: a.wtype, tile }, &buffers, &params, grid)?,
        None => batch.dispatch(&MulMatKey { wtype: a.wtype }, &buffers, &params, grid)?,
    }
    if split.n_splits == 1 {
        return Ok(());
    }
    sum_splits(batch, out, a.y, a.n_tokens * a.m_rows, split.n_splits)
}

/// Workgroups worth having in flight for a prompt's product: ~8 per SM of an H100 (132 SMs). The o and down
/// projections of E2B make 192 tiles at 512 tokens, and K/V 32.
const TARGET_WORKGROUPS: u64 = 1024;
/// Groups of 8 along k a split sums at least: 4 steps of the tiles' loop.
const MIN_GROUPS_PER_SPLIT: u32 = 16;

/// How a tiled product walks k: in `n_splits` splits of `groups_per_split` groups each (the last may be shorter),
/// into `partials` when there are several.
struct KSplit<'a> {
    n_splits: u32,
    groups_per_split: u32,
    partials: Option<&'a GpuBuffer>,
}

/// Splits k where `n_tiles` workgroups would leave the GPU idle and the caller gave room: enough splits to reach
/// [`TARGET_WORKGROUPS`], each at least [`MIN_GROUPS_PER_SPLIT`], as many `[n_tokens][m_rows]` partial sums as
/// `partials` holds within one binding. Only whole products (y is `[n_tokens][m_rows]`) with rows in multiples of
/// 4 split, so that the sum reads vec4s. Rounding the splits down instead (none from 512 tiles up; E2B's o and down
/// projections in 5 splits, not 6) made E2B's prefill 3% slower on an H100; but 768 square tiles (6144 × 1536) ran
/// 13% slower in two splits, a shape the model lends no scratch to (perf/LOG.md, stop 36).
fn k_split<'a>(a: &MulMatArgs<'a>, n_tiles: u64, n_groups: u32, max_binding_bytes: u64) -> KSplit<'a> {
    let step = TILE_K_GROUPS;
    let whole = KSplit { n_splits: 1, groups_per_split: n_groups.next_multiple_of(step).max(step), partials: None };
    let Some(partials) = a.partials else { return whole };
    if a.y_first_row != 0 || a.y_row_stride != a.m_rows || !a.m_rows.is_multiple_of(4) {
        return whole;
    }
    let split_bytes = a.n_tokens as u64 * a.m_rows as u64 * 4;
    let room = partials.size_bytes().min(max_binding_bytes) / split_bytes;
    let splits = wanted_splits(n_tiles, n_groups).min(room).max(1) as u32;
    if splits == 1 {
        return whole;
    }
    let groups_per_split = n_groups.div_ceil(splits).next_multiple_of(step);
    KSplit { n_splits: n_groups.div_ceil(groups_per_split), groups_per_split, partials: Some(partials) }
}

/// Splits of k that bring `n_tiles` workgroups to [`TARGET_WORKGROUPS`], each at least [`MIN_GROUPS_PER_SPLIT`]
/// of the `n_groups` groups of 8 (before the room for partial sums limits them; 0 or 1: no split).
fn wanted_splits(n_tiles: u64, n_groups: u32) -> u64 {
    TARGET_WORKGROUPS.div_ceil(n_tiles.max(1)).min((n_groups / MIN_GROUPS_PER_SPLIT) as u64)
}

fn wide_pays(a: &MulMatArgs) -> bool {
    a.m_rows >= WIDE_MIN_ROWS && a.k <= WIDE_MAX_K
}

/// The most partial-sum bytes a product of `n_tokens` × `m_rows` over `k` splits into on any path: room for every
/// split that [`k_split`] asks for with the fewest tiles (the widest).
pub fn max_partials_bytes(m_rows: u32, k: u32, n_tokens: u32) -> u64 {
    let fewest_tiles = m_rows.div_ceil(TILE_M) as u64 * n_tokens.div_ceil(CoopTile::Wide.tokens()) as u64;
    let splits = wanted_splits(fewest_tiles, k / 8).max(1);
    splits * n_tokens as u64 * m_rows as u64 * 4
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    let mut all = super::mul_mat_vec::variants()?;
    all.extend(variants_of::<MulMatKey>()?);
    all.extend(variants_of::<MulMatCoopKey>()?);
    Ok(all)
}
