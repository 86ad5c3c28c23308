//! The decode side of `mul_mat` (`shaders/mul_mat_vec.wgsl`): y = x · Wᵀ for a few tokens, one pass over W, and
//! the same product with GeGLU fused into its epilogue ([`mul_mat_vec_geglu`]): `y = gelu(W·x) ⊙ up`, where `up` is
//! the product with the up rows of a stacked `[gate; up]` matrix (the MLP: one dispatch and one binding read both
//! rows) or a vector read per token (Gemma 4's PLE gate, `gelu(inp_gate·h) ⊙ ple[l]`).

use super::args::check_binding;
use super::weights::{LoraEpilogue, MulMatArgs, MulMatParams, WEIGHT_TYPES, checked_args, type_stem, weight_defines};
use crate::gpu::kernels::{Access, BOOLS, KernelKey, Requires, VariantSource, key_variants, variants_of};
use crate::gpu::{Batch, GpuBuffer, Grid};
use crate::gpu::{GpuError, Result};
use crate::quant::QuantType;

/// Up to this many tokens take the mat-vec path, which decodes each weight once for up to 4 tokens per workgroup;
/// the tiled kernel's 64-token tiles would mostly idle on so few.
pub const VEC_MAX_TOKENS: u32 = 4;

/// Invocations per mat-vec workgroup. Small, so that even the 256-row matrices of a Gemma layer spread over dozens
/// of workgroups and the 1536-row ones over ~200 (one per SM of an H100 or more); 32 such workgroups fit an SM.
const VEC_WG_SIZE: u32 = 64;
/// Rows a row group of lanes owns (one token), and tokens per workgroup of the multi-token variant (one row per
/// group); both are the 4 lanes of the kernel's vec4 accumulator. Fixed in `mul_mat_vec.wgsl`.
const VEC_ROWS_PER_GROUP: u32 = 4;
const VEC_MULTI_TOKENS: u32 = 4;
/// Elements per chunk: the unit one lane reads and decodes (`shaders/include/quant_chunks.wgsl`).
const CHUNK_ELEMS: u32 = 32;

/// Lanes per row group: a full subgroup's worth of 32 for rows of more than 16 chunks (k > 512), so a row's chunks
/// are spread thin and many loads are in flight at once (small matrices are latency-bound); 8 for short rows
/// (the PLE projection's k = 256 has 8 chunks), which leaves no lane idle.
fn lanes_for(k: u32) -> u32 {
    if k.div_ceil(CHUNK_ELEMS) > 16 { 32 } else { 8 }
}

/// Where the up operand of a fused GeGLU comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GluUpKind {
    /// Rows `up_row_offset..` of the same weights (a `[gate; up]` stacked matrix).
    Stacked,
    /// A vector per token, read from a buffer.
    Vector,
}

/// `GLU` adds the `up_vec` binding and the GeGLU epilogue, hence a const parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MulMatVecKey<const GLU: bool> {
    pub wtype: QuantType,
    pub subgroups: bool,
    /// Up to 4 tokens per workgroup (each decoded weight used 4 times) instead of 4 rows of one token per group.
    pub multi_token: bool,
    /// Lanes per row group: 8 or 32.
    pub lanes: u32,
    /// The up operand (GLU only; `Stacked` otherwise, unused).
    pub up: GluUpKind,
    /// A LoRA update in the epilogue (`LoraEpilogue`): two more bindings.
    pub lora: bool,
}

