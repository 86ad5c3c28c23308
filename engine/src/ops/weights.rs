//! Weight operands in GGUF block encodings, shared by `get_rows`, `mul_mat` and `mul_mat_vec`: the types the WGSL
//! block readers decode, the defines that pick a reader, row sizes, and the arguments of a product `y = x · Wᵀ`.

use super::args::{check_binding, check_distinct};
use crate::gpu::{Batch, GpuBuffer, GpuError, Result};
use crate::quant::QuantType;

/// Weight types the block readers of `shaders/include/quant_blocks.wgsl` decode.
pub const WEIGHT_TYPES: [QuantType; 11] = {
    use QuantType::*;
    [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4K, Q5K, Q6K]
};

/// The preprocessor defines that select `t`'s block reader. Dense types are `DENSE_*` because `F16` already
/// means "shader-f16 enabled"; `SCALE_MIN_K4` pulls in the 6-bit scale unpacking that Q4_K and Q5_K share.
pub(crate) fn weight_defines(t: QuantType) -> Vec<(&'static str, String)> {
    use QuantType::*;
    let name = match t {
        F32 => "DENSE_F32",
        F16 => "DENSE_F16",
        BF16 => "DENSE_BF16",
        Q4_0 => "Q4_0",
        Q4_1 => "Q4_1",
        Q5_0 => "Q5_0",
        Q5_1 => "Q5_1",
        Q8_0 => "Q8_0",
        Q4K => "Q4K",
        Q5K => "Q5K",
        Q6K => "Q6K",
        // Unreachable through the dispatchers, which check `WEIGHT_TYPES` first.
        _ => "UNSUPPORTED_WEIGHT_TYPE",
    };
    let mut d = vec![(name, String::new())];
    if matches!(t, Q4K | Q5K) {
        d.push(("SCALE_MIN_K4", String::new()));
    }
    d
}

/// The stem of `t` in variant names: `q4k`, `q4_0`, `bf16`.
pub(crate) fn type_stem(t: QuantType) -> String {
    format!("{t:?}").to_lowercase()
}

/// Bytes of one row of `row_elems` elements of `t`, after checking that the kernels can read it: a supported type
/// and a whole number of blocks and of 8-element groups (every kernel thread handles groups of 8).
pub(crate) fn checked_row_bytes(op: &str, t: QuantType, row_elems: u32) -> Result<u64> {
    let unsupported = |reason: String| GpuError::Unsupported { op: op.to_owned(), reason };
    if !WEIGHT_TYPES.contains(&t) {
        return Err(unsupported(format!("weight type {t} has no WGSL block reader; supported: {WEIGHT_TYPES:?}")));
    }
    let step = t.block_elems().max(8);
    if !(row_elems as u64).is_multiple_of(step) {
        return Err(unsupported(format!("a row of {row_elems} {t} elements is not a multiple of {step}")));
    }
    t.bytes_for(row_elems as u64).ok_or_else(|| unsupported(format!("{row_elems} elements of {t}")))
}

/// Matches `Params` in `mul_mat_vec.wgsl` and `mul_mat.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MulMatParams {
    pub m_rows: u32,
    pub k: u32,
    pub n_tokens: u32,
    pub row_bytes: u32,
    pub y_first_row: u32,
    pub y_row_stride: u32,
    /// Row blocks (mat-vec) or row tiles of 64 (tiled).
    pub n_row_groups: u32,
    /// Groups of 8 along k each split of the tiled kernels sums (a multiple of their step, 4); the mat-vec ignores it.
    pub groups_per_split: u32,
}
const _: () = assert!(size_of::<MulMatParams>() == 32);

/// One product, possibly of one row part of a split weight tensor.
#[derive(Debug, Clone, Copy)]
pub struct MulMatArgs<'a> {
    pub weights: &'a GpuBuffer,
    pub wtype: QuantType,
    /// Rows of W in `weights` (of this part).
    pub m_rows: u32,
    pub k: u32,
    pub x: &'a GpuBuffer,
    pub n_tokens: u32,
    pub y: &'a GpuBuffer,
    /// Column of y that row 0 of `weights` writes (the part's first global row).
    pub y_first_row: u32,
    /// Length of a y row (all rows of the whole tensor).
    pub y_row_stride: u32,
    /// A low-rank update added to each product before it is stored (the mat-vec kernel only).
    pub lora: Option<LoraEpilogue<'a>>,
    /// Scratch the tiled kernels may split k into: `[splits][n_tokens][m_rows]` f32 partial sums, as many splits as
    /// it holds (see `mul_mat::k_split`); None never splits.
    pub partials: Option<&'a GpuBuffer>,
}

/// One product's low-rank update: `+ Σ_j b[b_offset_elems + r·rank + j] · u[t][first_rank + j]` for row `r` of the
/// weights (of this part) and token `t`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoraTerm {
    /// 0: no update.
    pub rank: u32,
    pub b_offset_elems: u32,
    pub first_rank: u32,
}

