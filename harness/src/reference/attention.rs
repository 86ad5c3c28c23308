//! The reference's KV cache (gemma4.md §3.3–§3.4, §5): what owner layers write and shared layers read through their
//! donor. RoPE, the mask and attention itself are the op references in `ops.rs`.

use super::weights::err;
use candle_core::{Result, Tensor};
use ferrogem::models::TextConfig;
use std::ops::Range;

/// Keys and values of one owner layer for positions `first_pos..first_pos + len`.
struct LayerKv {
    k: Tensor,
    v: Tensor,
    first_pos: usize,
    /// Sliding layers drop entries no future query can see.
    window: Option<u32>,
}

/// The KV cache: one entry per layer that owns KV, rows in position order. Shared layers read their donor's
/// entry (`LayerSpec::kv_source`). After each chunk, a sliding layer keeps only the `window − 1` newest
/// positions — exactly what the next query (which sees itself plus `window − 1` earlier ones) needs — so a
/// wrong eviction shows up as a prefill/decode mismatch instead of being hidden by the mask.
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    next_pos: usize,
    windows: Vec<Option<u32>>,
}

impl KvCache {
    pub fn new(config: &TextConfig) -> KvCache {
        KvCache {
            layers: config.layers.iter().map(|_| None).collect(),
            next_pos: 0,
            windows: config.layers.iter().map(|l| l.window).collect(),
        }
    }

    /// The position the next token will take.
    pub fn next_pos(&self) -> usize {
        self.next_pos
    }

    /// The positions layer `layer`'s own cache holds (`None` for layers that own no cache or before the first
    /// token).
    pub fn cached_positions(&self, layer: usize) -> Option<Range<usize>> {
        let kv = self.layers.get(layer)?.as_ref()?;
        Some(kv.first_pos..kv.first_pos + kv.k.dim(0).ok()?)
    }

    /// Appends this chunk's k, v [n, nkv, hd] (positions `next_pos..`) to `layer`'s cache.
    pub(super) fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let window = self.windows[layer];
        let slot = &mut self.layers[layer];
        *slot = Some(match slot.take() {
            None => LayerKv { k: k.clone(), v: v.clone(), first_pos: self.next_pos, window },
            Some(kv) => {
                if kv.first_pos + kv.k.dim(0)? != self.next_pos {
                    return Err(err(format!("layer {layer}: cache ends before position {}", self.next_pos)));
                }
                LayerKv { k: Tensor::cat(&[&kv.k, k], 0)?, v: Tensor::cat(&[&kv.v, v], 0)?, ..kv }
            }
        });
        Ok(())
    }

    /// `layer`'s keys, values and the position of their first row.
    pub(super) fn get(&self, layer: usize) -> Result<(&Tensor, &Tensor, usize)> {
        let kv = self.layers[layer].as_ref().ok_or_else(|| err(format!("layer {layer} has no cached KV")))?;
        Ok((&kv.k, &kv.v, kv.first_pos))
    }

    /// Ends a chunk of `n` tokens: advances the position and trims sliding layers.
    pub(super) fn finish_chunk(&mut self, n: usize) -> Result<()> {
        self.next_pos += n;
        for kv in self.layers.iter_mut().flatten() {
            let Some(w) = kv.window else { continue };
            let len = kv.k.dim(0)?;
            let keep = len.min(w.saturating_sub(1) as usize);
            if keep < len {
                kv.k = kv.k.narrow(0, len - keep, keep)?.contiguous()?;
                kv.v = kv.v.narrow(0, len - keep, keep)?.contiguous()?;
                kv.first_pos += len - keep;
            }
        }
        Ok(())
    }
}