impl<const GLU: bool> KernelKey for MulMatVecKey<GLU> {
    const FILE: &'static str = "mul_mat_vec.wgsl";
    fn bindings(&self) -> &'static [Access] {
        use Access::{Read, ReadWrite, Uniform};
        match (GLU, self.lora) {
            (true, true) => &[Read, Read, Read, ReadWrite, Read, Read, Uniform],
            (true, false) => &[Read, Read, Read, ReadWrite, Uniform],
            (false, true) => &[Read, Read, ReadWrite, Read, Read, Uniform],
            (false, false) => &[Read, Read, ReadWrite, Uniform],
        }
    }

    fn name(&self) -> String {
        let reduce = if self.subgroups { "sg" } else { "wgred" };
        let tokens = if self.multi_token { VEC_MULTI_TOKENS } else { 1 };
        let glu = match (GLU, self.up) {
            (false, _) => "",
            (true, GluUpKind::Stacked) => "_geglu_stacked",
            (true, GluUpKind::Vector) => "_geglu_vec",
        };
        let lora = if self.lora { "_lora" } else { "" };
        let stem = type_stem(self.wtype);
        format!("mul_mat_vec{glu}{lora}_{stem}_f32_{reduce}_wg{VEC_WG_SIZE}_l{}_t{tokens}", self.lanes)
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        let mut d = weight_defines(self.wtype);
        d.push(("WG_SIZE", format!("{VEC_WG_SIZE}u")));
        d.push(("LANES", format!("{}u", self.lanes)));
        let glu_kind = match self.up {
            GluUpKind::Stacked => "GLU_STACKED",
            GluUpKind::Vector => "GLU_VECTOR",
        };
        let flags = [
            (self.subgroups, "SUBGROUPS"),
            (self.multi_token, "MULTI_TOKEN"),
            (GLU, "GLU"),
            (GLU, glu_kind),
            (self.lora, "LORA"),
        ];
        d.extend(flags.into_iter().filter(|(on, _)| *on).map(|(_, name)| (name, String::new())));
        d
    }

    fn requires(&self) -> Requires {
        Requires { f16: false, subgroups: self.subgroups, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        let ups: &[GluUpKind] = if GLU { &[GluUpKind::Stacked, GluUpKind::Vector] } else { &[GluUpKind::Stacked] };
        key_variants!(Self {
            wtype in WEIGHT_TYPES,
            subgroups in BOOLS,
            multi_token in BOOLS,
            lanes in [8, 32],
            up in ups.iter().copied(),
            lora in BOOLS,
        })
    }
}

/// Matches `Params` in `mul_mat_vec.wgsl` with `GLU` defined.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GluParams {
    base: MulMatParams,
    up_row_offset: u32,
    up_vec_offset: u32,
    up_vec_stride: u32,
    _pad: u32,
}
const _: () = assert!(size_of::<GluParams>() == 48);

/// Matches `LoraTerm` in `mul_mat_vec.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LoraTermParams {
    rank: u32,
    b_offset: u32,
    u_offset: u32,
    u_stride: u32,
    u_parts: u32,
    part_stride: u32,
    _pad: [u32; 2],
}

/// `Params` with `LORA` defined, plain and with `GLU`: the product's and the up rows' terms follow.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LoraParams {
    base: MulMatParams,
    terms: [LoraTermParams; 2],
}
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GluLoraParams {
    base: GluParams,
    terms: [LoraTermParams; 2],
}

fn lora_terms(lora: &LoraEpilogue) -> [LoraTermParams; 2] {
    [lora.term, lora.up].map(|t| LoraTermParams {
        rank: t.rank,
        b_offset: t.b_offset_elems,
        u_offset: lora.u_offset_elems + t.first_rank,
        u_stride: lora.u_stride,
        u_parts: lora.u_parts,
        part_stride: lora.part_stride,
        _pad: [0; 2],
    })
}

/// `buffers`, then the LoRA buffers when there is an update.
fn with_lora_buffers<'a>(buffers: &[&'a GpuBuffer], lora: Option<&LoraEpilogue<'a>>) -> Vec<&'a GpuBuffer> {
    let mut all = buffers.to_vec();
    all.extend(lora.iter().flat_map(|l| [l.b, l.u]));
    all
}

/// The up operand of [`mul_mat_vec_geglu`].
#[derive(Debug, Clone, Copy)]
pub enum GluUp<'a> {
    /// Row `r`'s up row is row `up_row_offset + r` of the same weights.
    Stacked { up_row_offset: u32 },
    /// Token `t`, output column `c` (global, `y_first_row + r`) multiplies `buffer[offset + t·row_stride + c]`.
    Vector { buffer: &'a GpuBuffer, offset_elems: u32, row_stride_elems: u32 },
}

