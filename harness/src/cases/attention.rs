//! Cases for `attention` (ggml's fused `flash_attn_ext`): decode and prompt chunks over f32 and f16 KV-cache
//! rings, with grouped-query heads, sliding windows, wrap-around and KV sharing. The reference gathers the keys
//! each slot holds, builds the score matrix with a 0/−inf mask from absolute positions, and takes the softmax
//! and the weighted sum with candle ops in f64. Split cases may also have the merge make each head's part of a
//! LoRA down-projection of the heads (o's `u`), checked after the output. Grad mode: `attention_grad.rs`.

use super::attention_grad;
use super::grad::BuiltGrad;
use super::{Built, CaseResult, OpCase, OutType, cpu, guarded_output, seeded, upload_f32};
use crate::reference::ops;
use crate::tolerance::max_nmse;
use candle_core::{DType, Tensor};
use ferrogem::gpu::kernels::Requires;
use ferrogem::gpu::{Category, Context, GpuBuffer};
use ferrogem::ops::attention::{AttentionShape, CacheType, HeadsLoraDown, SplitKv, attention};
use std::rc::Rc;

/// No sliding window.
const NO_WINDOW: u32 = 0;

pub struct AttentionCase {
    shape: AttentionShape,
    /// A second dispatch reading the same cache buffers with its own queries, heads and positions, as a
    /// KV-sharing layer reads its donor's cache. Its output follows the first one's.
    sharer: Option<AttentionShape>,
    /// Pass a partials buffer, so that shapes with few rows split their positions over workgroups.
    split: bool,
    /// With `split`: the merge also makes each head's part of `u = A·out` for a random A of this many rows
    /// (`HeadsLoraDown`); 0: none.
    lora_rank: u32,
}

/// Where a LoRA case's u parts start past its A: a gap, so a wrong offset shows.
const LORA_U_GAP: u32 = 3;

impl AttentionCase {
    pub fn new(shape: AttentionShape, split: bool) -> Self {
        AttentionCase { shape, sharer: None, split, lora_rank: 0 }
    }

    /// A split case whose merge also makes a rank-`rank` LoRA `u`, a part per head.
    pub fn with_lora_down(shape: AttentionShape, rank: u32) -> Self {
        AttentionCase { shape, sharer: None, split: true, lora_rank: rank }
    }

    /// `sharer` reads `donor`'s caches, so their cache layouts must match.
    pub fn shared(donor: AttentionShape, sharer: AttentionShape, split: bool) -> Self {
        let layout = |s: &AttentionShape| (s.n_kv_head, s.head_dim, s.kv_capacity, s.cache_type);
        assert_eq!(layout(&donor), layout(&sharer), "a KV-sharing case needs one cache layout");
        AttentionCase { shape: donor, sharer: Some(sharer), split, lora_rank: 0 }
    }

    fn shapes(&self) -> impl Iterator<Item = &AttentionShape> {
        std::iter::once(&self.shape).chain(self.sharer.as_ref())
    }
}

/// A shape with the usual defaults: no softcap.
#[allow(clippy::too_many_arguments)]
pub fn shape(
    head_dim: u32,
    n_head: u32,
    n_kv_head: u32,
    n_tokens: u32,
    q_pos0: u32,
    kv_capacity: u32,
    window: u32,
    scale: f32,
    cache_type: CacheType,
) -> AttentionShape {
    AttentionShape {
        n_tokens,
        n_head,
        n_kv_head,
        head_dim,
        kv_capacity,
        q_pos0,
        window,
        scale,
        softcap: 0.0,
        cache_type,
    }
}

