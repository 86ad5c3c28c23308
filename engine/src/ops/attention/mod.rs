//! Attention over a KV cache (ggml's fused equivalent is `flash_attn_ext`): causal, optionally sliding-window,
//! grouped-query, for one decoded token or a prompt chunk. The caches are rings of `kv_capacity` slots, position
//! `p` in slot `p % kv_capacity`; a KV-sharing layer simply passes its donor's cache buffers. Given a scratch
//! buffer, rows with many positions are split over workgroups and merged (flash decoding); the merge can also make
//! the LoRA down-projection of the o projection's group, each head its share ([`HeadsLoraDown`]). A one-pass
//! dispatch with a block of rows per kv head and a compiled head dim runs the tiled kernel (`tiled.rs`) instead of
//! one workgroup per row.

mod tiled;

use super::WG_SIZE;
use crate::gpu::kernels::{Access, BOOLS, KernelKey, Requires, VariantSource, defines_with, key_variants, variants_of};
use crate::gpu::{Batch, GpuBuffer, Grid};
use crate::gpu::{GpuError, Result};
use tiled::AttentionTiledKey;

/// Invocations that share one position's q·k dot product; `WG_SIZE / KEY_LANES` positions are scored per tile.
/// Eight consecutive lanes read 128 contiguous bytes of a key row (f32), a whole memory transaction.
const KEY_LANES: u32 = 8;

/// Storage type of the K and V caches; q, the output and all arithmetic are f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheType {
    F32,
    F16,
}

impl CacheType {
    pub fn elem_bytes(self) -> u64 {
        match self {
            CacheType::F32 => 4,
            CacheType::F16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CacheType::F32 => "f32",
            CacheType::F16 => "f16",
        }
    }
}

/// Everything about one attention dispatch except its buffers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionShape {
    /// Query tokens in this chunk (1 when decoding).
    pub n_tokens: u32,
    pub n_head: u32,
    /// Divides `n_head`; query head `j` reads kv head `j / (n_head / n_kv_head)`.
    pub n_kv_head: u32,
    /// Elements per head, for q, k, v and the output alike.
    pub head_dim: u32,
    /// Slots in each cache ring.
    pub kv_capacity: u32,
    /// Absolute position of the first query token. The caches already hold positions up to
    /// `q_pos0 + n_tokens - 1`.
    pub q_pos0: u32,
    /// Sliding window: a query at `p` sees `p'` only if `p - p' < window`. 0 or `u32::MAX` means none.
    pub window: u32,
    /// Multiplies q·k: 1.0 for Gemma 4, `1/sqrt(query_pre_attn_scalar)` for Gemma 3.
    pub scale: f32,
    /// Gemma 2 logit softcap `c·tanh(s/c)`; 0 = off.
    pub softcap: f32,
    pub cache_type: CacheType,
}

impl AttentionShape {
    /// The window as the kernel takes it: 0 for none.
    fn kernel_window(&self) -> u32 {
        if self.window == u32::MAX { 0 } else { self.window }
    }

    /// One past the newest position in the caches.
    pub fn kv_pos_end(&self) -> u64 {
        self.q_pos0 as u64 + self.n_tokens as u64
    }

    /// The oldest position any query of this chunk can see (the first query's window start).
    pub fn first_visible_pos(&self) -> u64 {
        match self.kernel_window() {
            0 => 0,
            w => (self.q_pos0 as u64 + 1).saturating_sub(w as u64),
        }
    }

    /// Ring slots this chunk needs: every position from `first_visible_pos` to the newest one must still be
    /// held. For a sliding layer at steady state this is `window + n_tokens - 1` (llama.cpp sizes its SWA
    /// cache at `n_swa + n_ubatch`).
    pub fn needed_capacity(&self) -> u64 {
        self.kv_pos_end() - self.first_visible_pos()
    }

    pub fn q_elems(&self) -> u64 {
        self.n_tokens as u64 * self.n_head as u64 * self.head_dim as u64
    }

    pub fn cache_elems(&self) -> u64 {
        self.kv_capacity as u64 * self.n_kv_head as u64 * self.head_dim as u64
    }

