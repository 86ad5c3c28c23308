//! The GPU weights of a Gemma text decoder: a plain tree of structs whose fields carry the GGUF tensor names
//! (candle style). Matrices stay in their file encoding and are split on rows only where a tensor exceeds one
//! storage binding; norm vectors and scalars are converted to f32 on the host. `per_layer_token_embd` is never
//! uploaded (see `ple.rs`), nor are the vision/audio/projector tensors of Ollama blobs.

use super::LoadProgress;
use crate::error::{Error, Result};
use crate::gguf::{GgufError, GgufFile, TensorInfo};
use crate::gpu::{Batch, Category, Context, GpuBuffer, GpuError, SplitTensor};
use crate::models::{Arch, LayerSpec, TextConfig};
use crate::ops::get_rows::get_rows_part;
use crate::ops::glu::{GluOperand, geglu_rows};
use crate::ops::mul_mat::{MulMatArgs, MulMatPath, VEC_MAX_TOKENS, mul_mat_with};
use crate::ops::mul_mat_vec::{GluUp, mul_mat_vec_geglu};
use crate::ops::weights::{LoraEpilogue, LoraTerm};
use crate::quant::QuantType;
use crate::source::ByteSource;
use std::cell::RefCell;

/// A matrix `[rows][cols]` (GGUF dims `[cols, rows]`) in its file encoding: y = x · Wᵀ.
#[derive(Debug)]
pub struct Linear {
    pub w: SplitTensor,
    pub wtype: QuantType,
    /// Output width (W's rows).
    pub rows: u32,
    /// Input width, the dot-product length `k`.
    pub cols: u32,
}

impl Linear {
    /// y[t][..rows] = W · x[t] for `n` tokens: one `mul_mat` per row part.
    pub fn forward(&self, batch: &mut Batch, x: &GpuBuffer, n: u32, y: &GpuBuffer) -> Result<()> {
        self.forward_into(batch, x, n, y, 0, self.rows, None, None)
    }

    /// `forward` plus a LoRA update in the mat-vec epilogue (a few tokens), and for a prompt `partials`: scratch
    /// to split k into where the product has few rows (`MulMatArgs::with_partials`).
    pub fn forward_lora(
        &self,
        batch: &mut Batch,
        x: &GpuBuffer,
        n: u32,
        y: &GpuBuffer,
        lora: Option<LoraEpilogue>,
        partials: Option<&GpuBuffer>,
    ) -> Result<()> {
        self.forward_into(batch, x, n, y, 0, self.rows, lora, partials)
    }

    /// `forward_lora` into columns `first_col..first_col + rows` of a y whose rows are `y_row_elems` long.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_into(
        &self,
        batch: &mut Batch,
        x: &GpuBuffer,
        n: u32,
        y: &GpuBuffer,
        first_col: u32,
        y_row_elems: u32,
        lora: Option<LoraEpilogue>,
        partials: Option<&GpuBuffer>,
    ) -> Result<()> {
        for (part, &(first, count)) in self.w.parts.iter().zip(&self.w.plan.parts) {
            let args = MulMatArgs::new(part, self.wtype, count as u32, self.cols, x, n, y)
                .part(first_col + first as u32, y_row_elems)
                .with_lora(lora.map(|l| l.from_row(first as u32)))
                .with_partials(partials);
            mul_mat_with(batch, &args, MulMatPath::Auto)?;
        }
        Ok(())
    }

    /// `y[t] = gelu(W·x[t] + lora) ⊙ up[t]` with `up[t][c] = up[offset_elems + t·row_stride_elems + c]`, fused into
    /// the mat-vec (for a few tokens).
    pub fn forward_geglu_vec(
        &self,
        batch: &mut Batch,
        x: &GpuBuffer,
        n: u32,
        y: &GpuBuffer,
        up: GluOperand,
        lora: Option<LoraEpilogue>,
    ) -> Result<()> {
        for (part, &(first, count)) in self.w.parts.iter().zip(&self.w.plan.parts) {
            let args = MulMatArgs::new(part, self.wtype, count as u32, self.cols, x, n, y)
                .part(first as u32, self.rows)
                .with_lora(lora.map(|l| l.from_row(first as u32)));
            let up = GluUp::Vector {
                buffer: up.buffer,
                offset_elems: up.offset_elems,
                row_stride_elems: up.row_stride_elems,
            };
            mul_mat_vec_geglu(batch, &args, &up)?;
        }
        Ok(())
    }

    /// dst[i] = W[ids[i]] in f32 (the embedding lookup): one `get_rows_part` per row part; ids are all < rows.
    pub fn get_rows(&self, batch: &mut Batch, ids: &GpuBuffer, n: u32, dst: &GpuBuffer) -> Result<()> {
        for (part, &(first, count)) in self.w.parts.iter().zip(&self.w.plan.parts) {
            get_rows_part(batch, part, self.wtype, self.cols, first as u32, count as u32, ids, n, dst)?;
        }
        Ok(())
    }
}

