//! ggml `mul_mat` with weights stored as GGUF blocks: y[t][r] = dot(W[r], x[t]) with W [m_rows][k] in any of
//! [`WEIGHT_TYPES`], x [n_tokens][k] f32 and y [n_tokens][m_rows] f32, dequantized on the fly and accumulated in
//! f32. Two kernels: `mul_mat_vec` (decode, a few tokens: bandwidth-bound, one pass over W per token; see
//! `super::mul_mat_vec`) and the tiled `mul_mat` (prefill: 64×64 workgroup tiles). [`mul_mat`] picks by token
//! count; [`mul_mat_with`] and a [`MulMatPath`] force one path so both can be tested at any size.
//!
//! Tensors larger than one binding are split on rows (`SplitTensor`); dispatch each part with
//! [`MulMatArgs::part`] so its rows land at their columns of the shared y.

pub use super::mul_mat_vec::VEC_MAX_TOKENS;
use super::mul_mat_vec::record_vec;
use crate::error::{Error, Result};
use crate::gpu::kernels::{Access, KernelKey, Requires, VariantSource, variants_of};
use crate::gpu::{Batch, GpuBuffer, Grid};
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
    let unsupported = |reason: String| Error::Unsupported { op: op.to_owned(), reason };
    if !WEIGHT_TYPES.contains(&t) {
        return Err(unsupported(format!("weight type {t} has no WGSL block reader; supported: {WEIGHT_TYPES:?}")));
    }
    let step = t.block_elems().max(8);
    if !(row_elems as u64).is_multiple_of(step) {
        return Err(unsupported(format!("a row of {row_elems} {t} elements is not a multiple of {step}")));
    }
    t.bytes_for(row_elems as u64).ok_or_else(|| unsupported(format!("{row_elems} elements of {t}")))
}

/// Errors unless `buffer` holds `need_bytes` and every byte offset the kernel computes fits in u32.
pub(crate) fn check_binding(
    op: &str,
    what: &str,
    buffer: &GpuBuffer,
    need_bytes: u64,
    max_binding_bytes: u64,
) -> Result<()> {
    if buffer.size_bytes() > max_binding_bytes {
        return Err(Error::LimitExceeded {
            what: format!("{what} binding `{}` of {op}", buffer.label()),
            requested: buffer.size_bytes(),
            limit: max_binding_bytes,
            hint: "split the tensor on rows (SplitTensor) and dispatch once per part",
        });
    }
    if need_bytes > u32::MAX as u64 {
        return Err(Error::LimitExceeded {
            what: format!("{what} of {op} (byte offsets are 32-bit in WGSL)"),
            requested: need_bytes,
            limit: u32::MAX as u64,
            hint: "split the tensor on rows (SplitTensor) and dispatch once per part",
        });
    }
    if buffer.size_bytes() < need_bytes {
        return Err(Error::Unsupported {
            op: op.to_owned(),
            reason: format!("{what} needs {need_bytes} bytes, `{}` has {}", buffer.label(), buffer.size_bytes()),
        });
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MulMatKey {
    pub wtype: QuantType,
}

/// Output tile of the tiled kernel (rows × tokens), fixed in `mul_mat.wgsl`.
const TILE_M: u32 = 64;
const TILE_N: u32 = 64;

impl KernelKey for MulMatKey {
    const FILE: &'static str = "mul_mat.wgsl";
    const BINDINGS: &'static [Access] = &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform];

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
    pub _pad: u32,
}
const _: () = assert!(size_of::<MulMatParams>() == 32);

/// Which kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MulMatPath {
    /// `mul_mat_vec` up to [`VEC_MAX_TOKENS`] tokens, the tiled kernel beyond.
    Auto,
    Vec,
    Tiled,
}

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
        MulMatArgs { weights, wtype, m_rows, k, x, n_tokens, y, y_first_row: 0, y_row_stride: m_rows }
    }

    /// Makes this a part whose rows are global rows `y_first_row..` of a tensor of `y_row_stride` rows.
    pub fn part(self, y_first_row: u32, y_row_stride: u32) -> Self {
        MulMatArgs { y_first_row, y_row_stride, ..self }
    }
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

/// Validates a product and returns W's row bytes, or `None` when there is nothing to compute.
pub(crate) fn checked_args(op: &str, a: &MulMatArgs, batch: &Batch) -> Result<Option<u64>> {
    let row_bytes = checked_row_bytes(op, a.wtype, a.k)?;
    if (a.y_row_stride as u64) < a.y_first_row as u64 + a.m_rows as u64 {
        return Err(Error::Unsupported {
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
    Ok(Some(row_bytes))
}

/// The general entry: validates, picks the variant and records one dispatch (none for zero rows or tokens).
pub fn mul_mat_with(batch: &mut Batch, a: &MulMatArgs, path: MulMatPath) -> Result<()> {
    let Some(row_bytes) = checked_args("mul_mat", a, batch)? else { return Ok(()) };
    let vec = match path {
        MulMatPath::Auto => a.n_tokens <= VEC_MAX_TOKENS,
        MulMatPath::Vec => true,
        MulMatPath::Tiled => false,
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
    if vec {
        return record_vec(batch, a, &mut params, None);
    }
    let grid = Grid::for_items(
        params.n_row_groups as u64 * a.n_tokens.div_ceil(TILE_N) as u64,
        1,
        batch.max_workgroups_per_dimension(),
    );
    batch.dispatch(&MulMatKey { wtype: a.wtype }, &[a.weights, a.x, a.y], &params, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    let mut all = super::mul_mat_vec::variants()?;
    all.extend(variants_of::<MulMatKey>()?);
    Ok(all)
}