    /// Checks everything the kernel relies on, without looking at buffers.
    pub fn validate(&self) -> Result<()> {
        let fail = |reason: String| Err(GpuError::Unsupported { op: "attention".into(), reason });
        let s = self;
        if s.n_head == 0 || s.n_kv_head == 0 || !s.n_head.is_multiple_of(s.n_kv_head) {
            return fail(format!("{} query heads cannot be grouped over {} kv heads", s.n_head, s.n_kv_head));
        }
        if s.head_dim == 0 || !s.head_dim.is_multiple_of(4) || s.head_dim > 4 * WG_SIZE {
            return fail(format!("head_dim {} must be a positive multiple of 4, at most {}", s.head_dim, 4 * WG_SIZE));
        }
        if s.kv_capacity == 0 {
            return fail("the KV cache has no slots".into());
        }
        if s.kv_pos_end() > u32::MAX as u64 {
            return fail(format!("positions {}..{} overflow u32", s.q_pos0, s.kv_pos_end()));
        }
        if s.needed_capacity() > s.kv_capacity as u64 {
            return fail(format!(
                "a ring of {} slots cannot hold positions {}..{} that queries {}..{} see (window {}); it needs {} slots",
                s.kv_capacity,
                s.first_visible_pos(),
                s.kv_pos_end(),
                s.q_pos0,
                s.kv_pos_end(),
                s.window,
                s.needed_capacity()
            ));
        }
        if !s.scale.is_finite() || !s.softcap.is_finite() || s.softcap < 0.0 {
            return fail(format!("scale {} and softcap {} must be finite, softcap ≥ 0", s.scale, s.softcap));
        }
        // The kernel indexes vec4s with u32.
        if s.q_elems() > u32::MAX as u64 || s.cache_elems() > u32::MAX as u64 {
            return fail(format!(
                "{} query or {} cache elements exceed the u32 index range",
                s.q_elems(),
                s.cache_elems()
            ));
        }
        Ok(())
    }
}

/// Split decoding aims for about this many workgroups in flight: a decode step has only `n_head` rows, far too
/// few to keep a GPU's memory system busy if each row were one workgroup.
const SPLIT_TARGET_WORKGROUPS: u64 = 512;
/// A split scores at least one tile of positions, so its fixed cost (loading q, writing a partial) stays small.
const SPLIT_MIN_KEYS: u64 = (WG_SIZE / KEY_LANES) as u64;

impl AttentionShape {
    /// Query rows: (token, head) pairs.
    pub fn rows(&self) -> u64 {
        self.n_tokens as u64 * self.n_head as u64
    }

    /// Visible positions of the last (newest) query row, the most of any row.
    fn max_visible_keys(&self) -> u64 {
        match self.kernel_window() {
            0 => self.kv_pos_end(),
            w => self.kv_pos_end().min(w as u64),
        }
    }

    /// Upper bound on the splits per row, whatever the positions; at most `SPLIT_TARGET_WORKGROUPS`, the
    /// combine pass's `MAX_SPLITS`.
    fn max_splits(&self) -> u64 {
        SPLIT_TARGET_WORKGROUPS.div_ceil(self.rows().max(1))
    }

    /// Bytes of the `partials` buffer that lets `attention` split the positions of each row over several
    /// workgroups. It depends only on `n_tokens`, `n_head` and `head_dim`, so one buffer sized for the decode
    /// shape serves every position; 0 when the shape has rows enough not to split.
    pub fn partials_bytes(&self) -> u64 {
        match self.max_splits() {
            0 | 1 => 0,
            splits => self.rows() * splits * (self.head_dim as u64 / 4 + 1) * 16,
        }
    }

    /// (splits per row, visible positions per split): 1 split when the rows alone fill the device.
    fn split_plan(&self) -> (u64, u64) {
        let keys = self.max_visible_keys().max(1);
        let wanted = self.max_splits().min(keys.div_ceil(SPLIT_MIN_KEYS)).max(1);
        let split_keys = keys.div_ceil(wanted).next_multiple_of(SPLIT_MIN_KEYS);
        (keys.div_ceil(split_keys), split_keys)
    }
}