/// One decoder layer (GGUF `blk.N.*`). KV weights are loaded on owner layers only: shared layers carry unused
/// copies in converted files (gemma4.md §3.3).
#[derive(Debug)]
pub struct Layer {
    pub spec: LayerSpec,
    pub attn_norm: GpuBuffer,
    pub attn_q: Linear,
    pub attn_k: Option<Linear>,
    /// `None` on owner layers when K = V (26B/31B full layers): V is the raw K projection.
    pub attn_v: Option<Linear>,
    pub attn_output: Linear,
    pub attn_q_norm: GpuBuffer,
    pub attn_k_norm: Option<GpuBuffer>,
    pub post_attention_norm: GpuBuffer,
    /// `ffn_norm`: the pre-FFN norm.
    pub ffn_norm: GpuBuffer,
    pub ffn_gate_up: GateUp,
    pub ffn_down: Linear,
    pub post_ffw_norm: GpuBuffer,
    /// PLE gate `inp_gate` [P][H], up-projection `proj` [H][P] and `post_norm` [H] (Gemma 4 E-models).
    pub inp_gate: Option<Linear>,
    pub proj: Option<Linear>,
    pub post_norm: Option<GpuBuffer>,
    /// `layer_output_scale` [1] f32: multiplies the layer's output when present.
    pub layer_output_scale: Option<GpuBuffer>,
}

/// `ffn_gate` and `ffn_up` of one layer.
#[derive(Debug)]
pub enum GateUp {
    /// One `[gate; up]` matrix (2·ffn rows) in one binding: a decode step reads each gate row and its up row in one
    /// GeGLU mat-vec, and a prompt makes both products in one tiled pass.
    Stacked(Linear),
    /// Different types, or too large for one binding together.
    Separate { gate: Linear, up: Linear },
}

impl GateUp {
    /// `act[t] = gelu(ffn_gate·x[t]) ⊙ (ffn_up·x[t])` (`[n][ffn]`) for `n` tokens, with `lora`'s gate and up terms
    /// (a few tokens, [`GateUp::takes_lora`]); `gate_up` is `[n][2·ffn]` scratch for the products where they are
    /// not fused (prompts, separate matrices).
    pub fn forward_geglu(
        &self,
        batch: &mut Batch,
        x: &GpuBuffer,
        n: u32,
        gate_up: &GpuBuffer,
        act: &GpuBuffer,
        lora: Option<LoraEpilogue>,
    ) -> Result<()> {
        if let GateUp::Stacked(w) = self
            && n <= VEC_MAX_TOKENS
            && w.w.parts.len() == 1
        {
            let args = MulMatArgs::new(&w.w.parts[0], w.wtype, self.ffn_dim(), w.cols, x, n, act).with_lora(lora);
            return Ok(mul_mat_vec_geglu(batch, &args, &GluUp::Stacked { up_row_offset: self.ffn_dim() })?);
        }
        self.products(batch, x, n, gate_up, lora)?;
        self.geglu_of_products(batch, n, gate_up, act)
    }

    /// Whether the products can take a LoRA epilogue: not a stacked matrix split on rows, whose parts may hold
    /// both gate and up rows.
    pub fn takes_lora(&self) -> bool {
        !matches!(self, GateUp::Stacked(w) if w.w.parts.len() > 1)
    }

