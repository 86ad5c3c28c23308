//! Activations of one chunk, allocated once at load for `max_chunk` tokens (`Category::Scratch`) and reused by
//! every layer and every call, plus the host-visible buffer the logits come back through.

use crate::error::Result;
use crate::gpu::{Category, Context, GpuBuffer, GpuError};
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
    /// `[n][H]`: pre-norm outputs (`a`, `g`) and projections back to H (`o`, `f`, PLE `proj`; their post-norms
    /// run inside the residual adds).
    pub normed: GpuBuffer,
    pub proj: GpuBuffer,
    /// `[n][n_head·head_dim]` (largest head dim): queries before and after q-norm + RoPE, and the heads'
    /// attention outputs.
    pub q_raw: GpuBuffer,
    pub q: GpuBuffer,
    pub heads: GpuBuffer,
    /// `[n][n_kv_head·head_dim]` (largest over owner layers): the K and V projections (normalized, rotated and
    /// stored in the caches by one kernel).
    pub k_raw: GpuBuffer,
    pub v_raw: GpuBuffer,
    /// `[n][2·ffn_dim]` (largest layer): each token's gate and up products side by side, where GeGLU is not fused
    /// into them (prompts); `[n][ffn_dim]`: `gelu(gate) ⊙ up`.
    pub gate_up: GpuBuffer,
    pub act: GpuBuffer,
    /// `[n][P]` (PLE models): the PLE gate product (prompts), and `gelu(gate) ⊙ ple[l]`.
    pub ple_layer: Option<[GpuBuffer; 2]>,
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

/// The sizes [`Scratch::new`] allocates, computed without a device (memory plans use them too). Every f32
/// activation is rounded up to 16 bytes: some kernels view their buffers as arrays of vec4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchSizes {
    /// u32 `[max_chunk]`: token ids, positions (allocated), and the uploaded ids 0..max_chunk.
    pub ids_bytes: u64,
    pub iota_bytes: u64,
    /// `[n][H]`: each of the two residual buffers, `normed`, `proj`.
    pub hidden_bytes: u64,
    /// `[n][n_head·head_dim]`: `q_raw`, `q`, `heads`.
    pub q_bytes: u64,
    /// `[n][n_kv_head·head_dim]`: `k_raw`, `v_raw`.
    pub kv_bytes: u64,
    /// `[n][ffn_dim]`: `act`, and twice it for `gate_up`.
    pub ffn_bytes: u64,
    /// `[n][P]` for each of the two PLE buffers of a layer, on PLE models.
    pub ple_layer_bytes: Option<u64>,
    /// Split-KV attention partials; 0 means none are allocated.
    pub partials_bytes: u64,
    /// `[logit_rows][H]`: `head_in`, `head_normed`.
    pub head_bytes: u64,
    /// `[logit_rows][vocab]` f32 on the GPU, and its mappable copy (`Category::Staging`).
    pub logits_bytes: u64,
    pub staging_bytes: u64,
}

impl ScratchSizes {
    pub fn new(cfg: &TextConfig, max_chunk: u32, logit_rows: u32, cache_type: CacheType) -> ScratchSizes {
        let n = max_chunk as u64;
        let f32s = |elems: u64| (elems * 4).next_multiple_of(16);
        let max_hd = cfg.layers.iter().map(|l| l.head_dim as u64).max().unwrap_or(0);
        let kv_width = cfg
            .layers
            .iter()
            .filter(|l| l.owns_kv())
            .map(|l| l.n_kv_head as u64 * l.head_dim as u64)
            .max()
            .unwrap_or(0);
        let ffn = cfg.layers.iter().map(|l| l.ffn_dim as u64).max().unwrap_or(0);
        let logit_elems = logit_rows as u64 * cfg.vocab as u64;
        ScratchSizes {
            ids_bytes: f32s(n),
            iota_bytes: crate::gpu::upload_size_bytes(n * 4),
            hidden_bytes: f32s(n * cfg.hidden as u64),
            q_bytes: f32s(n * cfg.n_head as u64 * max_hd),
            kv_bytes: f32s(n * kv_width),
            ffn_bytes: f32s(n * ffn),
            ple_layer_bytes: (cfg.ple_dim > 0).then(|| f32s(n * cfg.ple_dim as u64)),
            partials_bytes: partials_bytes(cfg, max_chunk, cache_type),
            head_bytes: f32s(logit_rows as u64 * cfg.hidden as u64),
            logits_bytes: f32s(logit_elems),
            staging_bytes: (logit_elems * 4).next_multiple_of(16),
        }
    }