/// The main pass: with `split`, it writes per-split partial results for `AttentionCombineKey` to merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttentionKey {
    pub cache_type: CacheType,
    pub split: bool,
}

/// The merge of split partial results (flash decoding's second pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttentionCombineKey {
    /// Also each head's part of a LoRA `u = A·heads` ([`HeadsLoraDown`]): one more binding.
    pub lora_down: bool,
}

/// Shared by every pass, matching `Params` in include/attention_params.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct AttentionParams {
    n_tokens: u32,
    n_head: u32,
    n_kv_head: u32,
    head_dim: u32,
    kv_capacity: u32,
    q_pos0: u32,
    window: u32,
    scale: f32,
    softcap: f32,
    n_splits: u32,
    split_keys: u32,
    _pad: u32,
    lora_rank_total: u32,
    lora_u_offset: u32,
    _pad1: [u32; 2],
}
const _: () = assert!(size_of::<AttentionParams>() == 64);

impl AttentionParams {
    /// One split of `split_keys` positions per row, no LoRA: what the one-pass kernels read.
    pub(super) fn of(shape: &AttentionShape, split_keys: u64) -> AttentionParams {
        AttentionParams {
            n_tokens: shape.n_tokens,
            n_head: shape.n_head,
            n_kv_head: shape.n_kv_head,
            head_dim: shape.head_dim,
            kv_capacity: shape.kv_capacity,
            q_pos0: shape.q_pos0,
            window: shape.kernel_window(),
            scale: shape.scale,
            softcap: shape.softcap,
            n_splits: 1,
            // At most the visible positions rounded up to a tile, which validate() keeps within u32.
            split_keys: split_keys.min(u32::MAX as u64) as u32,
            _pad: 0,
            lora_rank_total: 0,
            lora_u_offset: 0,
            _pad1: [0; 2],
        }
    }
}

impl KernelKey for AttentionKey {
    const FILE: &'static str = "attention.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("attention_kv{}{}_wg{WG_SIZE}", self.cache_type.name(), if self.split { "_split" } else { "" })
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        let mut d = defines_with(WG_SIZE, &[("SPLIT", self.split)]);
        d.push(("KEY_LANES", format!("{KEY_LANES}u")));
        d
    }

    fn requires(&self) -> Requires {
        Requires { f16: self.cache_type == CacheType::F16, subgroups: false, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        key_variants!(AttentionKey { cache_type in [CacheType::F32, CacheType::F16], split in BOOLS })
    }
}

impl KernelKey for AttentionCombineKey {
    const FILE: &'static str = "attention.wgsl";
    fn bindings(&self) -> &'static [Access] {
        if self.lora_down {
            &[Access::Read, Access::ReadWrite, Access::ReadWrite, Access::Uniform]
        } else {
            &[Access::Read, Access::ReadWrite, Access::Uniform]
        }
    }

    fn name(&self) -> String {
        format!("attention_combine{}_wg{WG_SIZE}", if self.lora_down { "_lora_down" } else { "" })
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        let mut d = defines_with(WG_SIZE, &[("COMBINE", true), ("LORA_DOWN", self.lora_down)]);
        d.push(("MAX_SPLITS", format!("{SPLIT_TARGET_WORKGROUPS}u")));
        d
    }

    fn requires(&self) -> Requires {
        Requires::default()
    }

    fn all_variants() -> Vec<Self> {
        key_variants!(AttentionCombineKey { lora_down in BOOLS })
    }
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    let mut v = variants_of::<AttentionKey>()?;
    v.extend(variants_of::<AttentionCombineKey>()?);
    v.extend(variants_of::<AttentionTiledKey>()?);
    Ok(v)
}

/// A LoRA group's stacked down-projections `A` (`[rank_total][n_head · head_dim]`, from element 0) and, from
/// element `u_offset_elems` of the same buffer, each head's share of `u = A·out` that the merge writes:
/// `[n_tokens][n_head][rank_total]`, summed over the heads by the reader (the o mat-vec's epilogue).
#[derive(Debug, Clone, Copy)]
pub struct HeadsLoraDown<'a> {
    pub a_and_u: &'a GpuBuffer,
    pub rank_total: u32,
    pub u_offset_elems: u32,
}