    /// The unfused first half: `gate_up[t] = [ffn_gate·x[t] | ffn_up·x[t]]`, `[n][2·ffn]`, with `lora`'s terms
    /// on the separate matrices (a stacked one takes them only in the fused GeGLU).
    pub fn products(
        &self,
        batch: &mut Batch,
        x: &GpuBuffer,
        n: u32,
        gate_up: &GpuBuffer,
        lora: Option<LoraEpilogue>,
    ) -> Result<()> {
        let ffn = self.ffn_dim();
        match self {
            GateUp::Stacked(w) if lora.is_none() => w.forward(batch, x, n, gate_up),
            GateUp::Stacked(_) => Err(GpuError::Unsupported {
                op: "ffn gate/up products".into(),
                reason: "a stacked matrix takes LoRA terms only in the fused GeGLU".into(),
            }
            .into()),
            GateUp::Separate { gate, up } => {
                gate.forward_into(batch, x, n, gate_up, 0, 2 * ffn, lora, None)?;
                let up_lora = lora.map(|l| LoraEpilogue { term: l.up, up: LoraTerm::default(), ..l });
                up.forward_into(batch, x, n, gate_up, ffn, 2 * ffn, up_lora, None)
            }
        }
    }

    /// The unfused second half: `act[t] = gelu(gate_up[t][..ffn]) ⊙ gate_up[t][ffn..]`.
    pub fn geglu_of_products(&self, batch: &mut Batch, n: u32, gate_up: &GpuBuffer, act: &GpuBuffer) -> Result<()> {
        let ffn = self.ffn_dim();
        let half = |offset_elems| GluOperand { buffer: gate_up, offset_elems, row_stride_elems: 2 * ffn };
        Ok(geglu_rows(batch, half(0), half(ffn), act, n, ffn)?)
    }

    pub fn ffn_dim(&self) -> u32 {
        match self {
            GateUp::Stacked(w) => w.rows / 2,
            GateUp::Separate { gate, .. } => gate.rows,
        }
    }

    pub fn size_bytes(&self) -> u64 {
        match self {
            GateUp::Stacked(w) => w.w.size_bytes(),
            GateUp::Separate { gate, up } => gate.w.size_bytes() + up.w.size_bytes(),
        }
    }
}

/// Every text weight on the GPU.
#[derive(Debug)]
pub struct Weights {
    /// `token_embd`: the input embedding and, without `output`, the tied LM head.
    pub token_embd: Linear,
    /// `output`: an untied LM head (some Gemma 3 files).
    pub output: Option<Linear>,
    /// `per_layer_model_proj` [L·P][H] and `per_layer_proj_norm` [P] (Gemma 4 E-models).
    pub per_layer_model_proj: Option<Linear>,
    pub per_layer_proj_norm: Option<GpuBuffer>,
    pub output_norm: GpuBuffer,
    /// `rope_freqs` [head_dim/2] of full layers: per-pair frequency divisors (Gemma 4 proportional RoPE).
    pub rope_freqs: Option<GpuBuffer>,
    pub layers: Vec<Layer>,
}

impl Weights {
    /// The LM head: `output` if the file has one, else the tied `token_embd`.
    pub fn lm_head(&self) -> &Linear {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    pub fn size_bytes(&self) -> u64 {
        let lin = |l: &Linear| l.w.size_bytes();
        let opt_lin = |l: &Option<Linear>| l.as_ref().map_or(0, lin);
        let buf = |b: &GpuBuffer| b.size_bytes();
        let opt_buf = |b: &Option<GpuBuffer>| b.as_ref().map_or(0, buf);
        let mut total = lin(&self.token_embd) + opt_lin(&self.output) + opt_lin(&self.per_layer_model_proj);
        total += opt_buf(&self.per_layer_proj_norm) + buf(&self.output_norm) + opt_buf(&self.rope_freqs);
        for l in &self.layers {
            total +=
                [&l.attn_q, &l.attn_output, &l.ffn_down].into_iter().map(lin).sum::<u64>() + l.ffn_gate_up.size_bytes();
            total += [&l.attn_k, &l.attn_v, &l.inp_gate, &l.proj].into_iter().map(opt_lin).sum::<u64>();
            total += [&l.attn_norm, &l.attn_q_norm, &l.post_attention_norm, &l.ffn_norm, &l.post_ffw_norm]
                .into_iter()
                .map(buf)
                .sum::<u64>();
            total += [&l.attn_k_norm, &l.post_norm, &l.layer_output_scale].into_iter().map(opt_buf).sum::<u64>();
        }
        total
    }
}

fn bad(name: &str, problem: String) -> Error {
    Error::BadModelFile(GgufError::BadTensor { tensor: name.to_owned(), problem })
}

/// Reads tensors from a GGUF and uploads them in `Category::Weights`, reporting progress after each.
pub(super) struct Loader<'a> {
    pub ctx: &'a Context,
    pub gguf: &'a GgufFile,
    source: &'a dyn ByteSource,
    /// Weight bytes live before the load, and the plan's weight bytes of this model.
    base_bytes: u64,
    total_bytes: u64,
    progress: RefCell<&'a mut dyn FnMut(LoadProgress)>,
}

