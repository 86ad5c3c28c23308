//! Loading a Gemma GGUF into the reference: every text tensor dequantized to f32 by candle's own dequantization
//! (`QStorage`/`QTensor::dequantize`, bit-identical to ggml's and gguf-py's), shapes checked against the
//! [`TextConfig`] while loading so a wrong config fails here and not as a numeric mismatch later.

use super::{Layer, Reference};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Result, Tensor};
use ferrogem::gguf::{GgufFile, TensorInfo};
use ferrogem::models::TextConfig;
use ferrogem::quant::QuantType;
use ferrogem::source::ByteSource;
use std::borrow::Cow;
use std::ops::Range;

/// Rows of the LM-head table dequantized at once: 16384 × 2560 f32 is 160 MiB at E4B's width, and vocab-sized
/// f32 copies of the table (1–2.7 GiB for real models) are never made.
pub const LM_HEAD_CHUNK_ROWS: usize = 16384;

pub(super) fn err(msg: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(msg.to_string())
}

/// candle's name for a GGUF tensor type; `None` where candle cannot dequantize it.
fn ggml_dtype(t: QuantType) -> Option<GgmlDType> {
    use QuantType::*;
    Some(match t {
        F32 => GgmlDType::F32,
        F16 => GgmlDType::F16,
        BF16 => GgmlDType::BF16,
        Q4_0 => GgmlDType::Q4_0,
        Q4_1 => GgmlDType::Q4_1,
        Q5_0 => GgmlDType::Q5_0,
        Q5_1 => GgmlDType::Q5_1,
        Q8_0 => GgmlDType::Q8_0,
        Q8_1 => GgmlDType::Q8_1,
        Q2K => GgmlDType::Q2K,
        Q3K => GgmlDType::Q3K,
        Q4K => GgmlDType::Q4K,
        Q5K => GgmlDType::Q5K,
        Q6K => GgmlDType::Q6K,
        Q8K => GgmlDType::Q8K,
        _ => return None,
    })
}

/// Bytes kept in u64 words: candle casts block bytes to `&[BlockQ4K]` etc. and asserts the pointer's alignment,
/// which a `Vec<u8>` (a copy from a non-mapped source) does not promise.
struct AlignedBytes {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBytes {
    fn copy_of(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        AlignedBytes { words, len: bytes.len() }
    }

    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.len]
    }
}

/// `bytes` of type `dtype` dequantized to an f32 tensor of `shape` (row-major, last axis = ggml ne0).
fn dequantize(bytes: &[u8], dtype: QuantType, shape: &[usize]) -> Result<Tensor> {
    let gd = ggml_dtype(dtype).ok_or_else(|| err(format!("candle cannot dequantize {}", dtype.name())))?;
    let elems: usize = shape.iter().product();
    let want = dtype
        .bytes_for(elems as u64)
        .ok_or_else(|| err(format!("{elems} values do not fill {} blocks", dtype.name())))?;
    if bytes.len() as u64 != want {
        return Err(err(format!("{} bytes for {elems} {} values; expected {want}", bytes.len(), dtype.name())));
    }
    let copy;
    let bytes = if (bytes.as_ptr() as usize).is_multiple_of(8) {
        bytes
    } else {
        copy = AlignedBytes::copy_of(bytes);
        copy.bytes()
    };
    let storage = QStorage::from_data(Cow::Borrowed(bytes), &Device::Cpu, gd)?;
    QTensor::new(storage, shape)?.dequantize(&Device::Cpu)
}

/// A tensor's ggml dims as a row-major shape (reversed: ne0 last).
fn shape_of(info: &TensorInfo) -> Vec<usize> {
    info.dims().iter().rev().map(|&d| d as usize).collect()
}

/// A vocabulary-sized table (`token_embd`, `per_layer_token_embd`, an untied `output`) kept in its file encoding:
/// in f32, E2B's PLE table alone would be 9.4 GB. Rows are dequantized when looked up, the LM head in chunks.
pub struct QuantTable {
    pub dtype: QuantType,
    pub n_rows: usize,
    pub n_cols: usize,
    row_bytes: usize,
    data: AlignedBytes,
}

