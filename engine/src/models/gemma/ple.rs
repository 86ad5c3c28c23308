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

/// Where the PLE table lives in the file, and the GPU scratch its rows pass through for inference's chunks.
#[derive(Debug)]
pub struct Ple {
    /// Absolute byte offset of the table in the model's source.
    offset_bytes: u64,
    ttype: QuantType,
    vocab: u32,
    layout: PleLayout,
    ple_dim: u32,
    n_layers: u32,
    chunk: PleChunk,
    /// f32 `[max_chunk][L·P]` each: inference's `e` and `cn` ([`Ple::record_inputs`]).
    temps: [GpuBuffer; 2],
}

/// A table row: `L·P` elements in `row_bytes` of the file's encoding.
#[derive(Debug, Clone, Copy)]
pub struct PleLayout {
    pub row_elems: u32,
    pub row_bytes: u64,
}

/// What one chunk of up to `n` tokens keeps: the gathered rows `[n][L·P]` in the file encoding, and the result
/// `c`, f32 `[n][L·P]`. Inference has one for `max_chunk` tokens; a trainer has its own for its sequence.
#[derive(Debug)]
pub struct PleChunk<B = GpuBuffer> {
    table: B,
    c: B,
}

impl<B> PleChunk<B> {
    /// The buffers for `n` tokens from `alloc(label, bytes)` (a device, or a plan's tally).
    pub fn new(n: u32, layout: PleLayout, alloc: impl Fn(&str, u64) -> Result<B>) -> Result<PleChunk<B>> {
        Ok(PleChunk {
            table: alloc("ple rows of the chunk", (n as u64 * layout.row_bytes).next_multiple_of(4))?,
            c: alloc("ple c", layout.f32_bytes(n))?,
        })
    }
}

impl PleChunk {
    /// The PLE inputs `ple` last recorded into this chunk, f32 `[n][L·P]`.
    pub fn inputs(&self) -> &GpuBuffer {
        &self.c
    }
}

impl PleLayout {
    /// Bytes of `n` rows in f32: the size of `c` and of each temporary [`Ple::record_inputs`] takes.
    pub fn f32_bytes(&self, n: u32) -> u64 {
        n as u64 * self.row_elems as u64 * 4
    }

    /// The table's row as the file stores it, checked against the config.
    pub fn of(gguf: &GgufFile, cfg: &TextConfig) -> Result<PleLayout> {
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
        let row_bytes = checked_row_bytes("get_rows", info.dtype(), row_elems)?;
        // get_rows reads groups of 8 f32 per invocation; P must split into them for the per-layer gather.
        if !p.is_multiple_of(8) {
            return Err(unsupported(format!("ple dim {p} is not a multiple of 8")));
        }
        Ok(PleLayout { row_elems, row_bytes })
    }
}

impl Ple {
    pub fn new(ctx: &Context, gguf: &GgufFile, cfg: &TextConfig, max_chunk: u32) -> Result<Ple> {
        let layout = PleLayout::of(gguf, cfg)?;
        let info = gguf.require_tensor(TABLE_NAME)?;
        let temp = |label: &str| ctx.alloc(label, Category::Scratch, layout.f32_bytes(max_chunk), None);
        Ok(Ple {
            offset_bytes: info.offset_bytes(),
            ttype: info.dtype(),
            vocab: cfg.vocab,
            layout,
            ple_dim: cfg.ple_dim,
            n_layers: cfg.n_layers() as u32,
            chunk: PleChunk::new(max_chunk, layout, |label, bytes| {
                Ok(ctx.alloc(label, Category::Scratch, bytes, None)?)
            })?,
            temps: [temp("ple e")?, temp("ple c normed")?],
        })
    }

    pub fn layout(&self) -> PleLayout {
        self.layout
    }

    /// Inference's chunk.
    pub fn chunk(&self) -> &PleChunk {
        &self.chunk
    }

    /// Inference's temporaries for [`record_inputs`](Self::record_inputs).
    pub fn temps(&self) -> [&GpuBuffer; 2] {
        [&self.temps[0], &self.temps[1]]
    }

    /// Gathers the table rows of `tokens` from `source`, the file the model was loaded from, on the host and queues
    /// their upload into `chunk` (it lands before the next submit).
    pub fn upload_rows(&self, ctx: &Context, source: &dyn ByteSource, tokens: &[u32], chunk: &PleChunk) -> Result<()> {
        let row_bytes = self.layout.row_bytes;
        let mut data = Vec::with_capacity((tokens.len() as u64 * row_bytes).next_multiple_of(4) as usize);
        for &t in tokens {
            if t >= self.vocab {
                return Err(Error::Unsupported {
                    op: "forward".into(),
                    reason: format!("token {t} ≥ vocab {}", self.vocab),
                });
            }
            data.extend_from_slice(&source.read_range(self.offset_bytes + t as u64 * row_bytes, row_bytes)?);
        }
        data.resize(data.len().next_multiple_of(4), 0);
        if data.len() as u64 > chunk.table.size_bytes() {
            return Err(Error::Unsupported {
                op: "per-layer embeddings".into(),
                reason: format!("{} tokens do not fit a chunk of {} bytes", tokens.len(), chunk.table.size_bytes()),
            });
        }
        ctx.queue().write_buffer(chunk.table.raw(), 0, &data);
        Ok(())
    }

    /// Records `ple` into `chunk` (whose rows [`upload_rows`](Self::upload_rows) put there) from the scaled
    /// embedding `x` ([n][H]), through `temps` (`e` and `cn`, each at least [`PleLayout::f32_bytes`] of n; their
    /// contents do not outlive the call); `iota` holds ids 0..n.
    #[allow(clippy::too_many_arguments)]
    pub fn record_inputs(
        &self,
        batch: &mut Batch,
        w: &Weights,
        cfg: &TextConfig,
        x: &GpuBuffer,
        iota: &GpuBuffer,
        n: u32,
        chunk: &PleChunk,
        temps: [&GpuBuffer; 2],
    ) -> Result<()> {
        let (Some(proj), Some(norm)) = (&w.per_layer_model_proj, &w.per_layer_proj_norm) else {
            return Err(Error::Unsupported {
                op: "per-layer embeddings".into(),
                reason: "no per_layer_model_proj".into(),
            });
        };
        let (PleChunk { table, c }, [e, cn]) = (chunk, temps);
        let row_elems = self.layout.row_elems;
        let elems = n as u64 * row_elems as u64;
        get_rows(batch, table, self.ttype, row_elems, n, iota, n, e)?;
        unary_inplace(batch, UnaryOp::Scale, (self.ple_dim as f32).sqrt(), e, elems)?;
        proj.forward(batch, x, n, c)?;
        unary_inplace(batch, UnaryOp::Scale, 1.0 / (cfg.hidden as f32).sqrt(), c, elems)?;
        rms_norm(batch, c, Some(norm), cn, n * self.n_layers, self.ple_dim, cfg.rms_eps)?;
        binary(batch, BinaryOp::Add, StorageType::F32, cn, e, c, elems)?;
        Ok(unary_inplace(batch, UnaryOp::Scale, std::f32::consts::FRAC_1_SQRT_2, c, elems)?)
    }
}