impl<'a> Loader<'a> {
    pub fn new(
        ctx: &'a Context,
        gguf: &'a GgufFile,
        source: &'a dyn ByteSource,
        total_bytes: u64,
        progress: &'a mut dyn FnMut(LoadProgress),
    ) -> Self {
        let base_bytes = weight_bytes(ctx);
        Loader { ctx, gguf, source, base_bytes, total_bytes, progress: RefCell::new(progress) }
    }

    fn info(&self, name: &str) -> Result<&TensorInfo> {
        Ok(self.gguf.require_tensor(name)?)
    }

    fn uploaded<T>(&self, t: T) -> T {
        let uploaded_bytes = weight_bytes(self.ctx).saturating_sub(self.base_bytes);
        (self.progress.borrow_mut())(LoadProgress { uploaded_bytes, total_bytes: self.total_bytes });
        t
    }

    /// `name` as a `[rows][cols]` matrix, split on rows if it exceeds one binding.
    pub fn linear(&self, name: &str, rows: u32, cols: u32) -> Result<Linear> {
        let info = self.info(name)?;
        if info.dims() != [cols as u64, rows as u64] {
            return Err(bad(name, format!("has dims {:?}; the model config implies [{cols}, {rows}]", info.dims())));
        }
        let wtype = info.dtype();
        let row_bytes = wtype
            .bytes_for(cols as u64)
            .ok_or_else(|| bad(name, format!("has rows of {cols} {wtype} elements, not a whole number of blocks")))?;
        let mut read = |offset: u64, tile: &mut [u8]| Ok::<(), Error>(info.read_part(self.source, offset, tile)?);
        let w = SplitTensor::upload_from(self.ctx, name, Category::Weights, info.size_bytes(), row_bytes, &mut read)?;
        Ok(self.uploaded(Linear { w, wtype, rows, cols }))
    }

    /// `ffn_gate` and `ffn_up` (`[ffn][h]` each), stacked into one buffer when they share a type and fit one
    /// binding together.
    pub fn gate_up(&self, gate_name: &str, up_name: &str, ffn: u32, h: u32) -> Result<GateUp> {
        let (gate, up) = (self.info(gate_name)?, self.info(up_name)?);
        let max_binding_bytes = self.ctx.caps().max_storage_buffer_binding_bytes.min(self.ctx.caps().max_buffer_bytes);
        let stackable = gate.dtype() == up.dtype()
            && gate.dims() == [h as u64, ffn as u64]
            && up.dims() == gate.dims()
            && (gate.size_bytes() + up.size_bytes()).next_multiple_of(4) <= max_binding_bytes;
        if !stackable {
            return Ok(GateUp::Separate { gate: self.linear(gate_name, ffn, h)?, up: self.linear(up_name, ffn, h)? });
        }
        // gate's bytes then up's; a tile may straddle the two.
        let mut read = |offset: u64, tile: &mut [u8]| -> Result<()> {
            let in_gate = gate.size_bytes().saturating_sub(offset).min(tile.len() as u64) as usize;
            let (gate_part, up_part) = tile.split_at_mut(in_gate);
            if !gate_part.is_empty() {
                gate.read_part(self.source, offset, gate_part)?;
            }
            if !up_part.is_empty() {
                up.read_part(self.source, (offset + in_gate as u64) - gate.size_bytes(), up_part)?;
            }
            Ok(())
        };
        let wtype = gate.dtype();
        let row_bytes = gate.size_bytes() / ffn as u64;
        let label = format!("{gate_name}+{up_name}");
        let len_bytes = gate.size_bytes() + up.size_bytes();
        let w = SplitTensor::upload_from(self.ctx, &label, Category::Weights, len_bytes, row_bytes, &mut read)?;
        Ok(self.uploaded(GateUp::Stacked(Linear { w, wtype, rows: 2 * ffn, cols: h })))
    }

    pub fn optional_linear(&self, name: &str, rows: u32, cols: u32) -> Result<Option<Linear>> {
        match self.gguf.tensor(name) {
            Some(_) => self.linear(name, rows, cols).map(Some),
            None => Ok(None),
        }
    }

