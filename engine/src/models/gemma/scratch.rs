//! Activations of one chunk, allocated once at load for `max_chunk` tokens (`Category::Scratch`) and reused by
//! every layer and every call, plus the host-visible buffer the logits come back through.

use crate::error::{Error, Result};
use crate::gpu::{Category, Context, GpuBuffer};
use crate::models::TextConfig;
use crate::ops::attention::{AttentionShape, CacheType};

#[derive(Debug)]
pub struct Scratch {
    /// u32 `[max_chunk]`: the chunk's token ids, absolute positions, and the constant ids 0..max_chunk.
    pub tokens: GpuBuffer,
    pub positions: GpuBuffer,
    pub iota: GpuBuffer,
    /// The residual stream `[n][H]`, ping-ponged: an op never writes a buffer it reads.
    pub h: [GpuBuffer; 2],
    /// `[n][H]`: pre-norm outputs (`a`, `g`), projections back to H (`o`, `f`, PLE `proj`), their post-norms.
    pub normed: GpuBuffer,
    pub proj: GpuBuffer,
    pub post: GpuBuffer,
    /// `[n][n_head·head_dim]` (largest head dim): queries before and after q-norm + RoPE, and the heads'
    /// attention outputs.
    pub q_raw: GpuBuffer,
    pub q: GpuBuffer,
    pub heads: GpuBuffer,
    /// `[n][n_kv_head·head_dim]` (largest over owner layers).
    pub k_raw: GpuBuffer,
    pub k: GpuBuffer,
    pub v_raw: GpuBuffer,
    pub v: GpuBuffer,
    /// `[n][ffn_dim]` (largest layer): gate, up, and `gelu(gate) ⊙ up`.
    pub gate: GpuBuffer,
    pub up: GpuBuffer,
    pub act: GpuBuffer,
    /// `[n][P]` (PLE models): this layer's PLE input, the gate, and `gelu(gate) ⊙ ple`.
    pub ple_layer: Option<[GpuBuffer; 3]>,
    /// Split-KV attention partials, sized for the largest need of any chunk length.
    pub partials: Option<GpuBuffer>,
    /// `[logit_rows][H]`: the rows the LM head runs on, and their final norm.
    pub head_in: GpuBuffer,
    pub head_normed: GpuBuffer,
    /// `[logit_rows][vocab]` on the GPU, and its host-mappable copy.
    pub logits: GpuBuffer,
    pub staging: GpuBuffer,
    pub max_chunk: u32,
    pub logit_rows: u32,
}