impl QuantTable {
    fn load(info: &TensorInfo, source: &dyn ByteSource) -> Result<Self> {
        let &[n_cols, n_rows] = info.dims() else {
            return Err(err(format!("`{}` has dims {:?}; a table is 2-D", info.name(), info.dims())));
        };
        let (n_rows, n_cols) = (n_rows as usize, n_cols as usize);
        let row_bytes =
            info.dtype().bytes_for(n_cols as u64).ok_or_else(|| err(format!("`{}`: bad row", info.name())))?;
        let bytes = info.bytes(source).map_err(candle_core::Error::wrap)?;
        let data = AlignedBytes::copy_of(&bytes);
        if data.len != n_rows * row_bytes as usize {
            return Err(err(format!("`{}`: {} bytes for {n_rows} rows of {row_bytes}", info.name(), data.len)));
        }
        Ok(QuantTable { dtype: info.dtype(), n_rows, n_cols, row_bytes: row_bytes as usize, data })
    }

    /// Rows `ids` dequantized: [ids.len(), n_cols].
    pub fn rows(&self, ids: &[u32]) -> Result<Tensor> {
        let mut gathered = Vec::with_capacity(ids.len() * self.row_bytes);
        for &id in ids {
            let r = id as usize;
            if r >= self.n_rows {
                return Err(err(format!("token {id} is outside the table's {} rows", self.n_rows)));
            }
            gathered.extend_from_slice(&self.data.bytes()[r * self.row_bytes..(r + 1) * self.row_bytes]);
        }
        dequantize(AlignedBytes::copy_of(&gathered).bytes(), self.dtype, &[ids.len(), self.n_cols])
    }

    /// Rows `range` dequantized: [range.len(), n_cols].
    pub fn row_range(&self, range: Range<usize>) -> Result<Tensor> {
        let bytes = &self.data.bytes()[range.start * self.row_bytes..range.end * self.row_bytes];
        dequantize(bytes, self.dtype, &[range.len(), self.n_cols])
    }

    /// `x · tableᵀ` for x [n, n_cols]: [n, n_rows], dequantizing `chunk_rows` rows at a time.
    pub fn matmul_t(&self, x: &Tensor, chunk_rows: usize) -> Result<Tensor> {
        let mut parts = Vec::with_capacity(self.n_rows.div_ceil(chunk_rows));
        for start in (0..self.n_rows).step_by(chunk_rows.max(1)) {
            let w = self.row_range(start..start.saturating_add(chunk_rows).min(self.n_rows))?;
            parts.push(x.matmul(&w.t()?)?);
        }
        Tensor::cat(&parts, 1)
    }
}

/// Fetches tensors by name, dequantized, with their shapes checked.
struct Loader<'a> {
    gguf: &'a GgufFile,
    source: &'a dyn ByteSource,
}

impl Loader<'_> {
    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.gguf.tensor(name)
    }

    /// `name` as f32 with row-major shape `shape`, or `None` when the file has no such tensor.
    fn optional(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        let Some(info) = self.info(name) else { return Ok(None) };
        if shape_of(info) != shape {
            return Err(err(format!("`{name}` has shape {:?}; the config implies {shape:?}", shape_of(info))));
        }
        let bytes = info.bytes(self.source).map_err(candle_core::Error::wrap)?;
        dequantize(&bytes, info.dtype(), shape).map(Some)
    }

    fn required(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.optional(name, shape)?.ok_or_else(|| err(format!("the file has no tensor `{name}`")))
    }

    fn table(&self, name: &str, n_cols: usize) -> Result<Option<QuantTable>> {
        let Some(info) = self.info(name) else { return Ok(None) };
        let table = QuantTable::load(info, self.source)?;
        if table.n_cols != n_cols {
            return Err(err(format!("`{name}` rows hold {} values; the config implies {n_cols}", table.n_cols)));
        }
        Ok(Some(table))
    }
}