/// The smallest ring a sliding layer can use for chunks of `n_tokens`.
fn ring(window: u32, n_tokens: u32) -> u32 {
    window + n_tokens - 1
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    use CacheType::{F16, F32};
    let mut shapes = Vec::new();
    // Head dims of real and tiny models (and odd ones that leave lanes idle), decode and chunk, both caches.
    for cache in [F32, F16] {
        for hd in [32, 64, 128, 256, 512] {
            shapes.push(shape(hd, 8, 2, 1, 37, 64, NO_WINDOW, 1.0, cache));
            shapes.push(shape(hd, 8, 2, 13, 20, 64, NO_WINDOW, 0.0625, cache));
        }
    }
    for hd in [4, 80, 96, 1024] {
        shapes.push(shape(hd, 4, 2, 5, 9, 16, NO_WINDOW, 0.0625, F32));
    }
    // Grouped-query ratios 1, 2, 4, 8.
    for n_kv_head in [8, 4, 2, 1] {
        shapes.push(shape(64, 8, n_kv_head, 1, 100, 128, NO_WINDOW, 0.0625, F32));
        shapes.push(shape(64, 8, n_kv_head, 5, 60, 128, NO_WINDOW, 1.0, F32));
    }
    // The first tokens of a prompt.
    for n in [1, 5, 33] {
        shapes.push(shape(64, 4, 2, n, 0, 64, NO_WINDOW, 0.0625, F32));
    }
    // Window 8 on the smallest ring: before the window fills, chunks crossing its boundary, many wraps.
    for n in [1, 5, 13, 33] {
        for pos0 in [0, 3, 100] {
            shapes.push(shape(64, 4, 2, n, pos0, ring(8, n), 8, 1.0, F32));
        }
        shapes.push(shape(128, 8, 4, n, 100, ring(8, n), 8, 0.0625, F16));
    }
    // Window 512: not yet full, full and wrapped, and a ring larger than needed.
    for (n, pos0) in [(13, 300), (1, 600), (5, 1000), (33, 530)] {
        shapes.push(shape(32, 4, 2, n, pos0, ring(512, n), 512, 0.0625, F32));
    }
    shapes.push(shape(64, 4, 1, 5, 2500, 1024, 512, 1.0, F32));
    // Gemma 4 E2B-like: sliding (hd 256, window 512) and full (hd 512) layers, one kv head.
    for (n, cache) in [(1, F32), (13, F32), (1, F16)] {
        shapes.push(shape(256, 8, 1, n, 1000, ring(512, n), 512, 1.0, cache));
    }
    shapes.push(shape(512, 8, 1, 1, 1500, 2048, NO_WINDOW, 1.0, F32));
    shapes.push(shape(512, 8, 1, 1, 1500, 2048, u32::MAX, 1.0, F16));
    // Gemma 3 270M-like: hd 256, 4 heads over 1 kv head, scale 1/16.
    shapes.push(shape(256, 4, 1, 13, 40, 64, NO_WINDOW, 0.0625, F32));
    // Gemma 2-style logit softcap.
    for cache in [F32, F16] {
        let mut s = shape(64, 4, 2, 5, 30, 48, 16, 1.0, cache);
        s.softcap = 5.0;
        shapes.push(s);
    }
    // Prompt chunks in blocks of 16 rows per kv head (`attention_tiled.wgsl`): a softcap, and E2B's sliding layer
    // on an f16 cache with a chunk whose rows' windows start apart and a last block of 8 rows.
    for cache in [F32, F16] {
        let mut s = shape(64, 4, 2, 17, 30, 64, 16, 1.0, cache);
        s.softcap = 5.0;
        shapes.push(s);
    }
    shapes.push(shape(256, 8, 1, 41, 490, ring(512, 41), 512, 1.0, F16));
    // Positions a few tiles short of u32::MAX: the tiles' ends must not wrap.
    shapes.push(shape(64, 4, 1, 16, u32::MAX - 20, ring(8, 16), 8, 1.0, F32));
    // Training chunks (grad mode): grouped-query ratios 1, 2 and 4, a window, a softcap with a window.
    for (nh, nkv, window, softcap) in [(4, 4, NO_WINDOW, 0.0), (4, 2, 3, 0.0), (4, 1, NO_WINDOW, 0.0), (2, 1, 4, 5.0)] {
        let mut s = shape(32, nh, nkv, 9, 0, 9, window, 0.125, F32);
        s.softcap = softcap;
        shapes.push(s);
    }
    // More keys than a workgroup has lanes (each lane owns several), and a head wider than one (Gemma 4's 512).
    shapes.push(shape(4, 1, 1, 300, 0, 300, NO_WINDOW, 0.5, F32));
    // The backward's tiles: two kv heads of two query heads each over 5 tiles of rows and 3 of keys, a window that
    // empties some tiles and bounds the others' inner sums.
    shapes.push(shape(4, 4, 2, 150, 0, 150, 20, 0.25, F32));
    shapes.push(shape(512, 2, 1, 3, 0, 3, NO_WINDOW, 0.0625, F32));
    // KV sharing: a second layer's queries (other heads, positions, scale) read the first one's caches.
    let mut pairs =
        vec![(shape(64, 8, 2, 13, 20, 64, NO_WINDOW, 1.0, F32), shape(64, 4, 2, 1, 32, 64, NO_WINDOW, 0.0625, F32))];
    for cache in [F32, F16] {
        pairs.push((
            shape(256, 8, 1, 5, 30, ring(8, 5), 8, 1.0, cache),
            shape(256, 2, 1, 3, 32, ring(8, 5), 8, 0.0625, cache),
        ));
    }
    // Every shape once in one pass and once allowed to split (what decode uses).
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for split in [false, true] {
        cases.extend(shapes.iter().map(|s| Box::new(AttentionCase::new(*s, split)) as Box<dyn OpCase>));
        cases.extend(pairs.iter().map(|(a, b)| Box::new(AttentionCase::shared(*a, *b, split)) as Box<dyn OpCase>));
    }
    // o's LoRA u from the merge: E2B's sliding and full layers (rank 16, one round of ranks), a few tokens with
    // ranks over several rounds, a first position (one split, still merged) and an f16 cache.
    let lora_shapes = [
        (shape(256, 8, 1, 1, 1000, ring(512, 1), 512, 1.0, F32), 16),
        (shape(512, 8, 1, 1, 1500, 2048, NO_WINDOW, 1.0, F32), 16),
        (shape(64, 8, 2, 3, 60, 128, NO_WINDOW, 0.0625, F32), 40),
        (shape(64, 4, 2, 1, 0, 64, NO_WINDOW, 0.0625, F32), 13),
        (shape(128, 8, 4, 1, 100, ring(8, 1), 8, 0.0625, F16), 8),
    ];
    cases.extend(lora_shapes.map(|(s, rank)| Box::new(AttentionCase::with_lora_down(s, rank)) as Box<dyn OpCase>));
    cases
}

