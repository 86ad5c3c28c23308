//! Per-layer embeddings (PLE, gemma4.md §3.1 step 2). The table `per_layer_token_embd` is `[vocab][L·P]` (4.7 GB
//! in BF16 for E2B) and is never a GPU buffer: per call, the rows of the tokens in use are read from the byte
//! source in their file encoding and uploaded into a small `[max_chunk][L·P]` scratch table, which `get_rows`
//! dequantizes with ids `0..n`. Then, for the whole chunk at once:
//!
//! ```text
//! e   = table_rows · √P                                   [n][L·P]
//! c   = rms_norm_rows_of_P(per_layer_model_proj · x / √H) ⊙ per_layer_proj_norm
//! ple = (c + e) / √2                                       [n][L·P] = [n·L][P], token-major
//! ```
//!
//! Layer `l` needs `ple[·][l]` as a contiguous `[n][P]` (ops bind whole buffers, so a strided slice cannot be
//! passed): a `get_rows` over the f32 `ple` seen as `[n·L][P]` rows, with the constant ids `t·L + l` (uploaded
//! once per layer at load).

use super::weights::Weights;
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::gpu::{Batch, Category, Context, GpuBuffer};
use crate::models::TextConfig;
use crate::ops::binary::{BinaryOp, StorageType, binary};
use crate::ops::get_rows::get_rows;
use crate::ops::rms_norm::rms_norm;
use crate::ops::unary::{UnaryOp, unary_inplace};
use crate::ops::weights::checked_row_bytes;
use crate::quant::QuantType;
use crate::source::ByteSource;

pub const TABLE_NAME: &str = crate::models::config::PLE_TABLE;

/// Where the PLE table lives in the file, and the GPU scratch its rows pass through.
#[derive(Debug)]
pub struct Ple {
    /// Absolute byte offset of the table in the model's source.
    offset_bytes: u64,
    ttype: QuantType,
    row_bytes: u64,
    vocab: u32,
    /// `L·P`, and `P`.
    row_elems: u32,
    ple_dim: u32,
    n_layers: u32,
    /// The gathered rows `[max_chunk][L·P]` in the file encoding.
    table: GpuBuffer,
    /// f32 `[max_chunk][L·P]` each: `e`, `c` and its norm `cn`; the result is left in `c`.
    e: GpuBuffer,
    c: GpuBuffer,
    cn: GpuBuffer,
}

impl Ple {
    pub fn new(ctx: &Context, gguf: &GgufFile, cfg: &TextConfig, max_chunk: u32) -> Result<Ple> {
        let info = gguf.require_tensor(TABLE_NAME)?;
        let (n_layers, p) = (cfg.n_layers() as u32, cfg.ple_dim);
        let row_elems = n_layers * p;
        let unsupported = |reason: String| Error::Unsupported { op: "per-layer embeddings".into(), reason };
        if info.dims() != [row_elems as u64, cfg.vocab as u64] {
            return Err(unsupported(format!(
                "{TABLE_NAME} has dims {:?}, expected [{row_elems}, {}]",
                info.dims(),
                cfg.vocab
            )));
        }
        let ttype = info.dtype();
        let row_bytes = checked_row_bytes("get_rows", ttype, row_elems)?;
        // get_rows reads groups of 8 f32 per invocation; P must split into them for the per-layer gather.
        if !p.is_multiple_of(8) {
            return Err(unsupported(format!("ple dim {p} is not a multiple of 8")));
        }
        let chunk_elems = max_chunk as u64 * row_elems as u64;
        let table_bytes = (max_chunk as u64 * row_bytes).next_multiple_of(4);
        let f32_buffer = |label: &str| ctx.alloc(label, Category::Scratch, chunk_elems * 4, None);
        Ok(Ple {
            offset_bytes: info.offset_bytes(),
            ttype,
            row_bytes,
            vocab: cfg.vocab,
            row_elems,
            ple_dim: p,
            n_layers,
            table: ctx.alloc("ple rows of the chunk", Category::Scratch, table_bytes, None)?,
            e: f32_buffer("ple e")?,
            c: f32_buffer("ple c")?,
            cn: f32_buffer("ple c normed")?,
        })
    }

    /// Gathers the table rows of `tokens` from `source`, the file the model was loaded from, on the host and queues
    /// their upload (it lands before the next submit).
    pub fn upload_rows(&self, ctx: &Context, source: &dyn ByteSource, tokens: &[u32]) -> Result<()> {
        let mut data = Vec::with_capacity((tokens.len() as u64 * self.row_bytes).next_multiple_of(4) as usize);
        for &t in tokens {
            if t >= self.vocab {
                return Err(Error::Unsupported {
                    op: "forward".into(),
                    reason: format!("token {t} ≥ vocab {}", self.vocab),
                });
            }
            data.extend_from_slice(&source.read_range(self.offset_bytes + t as u64 * self.row_bytes, self.row_bytes)?);
        }
        data.resize(data.len().next_multiple_of(4), 0);
        ctx.queue().write_buffer(self.table.raw(), 0, &data);
        Ok(())
    }

    /// Records `ple` for the chunk from the scaled embedding `x` ([n][H]); `iota` holds ids 0..n.
    pub fn record_inputs(
        &self,
        batch: &mut Batch,
        w: &Weights,
        cfg: &TextConfig,
        x: &GpuBuffer,
        iota: &GpuBuffer,
        n: u32,
    ) -> Result<()> {
        let (Some(proj), Some(norm)) = (&w.per_layer_model_proj, &w.per_layer_proj_norm) else {
            return Err(Error::Unsupported {
                op: "per-layer embeddings".into(),
                reason: "no per_layer_model_proj".into(),
            });
        };
        let elems = n as u64 * self.row_elems as u64;
        get_rows(batch, &self.table, self.ttype, self.row_elems, n, iota, n, &self.e)?;
        unary_inplace(batch, UnaryOp::Scale, (self.ple_dim as f32).sqrt(), &self.e, elems)?;
        proj.forward(batch, x, n, &self.c)?;
        unary_inplace(batch, UnaryOp::Scale, 1.0 / (cfg.hidden as f32).sqrt(), &self.c, elems)?;
        rms_norm(batch, &self.c, Some(norm), &self.cn, n * self.n_layers, self.ple_dim, cfg.rms_eps)?;
        binary(batch, BinaryOp::Add, StorageType::F32, &self.cn, &self.e, &self.c, elems)?;
        Ok(unary_inplace(batch, UnaryOp::Scale, std::f32::consts::FRAC_1_SQRT_2, &self.c, elems)?)
    }

    /// The PLE inputs `ple` of the last recorded chunk, f32 `[n][L·P]` (for traces).
    pub fn inputs(&self) -> &GpuBuffer {
        &self.c
    }
}