impl Scratch {
    pub fn new(
        ctx: &Context,
        cfg: &TextConfig,
        max_chunk: u32,
        logit_rows: u32,
        cache_type: CacheType,
    ) -> Result<Scratch> {
        let n = max_chunk as u64;
        // Rounded up to 16 bytes: some kernels view their buffers as arrays of vec4.
        let f32s =
            |label: &str, elems: u64| ctx.alloc(label, Category::Scratch, (elems * 4).next_multiple_of(16), None);
        let h = cfg.hidden as u64;
        let max_hd = cfg.layers.iter().map(|l| l.head_dim as u64).max().unwrap_or(0);
        let q_width = cfg.n_head as u64 * max_hd;
        let kv_width = cfg
            .layers
            .iter()
            .filter(|l| l.owns_kv())
            .map(|l| l.n_kv_head as u64 * l.head_dim as u64)
            .max()
            .unwrap_or(0);
        let ffn = cfg.layers.iter().map(|l| l.ffn_dim as u64).max().unwrap_or(0);
        let ids: Vec<u32> = (0..max_chunk).collect();
        let ple_layer = if cfg.ple_dim > 0 {
            let p = cfg.ple_dim as u64;
            Some([f32s("ple of the layer", n * p)?, f32s("ple gate", n * p)?, f32s("ple gated", n * p)?])
        } else {
            None
        };
        let partials_bytes = partials_bytes(cfg, max_chunk, cache_type);
        let partials = match partials_bytes {
            0 => None,
            b => Some(ctx.alloc("attention partials", Category::Scratch, b, None)?),
        };
        let logits_bytes = logit_rows as u64 * cfg.vocab as u64 * 4;
        let mappable = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        Ok(Scratch {
            tokens: f32s("token ids", n)?,
            positions: f32s("positions", n)?,
            iota: ctx.upload("ids 0..max_chunk", Category::Scratch, bytemuck::cast_slice(&ids))?,
            h: [f32s("residual A", n * h)?, f32s("residual B", n * h)?],
            normed: f32s("normed", n * h)?,
            proj: f32s("projected", n * h)?,
            post: f32s("post-normed", n * h)?,
            q_raw: f32s("q raw", n * q_width)?,
            q: f32s("q", n * q_width)?,
            heads: f32s("attention heads", n * q_width)?,
            k_raw: f32s("k raw", n * kv_width)?,
            k: f32s("k", n * kv_width)?,
            v_raw: f32s("v raw", n * kv_width)?,
            v: f32s("v", n * kv_width)?,
            gate: f32s("ffn gate", n * ffn)?,
            up: f32s("ffn up", n * ffn)?,
            act: f32s("ffn act", n * ffn)?,
            ple_layer,
            partials,
            head_in: f32s("head rows", logit_rows as u64 * h)?,
            head_normed: f32s("head rows normed", logit_rows as u64 * h)?,
            logits: f32s("logits", logit_rows as u64 * cfg.vocab as u64)?,
            staging: ctx.alloc(
                "logits readback",
                Category::Staging,
                logits_bytes.next_multiple_of(16),
                Some(mappable),
            )?,
            max_chunk,
            logit_rows,
        })
    }

    pub fn size_bytes(&self) -> u64 {
        let mut all = vec![&self.tokens, &self.positions, &self.iota, &self.h[0], &self.h[1], &self.normed, &self.proj];
        all.extend([&self.post, &self.q_raw, &self.q, &self.heads, &self.k_raw, &self.k, &self.v_raw, &self.v]);
        all.extend([&self.gate, &self.up, &self.act, &self.head_in, &self.head_normed, &self.logits, &self.staging]);
        all.extend(self.ple_layer.iter().flatten());
        all.extend(self.partials.iter());
        all.iter().map(|b| b.size_bytes()).sum()
    }
}

/// The most bytes of split-attention partials any layer needs for any chunk of 1..=max_chunk tokens (it only
/// depends on the row count and head dim; chunks of 512+ rows never split).
fn partials_bytes(cfg: &TextConfig, max_chunk: u32, cache_type: CacheType) -> u64 {
    let mut most = 0;
    for spec in &cfg.layers {
        for n_tokens in 1..=max_chunk.min(512) {
            let shape = AttentionShape {
                n_tokens,
                n_head: cfg.n_head,
                n_kv_head: spec.n_kv_head,
                head_dim: spec.head_dim,
                kv_capacity: 1,
                q_pos0: 0,
                window: 0,
                scale: 1.0,
                softcap: 0.0,
                cache_type,
            };
            most = most.max(shape.partials_bytes());
        }
    }
    most
}

/// Reads `bytes` from the start of a `MAP_READ` buffer after the work already submitted finishes.
pub async fn map_read_f32(ctx: &Context, staging: &GpuBuffer, bytes: u64) -> Result<Vec<f32>> {
    let (sender, receiver) = futures_channel::oneshot::channel();
    let slice = staging.raw().slice(..bytes);
    slice.map_async(wgpu::MapMode::Read, move |result| {
        let _ = sender.send(result);
    });
    #[cfg(not(target_arch = "wasm32"))]
    ctx.wait_idle()?;
    let map_error = |message: String| Error::BufferMap { label: staging.label().to_owned(), message };
    receiver
        .await
        .map_err(|_| map_error("the map callback was dropped (device lost?)".into()))?
        .map_err(|e| map_error(e.to_string()))?;
    let values = {
        let view = slice.get_mapped_range().map_err(|e| map_error(e.to_string()))?;
        bytemuck::pod_collect_to_vec(&view[..])
    };
    staging.raw().unmap();
    ctx.check_errors()?;
    Ok(values)
}
