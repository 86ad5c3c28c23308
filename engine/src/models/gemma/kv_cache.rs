//! The KV cache: preallocated rings, one K and one V buffer per layer that owns its KV (shared layers bind their
//! donor's). Position `p` lives in slot `p % capacity`. A sliding layer's ring holds `window + max_chunk − 1`
//! slots, enough for a whole chunk whose first query still sees `window − 1` older positions (llama.cpp sizes its
//! SWA cache at `n_swa + n_ubatch`); a full layer holds `n_ctx`. Slots are computed on the host per call and
//! written into one small u32 buffer per distinct capacity.

use crate::error::{Error, Result};
use crate::gpu::{Category, Context, GpuBuffer};
use crate::models::TextConfig;
use crate::ops::attention::CacheType;
use crate::ops::binary::StorageType;

/// One owner layer's rings: `[capacity][n_kv_head][head_dim]` of the cache type.
#[derive(Debug)]
pub struct LayerCache {
    pub k: GpuBuffer,
    pub v: GpuBuffer,
    pub capacity: u32,
    pub n_kv_head: u32,
    pub head_dim: u32,
    /// Index into [`KvCache::slot_ids`] of the slot buffer for this capacity.
    pub slots: usize,
}

#[derive(Debug)]
pub struct KvCache {
    pub cache_type: CacheType,
    /// `Some` for owner layers, indexed by layer.
    pub layers: Vec<Option<LayerCache>>,
    /// (capacity, u32 buffer of `max_chunk` ring slots for the current chunk's positions).
    pub slot_ids: Vec<(u32, GpuBuffer)>,
    /// One past the newest position written; positions before it, within each ring's reach, are valid.
    pub next_pos: u32,
}

/// The sizes [`KvCache::new`] allocates, computed without a device (memory plans use them too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvSizes {
    /// `Some((capacity in positions, bytes of the K buffer = bytes of the V buffer))` for owner layers.
    pub rings: Vec<Option<(u32, u64)>>,
    /// The distinct ring capacities, in first-use order: one slot-id buffer each.
    pub slot_capacities: Vec<u32>,
    /// Bytes of one slot-id buffer (u32 `[max_chunk]`).
    pub slot_ids_bytes: u64,
}

impl KvSizes {
    pub fn new(cfg: &TextConfig, cache_type: CacheType, n_ctx: u32, max_chunk: u32) -> KvSizes {
        let mut slot_capacities = Vec::new();
        let rings = cfg
            .layers
            .iter()
            .map(|spec| {
                if !spec.owns_kv() {
                    return None;
                }
                let capacity = match spec.window {
                    Some(w) => (w as u64 + max_chunk as u64 - 1).min(n_ctx as u64) as u32,
                    None => n_ctx,
                };
                if !slot_capacities.contains(&capacity) {
                    slot_capacities.push(capacity);
                }
                let bytes = capacity as u64 * spec.n_kv_head as u64 * spec.head_dim as u64 * cache_type.elem_bytes();
                Some((capacity, bytes))
            })
            .collect();
        KvSizes { rings, slot_capacities, slot_ids_bytes: max_chunk as u64 * 4 }
    }

    /// K and V of every owner layer (`Category::Kv`).
    pub fn cache_bytes(&self) -> u64 {
        self.rings.iter().flatten().map(|(_, bytes)| 2 * bytes).sum()
    }

    /// The slot-id buffers (`Category::Scratch`).
    pub fn slot_ids_total_bytes(&self) -> u64 {
        self.slot_capacities.len() as u64 * self.slot_ids_bytes
    }
}