fn window_name(window: u32) -> String {
    if window == NO_WINDOW || window == u32::MAX { "none".into() } else { window.to_string() }
}

fn shape_vars(s: &AttentionShape, prefix: &str) -> String {
    let mut v = format!(
        "{prefix}nh={},{prefix}n={},{prefix}pos0={},{prefix}win={},{prefix}scale={}",
        s.n_head,
        s.n_tokens,
        s.q_pos0,
        window_name(s.window),
        s.scale
    );
    if s.softcap > 0.0 {
        v.push_str(&format!(",{prefix}softcap={}", s.softcap));
    }
    v
}

/// Positions that query row `t` of `s` sees, counted.
fn visible_keys(s: &AttentionShape, t: u32) -> u64 {
    let pos = s.q_pos0 as u64 + t as u64;
    match s.window {
        NO_WINDOW | u32::MAX => pos + 1,
        w => (w as u64).min(pos + 1),
    }
}

impl OpCase for AttentionCase {
    fn op(&self) -> &'static str {
        "attention"
    }

    fn vars(&self) -> String {
        let s = &self.shape;
        let mut v = format!(
            "hd={},nkv={},cap={},cache={},{}",
            s.head_dim,
            s.n_kv_head,
            s.kv_capacity,
            s.cache_type.name(),
            shape_vars(s, "")
        );
        if let Some(sharer) = &self.sharer {
            v.push_str(&format!(",{}", shape_vars(sharer, "shared_")));
        }
        v.push_str(if self.split { ",split=yes" } else { ",split=no" });
        if self.lora_rank > 0 {
            v.push_str(&format!(",lora_down=r{}", self.lora_rank));
        }
        v
    }

    fn requires(&self) -> Requires {
        Requires { f16: self.shape.cache_type == CacheType::F16, subgroups: false, coop_matrix: false }
    }

    fn max_nmse(&self) -> f64 {
        // f16 caches are rounded identically for kernel and reference, so both entries bound only f32 work.
        max_nmse(self.op(), self.shape.cache_type.name())
    }

    fn flops(&self) -> u64 {
        // q·k and p·v: two multiply-adds per visible key and element.
        self.shapes()
            .map(|s| (0..s.n_tokens).map(|t| visible_keys(s, t)).sum::<u64>() * s.n_head as u64 * s.head_dim as u64 * 4)
            .sum()
    }

    fn bytes(&self) -> u64 {
        let s = &self.shape;
        let cache_bytes = 2
            * s.needed_capacity().min(s.kv_capacity as u64)
            * s.n_kv_head as u64
            * s.head_dim as u64
            * s.cache_type.elem_bytes();
        let lora = 4 * self.lora_rank as u64 * (s.n_head as u64 * s.head_dim as u64 + s.rows());
        cache_bytes + self.shapes().map(|s| 2 * s.q_elems() * 4).sum::<u64>() + lora
    }

    fn elems(&self) -> u64 {
        self.shapes().map(|s| s.q_elems().max(s.cache_elems())).max().unwrap_or(0)
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let s = self.shape;
        let cache_elems = s.cache_elems() as usize;
        // The caches as the GPU holds them; f16 rounding happens once, here, for kernel and reference alike.
        let round = |x: Vec<f32>| -> Vec<f32> {
            match s.cache_type {
                CacheType::F32 => x,
                CacheType::F16 => x.into_iter().map(|v| half::f16::from_f32(v).to_f32()).collect(),
            }
        };
        let k_vals = round(seeded(&format!("{name}/k"), cache_elems));
        let v_vals = round(seeded(&format!("{name}/v"), cache_elems));
        let upload_cache = |label: &str, vals: &[f32]| -> CaseResult<Rc<GpuBuffer>> {
            Ok(match s.cache_type {
                CacheType::F32 => upload_f32(ctx, label, vals)?,
                CacheType::F16 => {
                    let halves: Vec<half::f16> = vals.iter().map(|&v| half::f16::from_f32(v)).collect();
                    Rc::new(ctx.upload(label, Category::Scratch, bytemuck::cast_slice(&halves))?)
                }
            })
        };
        let (k_cache, v_cache) = (upload_cache("k_cache", &k_vals)?, upload_cache("v_cache", &v_vals)?);

        let mut reference = Vec::new();
        let mut queries = Vec::new();
        for (i, shape) in self.shapes().enumerate() {
            let q_vals = seeded(&format!("{name}/q{i}"), shape.q_elems() as usize);
            reference.extend(reference_attention(shape, &q_vals, &k_vals, &v_vals)?);
            queries.push((*shape, upload_f32(ctx, &format!("q{i}"), &q_vals)?));
        }
        let lora = match self.lora_rank {
            0 => None,
            rank => {
                let a = seeded(&format!("{name}/lora_a"), (rank * s.n_head * s.head_dim) as usize);
                reference.extend(reference_heads_down(&s, &a, rank, &reference)?);
                let u_offset_elems = a.len() as u32 + LORA_U_GAP;
                let mut a_and_u = a;
                a_and_u.resize(u_offset_elems as usize + (s.rows() * rank as u64) as usize, 0.0);
                Some((rank, u_offset_elems, upload_f32(ctx, "lora a and u", &a_and_u)?))
            }
        };
        let output = guarded_output(ctx, reference.len(), OutType::F32)?;
        // The first dispatch writes the output directly (no copy to time in perf mode); the sharer's goes through
        // a scratch buffer copied in behind it, since a dispatch binds whole buffers.
        let sharer_out = match &self.sharer {
            Some(s) => Some(ctx.alloc("sharer_out", Category::Scratch, s.q_elems() * 4, None)?),
            None => None,
        };
        let partials_bytes = self.shapes().map(|s| s.partials_bytes()).max().unwrap_or(0).max(16);
        let partials = match self.split {
            true => Some(ctx.alloc("partials", Category::Scratch, partials_bytes, None)?),
            false => None,
        };
        let dst = Rc::clone(&output);
        let record = move |batch: &mut ferrogem::gpu::Batch| -> ferrogem::gpu::Result<()> {
            let (shape, q) = &queries[0];
            let lora_down = lora.as_ref().map(|(rank, u_offset_elems, a_and_u)| HeadsLoraDown {
                a_and_u,
                rank_total: *rank,
                u_offset_elems: *u_offset_elems,
            });
            let split = partials.as_ref().map(|partials| SplitKv { partials, lora_down });
            attention(batch, q, &k_cache, &v_cache, &dst, split.as_ref(), shape)?;
            if let Some((rank, u_offset_elems, a_and_u)) = &lora {
                let u_bytes = shape.rows() * *rank as u64 * 4;
                batch.copy(a_and_u, *u_offset_elems as u64 * 4, &dst, shape.q_elems() * 4, u_bytes);
            }
            let split = partials.as_ref().map(|partials| SplitKv { partials, lora_down: None });
            if let (Some((shape, q)), Some(out)) = (queries.get(1), &sharer_out) {
                attention(batch, q, &k_cache, &v_cache, out, split.as_ref(), shape)?;
                batch.copy(out, 0, &dst, queries[0].0.q_elems() * 4, out.size_bytes());
            }
            Ok(())
        };
        Ok(Built { record: Box::new(record), output, output_type: OutType::F32, reference })
    }

    /// One-pass cases shaped like a training chunk (`attention_grad::training_shape`).
    fn build_grad(&self, ctx: &Context) -> Option<CaseResult<BuiltGrad>> {
        let shape = attention_grad::training_shape(&self.shape).filter(|_| self.sharer.is_none() && !self.split)?;
        Some(attention_grad::build(&self.name(), &shape, ctx))
    }
}