/// Records the mat-vec for validated `a` (`params` already filled but for the row-block count), plain or with the
/// GeGLU epilogue.
pub(crate) fn record_vec(
    batch: &mut Batch,
    a: &MulMatArgs,
    params: &mut MulMatParams,
    glu: Option<&GluUp>,
) -> Result<()> {
    let multi_token = a.n_tokens > 1;
    let lanes = lanes_for(a.k);
    let rows_per_group = if multi_token { 1 } else { VEC_ROWS_PER_GROUP };
    params.n_row_groups = a.m_rows.div_ceil(VEC_WG_SIZE / lanes * rows_per_group);
    let tokens_per_wg = if multi_token { VEC_MULTI_TOKENS } else { 1 };
    let n_workgroups = params.n_row_groups as u64 * a.n_tokens.div_ceil(tokens_per_wg) as u64;
    let grid = Grid::for_items(n_workgroups, 1, batch.max_workgroups_per_dimension());
    let subgroups = batch.caps().subgroups;
    let lora = a.lora.is_some();
    if a.lora.is_some_and(|l| l.up.rank > 0) && !matches!(glu, Some(GluUp::Stacked { .. })) {
        return Err(GpuError::Unsupported {
            op: "mul_mat_vec".into(),
            reason: "an up-rows LoRA term needs the stacked GeGLU".into(),
        });
    }
    let Some(glu) = glu else {
        let key = MulMatVecKey::<false> { wtype: a.wtype, subgroups, multi_token, lanes, up: GluUpKind::Stacked, lora };
        let buffers = with_lora_buffers(&[a.weights, a.x, a.y], a.lora.as_ref());
        return match &a.lora {
            None => batch.dispatch(&key, &buffers, params, grid),
            Some(l) => batch.dispatch(&key, &buffers, &LoraParams { base: *params, terms: lora_terms(l) }, grid),
        };
    };
    let (up, up_vec, glu_params) = match *glu {
        GluUp::Stacked { up_row_offset } => {
            let p = GluParams { base: *params, up_row_offset, up_vec_offset: 0, up_vec_stride: 0, _pad: 0 };
            (GluUpKind::Stacked, a.x, p)
        }
        GluUp::Vector { buffer, offset_elems, row_stride_elems } => {
            let p = GluParams {
                base: *params,
                up_row_offset: 0,
                up_vec_offset: offset_elems,
                up_vec_stride: row_stride_elems,
                _pad: 0,
            };
            (GluUpKind::Vector, buffer, p)
        }
    };
    let key = MulMatVecKey::<true> { wtype: a.wtype, subgroups, multi_token, lanes, up, lora };
    let buffers = with_lora_buffers(&[a.weights, a.x, up_vec, a.y], a.lora.as_ref());
    match &a.lora {
        None => batch.dispatch(&key, &buffers, &glu_params, grid),
        Some(l) => batch.dispatch(&key, &buffers, &GluLoraParams { base: glu_params, terms: lora_terms(l) }, grid),
    }
}

/// `y[t][y_first_row + r] = gelu(W[r]·x[t]) · up` for the rows of `a` (any token count; the mat-vec kernel, so meant
/// for a few tokens). With `GluUp::Stacked`, `a.weights` holds the up rows too, `up_row_offset` rows on.
pub fn mul_mat_vec_geglu(batch: &mut Batch, a: &MulMatArgs, up: &GluUp) -> Result<()> {
    let op = "mul_mat_vec_geglu";
    let Some(row_bytes) = checked_args(op, a, batch)? else { return Ok(()) };
    let max_binding = batch.caps().max_storage_buffer_binding_bytes;
    match *up {
        GluUp::Stacked { up_row_offset } => {
            let rows = up_row_offset as u64 + a.m_rows as u64;
            check_binding(op, "stacked weights", a.weights, rows * row_bytes, max_binding)?;
        }
        GluUp::Vector { buffer, offset_elems, row_stride_elems } => {
            let last_col = a.y_first_row as u64 + a.m_rows as u64;
            let elems = offset_elems as u64 + (a.n_tokens as u64 - 1) * row_stride_elems as u64 + last_col;
            check_binding(op, "up vector", buffer, elems * 4, max_binding)?;
            if buffer.id() == a.y.id() {
                return Err(GpuError::Unsupported { op: op.into(), reason: "the up vector is also the output".into() });
            }
        }
    }
    let mut params = MulMatParams {
        m_rows: a.m_rows,
        k: a.k,
        n_tokens: a.n_tokens,
        row_bytes: row_bytes as u32,
        y_first_row: a.y_first_row,
        y_row_stride: a.y_row_stride,
        n_row_groups: 0,
        groups_per_split: 0,
    };
    record_vec(batch, a, &mut params, Some(up))
}

/// Every variant of the mat-vec kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    let mut all = variants_of::<MulMatVecKey<false>>()?;
    all.extend(variants_of::<MulMatVecKey<true>>()?);
    Ok(all)
}