/// LoRA updates `y = W·x + B·u` with `u = A·x` made beforehand (`docs/lora.md`): the B matrices (already scaled)
/// and the down-projections `u` (`[n_tokens][u_stride]` from element `u_offset_elems`) of a group of targets,
/// each the sum of `u_parts` parts `part_stride` elements apart (the attention merge makes o's `u` one part per
/// head; 1 part elsewhere).
#[derive(Debug, Clone, Copy)]
pub struct LoraEpilogue<'a> {
    pub b: &'a GpuBuffer,
    pub u: &'a GpuBuffer,
    pub u_offset_elems: u32,
    pub u_stride: u32,
    pub u_parts: u32,
    pub part_stride: u32,
    /// The product's update (the gate's, for a GeGLU).
    pub term: LoraTerm,
    /// A stacked GeGLU's up rows' update; no other product reads it.
    pub up: LoraTerm,
}

impl LoraEpilogue<'_> {
    /// The update of a part whose rows start at row `first` of the tensor (`SplitTensor`).
    pub fn from_row(self, first: u32) -> Self {
        let skip = |t: LoraTerm| LoraTerm { b_offset_elems: t.b_offset_elems + first * t.rank, ..t };
        LoraEpilogue { term: skip(self.term), up: skip(self.up), ..self }
    }
}

impl<'a> MulMatArgs<'a> {
    /// The whole tensor: y is [n_tokens][m_rows].
    pub fn new(
        weights: &'a GpuBuffer,
        wtype: QuantType,
        m_rows: u32,
        k: u32,
        x: &'a GpuBuffer,
        n_tokens: u32,
        y: &'a GpuBuffer,
    ) -> Self {
        let (y_first_row, y_row_stride) = (0, m_rows);
        MulMatArgs { weights, wtype, m_rows, k, x, n_tokens, y, y_first_row, y_row_stride, lora: None, partials: None }
    }

    /// Makes this a part whose rows are global rows `y_first_row..` of a tensor of `y_row_stride` rows.
    pub fn part(self, y_first_row: u32, y_row_stride: u32) -> Self {
        MulMatArgs { y_first_row, y_row_stride, ..self }
    }

    /// Adds `lora`'s update to every product.
    pub fn with_lora(self, lora: Option<LoraEpilogue<'a>>) -> Self {
        MulMatArgs { lora, ..self }
    }

    /// Lets a prompt's product split k into `partials` where it has too few tiles to fill the GPU.
    pub fn with_partials(self, partials: Option<&'a GpuBuffer>) -> Self {
        MulMatArgs { partials, ..self }
    }
}

/// Validates a product and returns W's row bytes, or `None` when there is nothing to compute.
pub(crate) fn checked_args(op: &str, a: &MulMatArgs, batch: &Batch) -> Result<Option<u64>> {
    let row_bytes = checked_row_bytes(op, a.wtype, a.k)?;
    if (a.y_row_stride as u64) < a.y_first_row as u64 + a.m_rows as u64 {
        return Err(GpuError::Unsupported {
            op: op.into(),
            reason: format!(
                "rows {}..{} do not fit a y row of {}",
                a.y_first_row,
                a.y_first_row as u64 + a.m_rows as u64,
                a.y_row_stride
            ),
        });
    }
    if a.m_rows == 0 || a.n_tokens == 0 {
        return Ok(None);
    }
    let (m, n, k) = (a.m_rows as u64, a.n_tokens as u64, a.k as u64);
    let max_binding = batch.caps().max_storage_buffer_binding_bytes;
    check_binding(op, "weights", a.weights, m * row_bytes, max_binding)?;
    check_binding(op, "x", a.x, n * k * 4, max_binding)?;
    let y_elems = (n - 1) * a.y_row_stride as u64 + a.y_first_row as u64 + m;
    check_binding(op, "y", a.y, y_elems * 4, max_binding)?;
    if let Some(lora) = &a.lora {
        check_lora(op, lora, m, n, max_binding)?;
        for input in [lora.b, lora.u] {
            check_distinct(op, input, a.y)?;
        }
    }
    Ok(Some(row_bytes))
}

fn check_lora(op: &str, lora: &LoraEpilogue, m_rows: u64, n_tokens: u64, max_binding: u64) -> Result<()> {
    for term in [lora.term, lora.up].iter().filter(|t| t.rank > 0) {
        let (rank, first) = (term.rank as u64, term.first_rank as u64);
        // From a row's first element to the last one this term reads: its ranks in the last part.
        let span = (lora.u_parts as u64).saturating_sub(1) * lora.part_stride as u64 + first + rank;
        if lora.u_parts == 0 || span > lora.u_stride as u64 {
            return Err(GpuError::Unsupported {
                op: op.into(),
                reason: format!(
                    "LoRA ranks {first}..{} of {} parts {} apart past a u row of {}",
                    first + rank,
                    lora.u_parts,
                    lora.part_stride,
                    lora.u_stride
                ),
            });
        }
        check_binding(op, "LoRA B", lora.b, (term.b_offset_elems as u64 + m_rows * rank) * 4, max_binding)?;
        let u_elems = lora.u_offset_elems as u64 + (n_tokens - 1) * lora.u_stride as u64 + span;
        check_binding(op, "LoRA u", lora.u, u_elems * 4, max_binding)?;
    }
    Ok(())
}