/// Each head's part of `u = A·out` (A `[rank][n_head · head_dim]`), `[n_tokens][n_head][rank]`, from the
/// reference output, in f64.
fn reference_heads_down(s: &AttentionShape, a: &[f32], rank: u32, out: &[f32]) -> CaseResult<Vec<f32>> {
    let (n, nh, hd, r) = (s.n_tokens as usize, s.n_head as usize, s.head_dim as usize, rank as usize);
    let dev = cpu();
    // [t][h][d] · [h][d][j] summed over d, per head: a batched product over heads.
    let heads = Tensor::from_slice(&out[..n * nh * hd], (n, nh, hd), &dev)?.to_dtype(DType::F64)?.transpose(0, 1)?;
    let a_heads = Tensor::from_slice(a, (r, nh, hd), &dev)?.to_dtype(DType::F64)?.permute((1, 2, 0))?;
    let u = heads.contiguous()?.matmul(&a_heads.contiguous()?)?.transpose(0, 1)?;
    Ok(u.contiguous()?.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?)
}

/// `reference::ops::attention` in f64 on what the rings hold: the key of each occupied slot at its absolute position.
fn reference_attention(s: &AttentionShape, q: &[f32], k_cache: &[f32], v_cache: &[f32]) -> CaseResult<Vec<f32>> {
    let (n, nh, nkv, hd, cap) =
        (s.n_tokens as usize, s.n_head as usize, s.n_kv_head as usize, s.head_dim as usize, s.kv_capacity as u64);
    let dev = cpu();
    // Slot `slot` holds the newest position p ≡ slot (mod cap) with p < kv_pos_end; slots never written are empty.
    let end = s.kv_pos_end();
    let (slots, key_pos): (Vec<u32>, Vec<u64>) =
        (0..cap).filter(|&slot| slot < end).map(|slot| (slot as u32, slot + (end - 1 - slot) / cap * cap)).unzip();
    let slot_idx = Tensor::from_vec(slots, key_pos.len(), &dev)?;
    let occupied = |cache: &[f32]| -> CaseResult<Tensor> {
        let t = Tensor::from_slice(cache, (cap as usize, nkv, hd), &dev)?.to_dtype(DType::F64)?;
        Ok(t.index_select(&slot_idx, 0)?)
    };
    let window = match s.window {
        NO_WINDOW | u32::MAX => None,
        w => Some(w),
    };
    let q = Tensor::from_slice(q, (n, nh, hd), &dev)?.to_dtype(DType::F64)?;
    let (k, v) = (occupied(k_cache)?, occupied(v_cache)?);
    let out = ops::attention(&q, &k, &v, s.q_pos0 as u64, &key_pos, window, s.scale, s.softcap)?;
    Ok(out.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?)
}