impl KvCache {
    pub fn new(ctx: &Context, cfg: &TextConfig, cache_type: CacheType, n_ctx: u32, max_chunk: u32) -> Result<KvCache> {
        let sizes = KvSizes::new(cfg, cache_type, n_ctx, max_chunk);
        let mut slot_ids: Vec<(u32, GpuBuffer)> = Vec::new();
        let mut layers = Vec::with_capacity(cfg.n_layers());
        for (spec, ring) in cfg.layers.iter().zip(&sizes.rings) {
            let Some((capacity, bytes)) = *ring else {
                layers.push(None);
                continue;
            };
            let slots = match slot_ids.iter().position(|(c, _)| *c == capacity) {
                Some(i) => i,
                None => {
                    let label = format!("kv slot ids (ring of {capacity})");
                    slot_ids.push((capacity, ctx.alloc(&label, Category::Scratch, sizes.slot_ids_bytes, None)?));
                    slot_ids.len() - 1
                }
            };
            let k = ctx.alloc(&format!("blk.{}.k_cache", spec.index), Category::Kv, bytes, None)?;
            let v = ctx.alloc(&format!("blk.{}.v_cache", spec.index), Category::Kv, bytes, None)?;
            layers.push(Some(LayerCache { k, v, capacity, n_kv_head: spec.n_kv_head, head_dim: spec.head_dim, slots }));
        }
        // Shared layers must read a donor laid out as they are (same type, so same head dim and KV heads).
        for spec in cfg.layers.iter().filter(|l| !l.owns_kv()) {
            let donor = layers[spec.kv_source].as_ref().ok_or_else(|| Error::Unsupported {
                op: "KV sharing".into(),
                reason: format!("layer {} reads layer {}, which owns no cache", spec.index, spec.kv_source),
            })?;
            if donor.head_dim != spec.head_dim || donor.n_kv_head != spec.n_kv_head {
                return Err(Error::Unsupported {
                    op: "KV sharing".into(),
                    reason: format!(
                        "layer {} ({} KV heads of {}) cannot read layer {}'s cache ({} of {})",
                        spec.index, spec.n_kv_head, spec.head_dim, spec.kv_source, donor.n_kv_head, donor.head_dim
                    ),
                });
            }
        }
        Ok(KvCache { cache_type, layers, slot_ids, next_pos: 0 })
    }

    pub fn storage_type(&self) -> StorageType {
        match self.cache_type {
            CacheType::F32 => StorageType::F32,
            CacheType::F16 => StorageType::F16,
        }
    }

    /// The cache a layer reads: its own or its donor's.
    pub fn for_layer(&self, kv_source: usize) -> &LayerCache {
        self.layers[kv_source].as_ref().expect("checked in KvCache::new: every kv_source owns a cache")
    }

    /// Whether a chunk at `pos0..pos0 + n` may run: no gap after the cached positions, and on rewinding, every ring
    /// must still hold what the chunk's first query sees (positions `pos0 + 1 − window ..pos0`).
    pub fn check_chunk(&self, cfg: &TextConfig, pos0: u32, n: u32) -> Result<()> {
        let fail = |reason: String| Err(Error::Unsupported { op: "forward".into(), reason });
        if pos0 > self.next_pos {
            return fail(format!("position {pos0} leaves a gap: the cache holds positions up to {}", self.next_pos));
        }
        for (spec, cache) in cfg.layers.iter().zip(&self.layers) {
            let Some(cache) = cache else { continue };
            let end = pos0 as u64 + n as u64;
            let first_needed = spec.window.map_or(0, |w| (pos0 as u64 + 1).saturating_sub(w as u64));
            // Positions older than next_pos − capacity were overwritten.
            let oldest_held = (self.next_pos as u64).saturating_sub(cache.capacity as u64);
            if end - first_needed > cache.capacity as u64 || first_needed < oldest_held.min(pos0 as u64) {
                return fail(format!(
                    "layer {}'s ring of {} slots cannot serve positions {pos0}..{end} (it needs {first_needed}..; \
                     increase n_ctx or max_chunk, or do not rewind this far)",
                    spec.index, cache.capacity
                ));
            }
        }
        Ok(())
    }

    /// Writes the ring slots of positions `pos0..pos0 + n` into every slot buffer.
    pub fn write_slots(&self, ctx: &Context, pos0: u32, n: u32) {
        for (capacity, buffer) in &self.slot_ids {
            let slots: Vec<u32> = (pos0..pos0 + n).map(|p| p % capacity).collect();
            ctx.queue().write_buffer(buffer.raw(), 0, bytemuck::cast_slice(&slots));
        }
    }

    pub fn size_bytes(&self) -> u64 {
        self.layers.iter().flatten().map(|c| c.k.size_bytes() + c.v.size_bytes()).sum()
    }
}