    /// Everything but the staging copy (`Category::Scratch`).
    pub fn scratch_bytes(&self) -> u64 {
        2 * self.ids_bytes
            + self.iota_bytes
            + 4 * self.hidden_bytes
            + 3 * self.q_bytes
            + 2 * self.kv_bytes
            + 3 * self.ffn_bytes
            + 2 * self.ple_layer_bytes.unwrap_or(0)
            + self.partials_bytes
            + 2 * self.head_bytes
            + self.logits_bytes
    }
}

/// Logit rows per LM-head pass: at most `max_logit_rows` and `max_chunk`, and few enough that `[rows][vocab]` f32
/// fits one storage binding.
pub fn logit_rows(vocab: u32, max_chunk: u32, max_logit_rows: u32, max_binding_bytes: u64) -> u32 {
    let fit = max_binding_bytes / (vocab as u64 * 4);
    (max_chunk as u64).min(max_logit_rows as u64).min(fit).max(1) as u32
}

impl Scratch {
    /// Scratch a prompt's products outside the MLP split k into (`MulMatArgs::with_partials`): `gate_up`, which
    /// holds nothing between the MLPs.
    pub fn k_partials(&self) -> &GpuBuffer {
        &self.gate_up
    }

    pub fn new(
        ctx: &Context,
        cfg: &TextConfig,
        max_chunk: u32,
        logit_rows: u32,
        cache_type: CacheType,
    ) -> Result<Scratch> {
        let sizes = ScratchSizes::new(cfg, max_chunk, logit_rows, cache_type);
        let alloc = |label: &str, bytes: u64| ctx.alloc(label, Category::Scratch, bytes, None);
        let ids: Vec<u32> = (0..max_chunk).collect();
        let ple_layer = match sizes.ple_layer_bytes {
            Some(b) => Some([alloc("ple gate", b)?, alloc("ple gated", b)?]),
            None => None,
        };
        let partials = match sizes.partials_bytes {
            0 => None,
            b => Some(alloc("attention partials", b)?),
        };
        let mappable = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let (hidden, q, kv, ffn) = (sizes.hidden_bytes, sizes.q_bytes, sizes.kv_bytes, sizes.ffn_bytes);
        Ok(Scratch {
            tokens: alloc("token ids", sizes.ids_bytes)?,
            positions: alloc("positions", sizes.ids_bytes)?,
            iota: ctx.upload("ids 0..max_chunk", Category::Scratch, bytemuck::cast_slice(&ids))?,
            h: [alloc("residual A", hidden)?, alloc("residual B", hidden)?],
            normed: alloc("normed", hidden)?,
            proj: alloc("projected", hidden)?,
            q_raw: alloc("q raw", q)?,
            q: alloc("q", q)?,
            heads: alloc("attention heads", q)?,
            k_raw: alloc("k raw", kv)?,
            v_raw: alloc("v raw", kv)?,
            gate_up: alloc("ffn gate and up", 2 * ffn)?,
            act: alloc("ffn act", ffn)?,
            ple_layer,
            partials,
            head_in: alloc("head rows", sizes.head_bytes)?,
            head_normed: alloc("head rows normed", sizes.head_bytes)?,
            logits: alloc("logits", sizes.logits_bytes)?,
            staging: ctx.alloc("logits readback", Category::Staging, sizes.staging_bytes, Some(mappable))?,
            max_chunk,
            logit_rows,
        })
    }

    pub fn size_bytes(&self) -> u64 {
        let mut all = vec![&self.tokens, &self.positions, &self.iota, &self.h[0], &self.h[1], &self.normed, &self.proj];
        all.extend([&self.q_raw, &self.q, &self.heads, &self.k_raw, &self.v_raw, &self.gate_up, &self.act]);
        all.extend([&self.head_in, &self.head_normed, &self.logits, &self.staging]);
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
    let map_error = |message: String| GpuError::BufferMap { label: staging.label().to_owned(), message };
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