impl Reference {
    /// Every text tensor of `gguf` (read from `source`) dequantized to f32; vision/audio/projector tensors
    /// (`ferrogem::models::skipped_by_text_model`) are never touched.
    pub fn from_gguf(gguf: &GgufFile, source: &dyn ByteSource) -> Result<Reference> {
        let config = TextConfig::from_gguf(gguf).map_err(candle_core::Error::wrap)?;
        let ld = Loader { gguf, source };
        let (h, nh) = (config.hidden as usize, config.n_head as usize);
        let (n_layers, p) = (config.n_layers(), config.ple_dim as usize);
        let prefix = config.arch.gguf_name();
        // RoPE's frequency exponent uses n_dims; every known file sets it to the layer's head dim (§3.4).
        for (key, sliding) in [("rope.dimension_count", false), ("rope.dimension_count_swa", true)] {
            if let Ok(n_dims) = gguf.get_u32(&format!("{prefix}.{key}"))
                && let Some(l) = config.layers.iter().find(|l| l.sliding == sliding && l.head_dim != n_dims)
            {
                return Err(err(format!(
                    "{prefix}.{key} = {n_dims} but layer {} has head dim {}",
                    l.index, l.head_dim
                )));
            }
        }
        let token_embd = ld.table("token_embd.weight", h)?.ok_or_else(|| err("the file has no `token_embd.weight`"))?;
        let output = ld.table("output.weight", h)?;
        let (per_layer_token_embd, per_layer_model_proj, per_layer_proj_norm) = if p > 0 {
            let table = ld.table("per_layer_token_embd.weight", n_layers * p)?;
            (
                Some(table.ok_or_else(|| err("PLE model without `per_layer_token_embd.weight`"))?),
                Some(ld.required("per_layer_model_proj.weight", &[n_layers * p, h])?),
                Some(ld.required("per_layer_proj_norm.weight", &[p])?),
            )
        } else {
            (None, None, None)
        };
        let output_norm = ld.required("output_norm.weight", &[h])?;
        let rope_freqs = match ld.info("rope_freqs.weight") {
            Some(info) => Some(ld.required("rope_freqs.weight", &shape_of(info))?.to_vec1::<f32>()?),
            None => None,
        };
        if let Some(freqs) = &rope_freqs
            && let Some(l) = config.layers.iter().find(|l| !l.sliding && freqs.len() != l.head_dim as usize / 2)
        {
            return Err(err(format!(
                "rope_freqs has {} entries; full layer {} has head dim {}",
                freqs.len(),
                l.index,
                l.head_dim
            )));
        }

        let mut layers = Vec::with_capacity(n_layers);
        for spec in &config.layers {
            let name = |t: &str| format!("blk.{}.{t}.weight", spec.index);
            let (hd, nkv, ffn) = (spec.head_dim as usize, spec.n_kv_head as usize, spec.ffn_dim as usize);
            let owns = spec.owns_kv();
            // Shared layers carry unused K/V weights in converted files (§3.3): not loaded.
            let kv = |t: &str, shape: &[usize]| if owns { ld.optional(&name(t), shape) } else { Ok(None) };
            let layer = Layer {
                attn_norm: ld.required(&name("attn_norm"), &[h])?,
                attn_q: ld.required(&name("attn_q"), &[nh * hd, h])?,
                attn_k: kv("attn_k", &[nkv * hd, h])?,
                attn_v: kv("attn_v", &[nkv * hd, h])?,
                attn_output: ld.required(&name("attn_output"), &[h, nh * hd])?,
                attn_q_norm: ld.required(&name("attn_q_norm"), &[hd])?,
                attn_k_norm: kv("attn_k_norm", &[hd])?,
                post_attention_norm: ld.required(&name("post_attention_norm"), &[h])?,
                ffn_norm: ld.required(&name("ffn_norm"), &[h])?,
                ffn_gate: ld.required(&name("ffn_gate"), &[ffn, h])?,
                ffn_up: ld.required(&name("ffn_up"), &[ffn, h])?,
                ffn_down: ld.required(&name("ffn_down"), &[h, ffn])?,
                post_ffw_norm: ld.required(&name("post_ffw_norm"), &[h])?,
                inp_gate: if p > 0 { Some(ld.required(&name("inp_gate"), &[p, h])?) } else { None },
                proj: if p > 0 { Some(ld.required(&name("proj"), &[h, p])?) } else { None },
                post_norm: if p > 0 { Some(ld.required(&name("post_norm"), &[h])?) } else { None },
                layer_output_scale: match ld.optional(&name("layer_output_scale"), &[1])? {
                    Some(t) => Some(t.to_vec1::<f32>()?[0]),
                    None => None,
                },
                spec: spec.clone(),
            };
            if owns && (layer.attn_k.is_none() || layer.attn_k_norm.is_none()) {
                return Err(err(format!("layer {} owns its KV cache but has no attn_k / attn_k_norm", spec.index)));
            }
            layers.push(layer);
        }
        Ok(Reference {
            config,
            token_embd,
            output,
            per_layer_token_embd,
            per_layer_model_proj,
            per_layer_proj_norm,
            output_norm,
            rope_freqs,
            layers,
        })
    }
}
