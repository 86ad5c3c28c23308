//! The gradients of `attention` for training (`shaders/attention_back.wgsl`): a chunk that starts at position 0 and
//! attends to its own keys (what a training sequence is), causal and sliding-window masks, grouped-query heads,
//! the logit softcap. Per kv head, as matrix products on workgroup tiles through two `[n_tokens·n_head][n_tokens]`
//! scratch tables, in five dispatches ([`BackPass`]): the scores and dP = dO·Vᵀ, then per row the probabilities and
//! the score gradients, then dQ, then dK and dV over chunks of the query rows and their sum. The tables make the
//! memory quadratic in the sequence: 8·n²·n_head bytes for the two, 16 MiB at 512 tokens and 8 heads; the chunks'
//! partial sums take at most [`MAX_DKV_CHUNKS`] times dK and dV.

use super::WG_SIZE;
use super::args::{check_buffer, check_outputs, checked_u32};
use crate::gpu::kernels::{
    Access, BOOLS, KernelKey, Requires, VariantSource, defines_with, key_variants, reduction_name, variants_of,
};
use crate::gpu::{Batch, GpuBuffer, GpuError, Grid, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttentionBackKey {
    pub pass: BackPass,
    /// Only the row pass reduces across lanes.
    pub subgroups: bool,
}

/// The dispatches of a backward, in order (`attention_back.wgsl`'s defines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackPass {
    /// `scale·Q·Kᵀ` and `dO·Vᵀ` per kv head, on 64 × 64 tiles of (query rows, keys).
    Scores,
    /// Per table row: the probabilities and the score gradients.
    Rows,
    /// `dQ = scale·dZ·K`, on tiles of (query rows, head elements).
    Dq,
    /// `dZᵀ·Q` and `Pᵀ·dO` over one chunk of query rows, on tiles of (keys, head elements).
    Dkv,
    /// `dK = scale·Σ` and `dV = Σ` over the chunks.
    DkvSum,
}

impl BackPass {
    const ALL: [BackPass; 5] = [BackPass::Scores, BackPass::Rows, BackPass::Dq, BackPass::Dkv, BackPass::DkvSum];

    fn define(self) -> &'static str {
        match self {
            BackPass::Scores => "SCORES",
            BackPass::Rows => "ROWS",
            BackPass::Dq => "DQ",
            BackPass::Dkv => "DKV",
            BackPass::DkvSum => "DKV_SUM",
        }
    }
}

/// The tiled passes' output tile side (`TILE` in the shader).
const TILE: u64 = 64;
/// Elements of the inner sum per staged step (`STEP`): a chunk's rows are a multiple of it.
const STEP: u64 = 16;
/// dK and dV's sums over the query rows are split into at most this many chunks. 8 gives E2B's 512-token chunk
/// 144 to 288 workgroups a layer (from 32 to 64 unsplit) for 8 partial copies of dK and dV.
pub const MAX_DKV_CHUNKS: u64 = 8;

/// Matches `Params` in `attention_back.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttentionBackParams {
    n_tokens: u32,
    n_head: u32,
    n_kv_head: u32,
    head_dim: u32,
    window: u32,
    scale: f32,
    softcap: f32,
    chunk_rows: u32,
}
const _: () = assert!(size_of::<AttentionBackParams>() == 32);

impl KernelKey for AttentionBackKey {
    const FILE: &'static str = "attention_back.wgsl";
    fn bindings(&self) -> &'static [Access] {
        use Access::{Read, ReadWrite, Uniform};
        match self.pass {
            BackPass::Scores => &[Read, Read, Read, Read, ReadWrite, ReadWrite, Uniform],
            BackPass::Rows => &[ReadWrite, ReadWrite, Uniform],
            BackPass::Dq => &[Read, Read, ReadWrite, Uniform],
            BackPass::Dkv => &[Read, Read, Read, Read, ReadWrite, Uniform],
            BackPass::DkvSum => &[Read, ReadWrite, ReadWrite, Uniform],
        }
    }

    fn name(&self) -> String {
        match self.pass {
            BackPass::Rows => format!("attention_back_rows_f32_{}_wg{WG_SIZE}", reduction_name(self.subgroups)),
            BackPass::DkvSum => format!("attention_back_dkv_sum_f32_wg{WG_SIZE}"),
            pass => format!("attention_back_{}_f32_t{TILE}x{TILE}", pass.define().to_lowercase()),
        }
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        let passes = BackPass::ALL.map(|p| (p.define(), p == self.pass));
        defines_with(WG_SIZE, &[passes.as_slice(), &[("SUBGROUPS", self.subgroups)]].concat())
    }

    fn requires(&self) -> Requires {
        Requires { f16: false, subgroups: self.subgroups, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        let all: Vec<Self> = key_variants!(AttentionBackKey { pass in BackPass::ALL, subgroups in BOOLS });
        all.into_iter().filter(|k| k.pass == BackPass::Rows || !k.subgroups).collect()
    }
}

/// A training chunk's attention: `n_tokens` queries at positions `0..n_tokens` over the chunk's own keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionBackShape {
    pub n_tokens: u32,
    pub n_head: u32,
    /// Divides `n_head`; query head `j` reads kv head `j / (n_head / n_kv_head)`.
    pub n_kv_head: u32,
    pub head_dim: u32,
    /// A query at `t` sees key `j` only if `t − j < window`; 0 means none.
    pub window: u32,
    pub scale: f32,
    /// `c·tanh(s/c)` on the scores; 0 = off.
    pub softcap: f32,
}

impl AttentionBackShape {
    /// f32 elements of each scratch table.
    pub fn table_elems(&self) -> u64 {
        self.n_tokens as u64 * self.n_head as u64 * self.n_tokens as u64
    }