    /// A 1-D tensor of `len` values (F32, F16 or BF16 in the file) uploaded as f32.
    pub fn vector(&self, name: &str, len: u32) -> Result<GpuBuffer> {
        let info = self.info(name)?;
        if info.elems() != len as u64 {
            return Err(bad(name, format!("has {} elements; the model config implies {len}", info.elems())));
        }
        let bytes = info.bytes(self.source)?;
        let values = info.dtype().dense_to_f32(&bytes).ok_or_else(|| {
            bad(name, format!("has type {}; norm and scale vectors must be F32, F16 or BF16", info.dtype()))
        })?;
        let buffer = self.ctx.upload(name, Category::Weights, bytemuck::cast_slice(&values))?;
        Ok(self.uploaded(buffer))
    }

    pub fn optional_vector(&self, name: &str, len: u32) -> Result<Option<GpuBuffer>> {
        match self.gguf.tensor(name) {
            Some(_) => self.vector(name, len).map(Some),
            None => Ok(None),
        }
    }

    /// Every text weight the config implies, checked against it.
    pub fn weights(&self, cfg: &TextConfig) -> Result<Weights> {
        let (h, nh, p) = (cfg.hidden, cfg.n_head, cfg.ple_dim);
        let n_layers = cfg.n_layers() as u32;
        let token_embd = self.linear("token_embd.weight", cfg.vocab, h)?;
        let output = self.optional_linear("output.weight", cfg.vocab, h)?;
        let ple = p > 0;
        let per_layer_model_proj =
            if ple { Some(self.linear("per_layer_model_proj.weight", n_layers * p, h)?) } else { None };
        let per_layer_proj_norm = if ple { Some(self.vector("per_layer_proj_norm.weight", p)?) } else { None };
        let output_norm = self.vector("output_norm.weight", h)?;
        let full_head_dim = cfg.layers.iter().find(|l| !l.sliding).map(|l| l.head_dim);
        let rope_freqs = match (cfg.arch, full_head_dim) {
            (Arch::Gemma4, Some(hd)) => self.optional_vector("rope_freqs.weight", hd / 2)?,
            _ => None,
        };
        let mut layers = Vec::with_capacity(cfg.n_layers());
        for spec in &cfg.layers {
            let name = |t: &str| format!("blk.{}.{t}.weight", spec.index);
            let (hd, nkv, ffn) = (spec.head_dim, spec.n_kv_head, spec.ffn_dim);
            let owns = spec.owns_kv();
            let layer = Layer {
                attn_norm: self.vector(&name("attn_norm"), h)?,
                attn_q: self.linear(&name("attn_q"), nh * hd, h)?,
                attn_k: if owns { Some(self.linear(&name("attn_k"), nkv * hd, h)?) } else { None },
                attn_v: if owns { self.optional_linear(&name("attn_v"), nkv * hd, h)? } else { None },
                attn_output: self.linear(&name("attn_output"), h, nh * hd)?,
                attn_q_norm: self.vector(&name("attn_q_norm"), hd)?,
                attn_k_norm: if owns { Some(self.vector(&name("attn_k_norm"), hd)?) } else { None },
                post_attention_norm: self.vector(&name("post_attention_norm"), h)?,
                ffn_norm: self.vector(&name("ffn_norm"), h)?,
                ffn_gate_up: self.gate_up(&name("ffn_gate"), &name("ffn_up"), ffn, h)?,
                ffn_down: self.linear(&name("ffn_down"), h, ffn)?,
                post_ffw_norm: self.vector(&name("post_ffw_norm"), h)?,
                inp_gate: if ple { Some(self.linear(&name("inp_gate"), p, h)?) } else { None },
                proj: if ple { Some(self.linear(&name("proj"), h, p)?) } else { None },
                post_norm: if ple { Some(self.vector(&name("post_norm"), h)?) } else { None },
                layer_output_scale: self.optional_vector(&name("layer_output_scale"), 1)?,
                spec: spec.clone(),
            };
            layers.push(layer);
        }
        Ok(Weights { token_embd, output, per_layer_model_proj, per_layer_proj_norm, output_norm, rope_freqs, layers })
    }
}

fn weight_bytes(ctx: &Context) -> u64 {
    ctx.memory().by_category.iter().find(|(c, _, _)| *c == Category::Weights).map_or(0, |c| c.1)
}
