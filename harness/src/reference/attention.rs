//! Attention pieces of the reference (gemma4.md §3.3–§3.4, §5): NeoX RoPE with per-pair frequency divisors, the
//! causal + sliding-window mask from absolute positions, grouped-query attention with softmax in f32, and the KV
//! cache that owner layers write and shared layers read through their donor.

use super::weights::err;
use candle_core::{D, Device, Result, Tensor};
use ferrogem::models::{LayerSpec, TextConfig};
use std::ops::Range;

/// NeoX ("rotate-half") RoPE on x [n, heads, hd] for positions `positions`: element i pairs with i + hd/2 and
/// turns by θ_i = (p / rope_scale) · base^(−2i/hd) / ff_i. `freq_divisors` (`rope_freqs`, full layers only) holds
/// ff_i; 1e30 leaves a pair unrotated (proportional RoPE). Angles are computed in f64, then rounded once.
pub fn rope(x: &Tensor, positions: Range<usize>, spec: &LayerSpec, freq_divisors: Option<&[f32]>) -> Result<Tensor> {
    let (n, _, hd) = x.dims3()?;
    let half = hd / 2;
    if hd % 2 != 0 || positions.len() != n {
        return Err(err(format!("rope: head dim {hd}, {} positions for {n} rows", positions.len())));
    }
    let (mut cos, mut sin) = (Vec::with_capacity(n * half), Vec::with_capacity(n * half));
    for p in positions {
        let p = p as f64 / spec.rope_scale as f64;
        for i in 0..half {
            let ff = freq_divisors.map_or(1.0, |f| f[i] as f64);
            let theta = p * (spec.rope_base as f64).powf(-2.0 * i as f64 / hd as f64) / ff;
            cos.push(theta.cos() as f32);
            sin.push(theta.sin() as f32);
        }
    }
    let cos = Tensor::from_vec(cos, (n, 1, half), &Device::Cpu)?;
    let sin = Tensor::from_vec(sin, (n, 1, half), &Device::Cpu)?;
    let (x1, x2) = (x.narrow(2, 0, half)?, x.narrow(2, half, half)?);
    let out1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let out2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    Tensor::cat(&[out1, out2], 2)
}

/// 0 where query position `q_start + i` may see key position `k_start + t`, −∞ elsewhere: causal, and within
/// `window` (p − p' < window) on sliding layers. [n_q, n_k].
pub fn mask(q_start: usize, n_q: usize, k_start: usize, n_k: usize, window: Option<u32>) -> Result<Tensor> {
    let mut m = Vec::with_capacity(n_q * n_k);
    for i in 0..n_q {
        let p = q_start + i;
        for t in 0..n_k {
            let pk = k_start + t;
            let visible = pk <= p && window.is_none_or(|w| p - pk < w as usize);
            m.push(if visible { 0.0f32 } else { f32::NEG_INFINITY });
        }
    }
    Tensor::from_vec(m, (n_q, n_k), &Device::Cpu)
}

/// softmax(scale · q·kᵀ + mask) · v per head. q [n, nh, hd] at positions from `q_start`; k, v [T, nkv, hd] at
/// positions from `k_start`; query head j reads KV head ⌊j / (nh/nkv)⌋. Returns [n, nh · hd].
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    q_start: usize,
    k_start: usize,
    window: Option<u32>,
    scale: f32,
) -> Result<Tensor> {
    let (n, nh, hd) = q.dims3()?;
    let (t, nkv, _) = k.dims3()?;
    let group = nh / nkv;
    let heads: Vec<u32> = (0..nh).map(|j| (j / group) as u32).collect();
    let heads = Tensor::new(heads.as_slice(), &Device::Cpu)?;
    // [nh, T, hd]: each query head's KV head.
    let expand = |x: &Tensor| x.transpose(0, 1)?.contiguous()?.index_select(&heads, 0);
    let (k, v) = (expand(k)?, expand(v)?);
    let q = q.transpose(0, 1)?.contiguous()?;
    let scores = (q.matmul(&k.t()?.contiguous()?)? * scale as f64)?;
    let scores = scores.broadcast_add(&mask(q_start, n, k_start, t, window)?)?;
    let max = scores.max_keepdim(D::Minus1)?;
    let e = scores.broadcast_sub(&max)?.exp()?;
    let probs = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
    probs.matmul(&v)?.transpose(0, 1)?.contiguous()?.reshape((n, nh * hd))
}

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