/// Split decoding's scratch (at least `shape.partials_bytes()`, read by nothing else), and what the merge also
/// makes.
#[derive(Debug, Clone, Copy)]
pub struct SplitKv<'a> {
    pub partials: &'a GpuBuffer,
    /// Forces the split path (and its merge) even where one split covers every position.
    pub lora_down: Option<HeadsLoraDown<'a>>,
}

/// `out[t][h] = softmax(scale · q[t][h] · Kᵀ + mask) · V` for the query rows `q` ([n_tokens][n_head][head_dim]
/// f32) against the cache rings `k_cache`, `v_cache` ([kv_capacity][n_kv_head][head_dim] of `cache_type`), into
/// `out` (same layout as `q`). The mask is causal plus the sliding window, from absolute positions.
///
/// With `split` and few rows, as when decoding, each row's positions are split over several workgroups and
/// merged by a second dispatch; without it, or when the rows alone fill the device, one dispatch does it all: in
/// blocks of rows that share a kv head where the shape allows (`tiled::AttentionTiledKey::for_shape`).
pub fn attention(
    batch: &mut Batch,
    q: &GpuBuffer,
    k_cache: &GpuBuffer,
    v_cache: &GpuBuffer,
    out: &GpuBuffer,
    split: Option<&SplitKv>,
    shape: &AttentionShape,
) -> Result<()> {
    shape.validate()?;
    let fail = |reason: String| Err(GpuError::Unsupported { op: "attention".into(), reason });
    if shape.cache_type == CacheType::F16 && !batch.caps().f16 {
        return fail("an f16 KV cache needs SHADER_F16, which the device did not grant; allocate an f32 cache".into());
    }
    let q_bytes = shape.q_elems() * 4;
    let cache_bytes = shape.cache_elems() * shape.cache_type.elem_bytes();
    for (buffer, needed_bytes) in [(q, q_bytes), (out, q_bytes), (k_cache, cache_bytes), (v_cache, cache_bytes)] {
        if buffer.size_bytes() < needed_bytes {
            return fail(format!(
                "`{}` holds {} bytes, {shape:?} needs {needed_bytes}",
                buffer.label(),
                buffer.size_bytes()
            ));
        }
    }
    let inputs = [q, k_cache, v_cache];
    if inputs.iter().any(|b| b.id() == out.id()) {
        return fail(format!("the output `{}` is also an input; attention cannot run in place", out.label()));
    }
    let (n_splits, split_keys) = match split {
        Some(_) => shape.split_plan(),
        None => (1, shape.max_visible_keys()),
    };
    let max_per_dim = batch.max_workgroups_per_dimension();
    let cache_type = shape.cache_type;
    let mut params = AttentionParams::of(shape, split_keys);
    let Some(split) = split.filter(|s| n_splits > 1 || s.lora_down.is_some()) else {
        if let Some(tiled) = AttentionTiledKey::for_shape(shape) {
            return batch.dispatch(&tiled, &[q, k_cache, v_cache, out], &params, tiled.grid(shape, max_per_dim));
        }
        let grid = Grid::for_items(shape.rows(), 1, max_per_dim);
        return batch.dispatch(&AttentionKey { cache_type, split: false }, &[q, k_cache, v_cache, out], &params, grid);
    };
    let partials = split.partials;
    let partials_bytes = shape.rows() * n_splits * (shape.head_dim as u64 / 4 + 1) * 16;
    if partials.size_bytes() < partials_bytes {
        return fail(format!(
            "`{}` holds {} bytes, {n_splits} splits need {partials_bytes}",
            partials.label(),
            partials.size_bytes()
        ));
    }
    if inputs.iter().chain([&out]).any(|b| b.id() == partials.id()) {
        return fail(format!("the partials `{}` are also an input or the output", partials.label()));
    }
    let mut merge_buffers = vec![partials, out];
    if let Some(down) = split.lora_down {
        let a_elems = down.rank_total as u64 * shape.n_head as u64 * shape.head_dim as u64;
        let end_elems = down.u_offset_elems as u64 + shape.rows() * down.rank_total as u64;
        if down.rank_total == 0 || (down.u_offset_elems as u64) < a_elems || down.a_and_u.size_bytes() < end_elems * 4 {
            return fail(format!(
                "LoRA rank {} with u at element {} of `{}` ({} bytes; A has {a_elems} elements, u ends at {end_elems})",
                down.rank_total,
                down.u_offset_elems,
                down.a_and_u.label(),
                down.a_and_u.size_bytes()
            ));
        }
        if inputs.iter().chain([&out, &partials]).any(|b| b.id() == down.a_and_u.id()) {
            return fail(format!("the LoRA A and u `{}` are also another binding", down.a_and_u.label()));
        }
        merge_buffers.push(down.a_and_u);
        params.lora_rank_total = down.rank_total;
        params.lora_u_offset = down.u_offset_elems;
    }
    params.n_splits = n_splits as u32;
    let grid = Grid::for_items(shape.rows() * n_splits, 1, max_per_dim);
    batch.dispatch(&AttentionKey { cache_type, split: true }, &[q, k_cache, v_cache, partials], &params, grid)?;
    let merge = AttentionCombineKey { lora_down: split.lora_down.is_some() };
    batch.dispatch(&merge, &merge_buffers, &params, Grid::for_items(shape.rows(), 1, max_per_dim))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(
        n_tokens: u32,
        n_head: u32,
        n_kv_head: u32,
        head_dim: u32,
        kv_capacity: u32,
        q_pos0: u32,
        window: u32,
    ) -> AttentionShape {
        AttentionShape {
            n_tokens,
            n_head,
            n_kv_head,
            head_dim,
            kv_capacity,
            q_pos0,
            window,
            scale: 1.0,
            softcap: 0.0,
            cache_type: CacheType::F32,
        }
    }

    #[test]
    fn validation_rejects_what_the_kernel_cannot_do() {
        assert!(shape(1, 8, 1, 256, 512, 1000, 512).validate().is_ok());
        assert!(shape(1, 8, 3, 256, 512, 0, 0).validate().is_err(), "8 heads over 3 kv heads");
        assert!(shape(1, 8, 1, 30, 512, 0, 0).validate().is_err(), "head_dim not a multiple of 4");
        assert!(shape(1, 8, 1, 4 * WG_SIZE + 4, 512, 0, 0).validate().is_err(), "head_dim over 4 * WG_SIZE");
        assert!(shape(1, 8, 1, 64, 0, 0, 0).validate().is_err(), "no slots");
        // A sliding ring needs window + n_tokens - 1 slots once the window is full, and no more.
        assert!(shape(13, 8, 1, 64, 512 + 12, 1000, 512).validate().is_ok());
        assert!(shape(13, 8, 1, 64, 512 + 11, 1000, 512).validate().is_err());
        // Before the window fills, only the positions so far.
        assert!(shape(5, 8, 1, 64, 40, 30, 512).validate().is_ok());
        // A full layer needs every position; u32::MAX means no window.
        assert!(shape(1, 8, 1, 64, 100, 100, u32::MAX).validate().is_err());
        assert!(shape(1, 8, 1, 64, 101, 100, u32::MAX).validate().is_ok());
        assert!(shape(2, 8, 1, 64, 1024, u32::MAX - 1, 512).validate().is_err(), "positions overflow u32");
        assert!(shape(1, u32::MAX, 1, 64, 1, 0, 0).validate().is_err(), "indices overflow u32");
    }

    #[test]
    fn split_plans_cover_every_visible_position() {
        for (n_tokens, keys) in [(1, 1), (1, 31), (1, 33), (1, 512), (1, 1501), (13, 524), (64, 2048), (600, 4096)] {
            let s = shape(n_tokens, 8, 1, 512, keys, keys - n_tokens, 0);
            let (splits, split_keys) = s.split_plan();
            assert!(splits >= 1 && splits <= s.max_splits().max(1) && splits <= SPLIT_TARGET_WORKGROUPS);
            assert!(
                splits * split_keys >= keys as u64 && (splits - 1) * split_keys < keys as u64,
                "no empty trailing split"
            );
            assert!(splits == 1 || s.rows() * splits * (512 / 4 + 1) * 16 <= s.partials_bytes());
        }
    }
}