    /// f32 elements of dK and dV's partial sums over the chunks of query rows.
    pub fn part_elems(&self) -> u64 {
        2 * self.dkv_chunks().1 * self.kv_elems()
    }

    fn kv_elems(&self) -> u64 {
        self.n_tokens as u64 * self.n_kv_head as u64 * self.head_dim as u64
    }

    /// (query rows per chunk, chunks) of a kv head's `n_tokens · n_head / n_kv_head` rows.
    fn dkv_chunks(&self) -> (u64, u64) {
        let rows = self.n_tokens as u64 * (self.n_head / self.n_kv_head.max(1)) as u64;
        let chunk_rows = rows.div_ceil(MAX_DKV_CHUNKS).next_multiple_of(STEP).max(STEP);
        (chunk_rows, rows.div_ceil(chunk_rows))
    }
}

/// The tensors of the backward: the forward's inputs and the output's gradient in, the inputs' gradients out.
/// q, d_out, dq are `[n_tokens][n_head][head_dim]`; k, v, dk, dv `[n_tokens][n_kv_head][head_dim]`; probs and
/// dscores scratch tables of `table_elems` f32, parts scratch of `part_elems` f32.
pub struct AttentionGrads<'a> {
    pub q: &'a GpuBuffer,
    pub k: &'a GpuBuffer,
    pub v: &'a GpuBuffer,
    pub d_out: &'a GpuBuffer,
    pub dq: &'a GpuBuffer,
    pub dk: &'a GpuBuffer,
    pub dv: &'a GpuBuffer,
    pub probs: &'a GpuBuffer,
    pub dscores: &'a GpuBuffer,
    pub parts: &'a GpuBuffer,
}

pub fn attention_back(batch: &mut Batch, s: &AttentionBackShape, b: &AttentionGrads) -> Result<()> {
    let op = "attention_back";
    let bad = |reason: String| Err(GpuError::Unsupported { op: op.into(), reason });
    if s.n_head == 0 || s.n_kv_head == 0 || !s.n_head.is_multiple_of(s.n_kv_head) || s.head_dim == 0 {
        return bad(format!("{} heads over {} kv heads of dim {}", s.n_head, s.n_kv_head, s.head_dim));
    }
    if !(s.scale.is_finite() && s.softcap.is_finite() && s.softcap >= 0.0) {
        return bad(format!("scale {} and softcap {} must be finite, softcap ≥ 0", s.scale, s.softcap));
    }
    let q_elems = s.n_tokens as u64 * s.n_head as u64 * s.head_dim as u64;
    let kv_elems = s.kv_elems();
    checked_u32(op, "q elements", q_elems)?;
    checked_u32(op, "scratch elements", s.table_elems())?;
    checked_u32(op, "partial elements", s.part_elems())?;
    let sizes = [
        ("q", b.q, q_elems),
        ("d_out", b.d_out, q_elems),
        ("dq", b.dq, q_elems),
        ("k", b.k, kv_elems),
        ("v", b.v, kv_elems),
        ("dk", b.dk, kv_elems),
        ("dv", b.dv, kv_elems),
        ("probs", b.probs, s.table_elems()),
        ("dscores", b.dscores, s.table_elems()),
        ("parts", b.parts, s.part_elems()),
    ];
    for (what, buffer, elems) in sizes {
        check_buffer(op, what, buffer, elems * 4)?;
    }
    check_outputs(op, &[b.q, b.k, b.v, b.d_out], &[b.dq, b.dk, b.dv, b.probs, b.dscores, b.parts])?;
    if s.n_tokens == 0 {
        return Ok(());
    }
    let (chunk_rows, chunks) = s.dkv_chunks();
    let params = AttentionBackParams {
        n_tokens: s.n_tokens,
        n_head: s.n_head,
        n_kv_head: s.n_kv_head,
        head_dim: s.head_dim,
        window: if s.window == u32::MAX { 0 } else { s.window },
        scale: s.scale,
        softcap: s.softcap,
        chunk_rows: chunk_rows as u32,
    };
    let (subgroups, max_dim) = (batch.caps().subgroups, batch.max_workgroups_per_dimension());
    let tiles = |elems: u64| elems.div_ceil(TILE);
    let (n, kv_heads, group) = (s.n_tokens as u64, s.n_kv_head as u64, (s.n_head / s.n_kv_head) as u64);
    let (row_tiles, key_tiles, dim_tiles) = (tiles(n * group), tiles(n), tiles(s.head_dim as u64));
    let passes: [(BackPass, Vec<&GpuBuffer>, u64); 5] = [
        (BackPass::Scores, vec![b.q, b.k, b.v, b.d_out, b.probs, b.dscores], kv_heads * row_tiles * key_tiles),
        (BackPass::Rows, vec![b.probs, b.dscores], n * s.n_head as u64),
        (BackPass::Dq, vec![b.k, b.dscores, b.dq], kv_heads * row_tiles * dim_tiles),
        (BackPass::Dkv, vec![b.q, b.d_out, b.probs, b.dscores, b.parts], kv_heads * key_tiles * chunks * dim_tiles),
        (BackPass::DkvSum, vec![b.parts, b.dk, b.dv], kv_elems.div_ceil(WG_SIZE as u64)),
    ];
    for (pass, buffers, workgroups) in passes {
        let key = AttentionBackKey { pass, subgroups: subgroups && pass == BackPass::Rows };
        batch.dispatch(&key, &buffers, &params, Grid::for_items(workgroups, 1, max_dim))?;
    }
    Ok(())
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<AttentionBackKey>()
}
