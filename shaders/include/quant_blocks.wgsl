// Weight blocks in ggml's GGUF layout, read through u32 words: one guarded decoder per weight type (the K-quants in
// quant_kblocks.wgsl). The including kernel declares `weights: array<u32>` (the raw tensor bytes, padded to 4).
// Exactly one type define is set: DENSE_F32, DENSE_F16, DENSE_BF16 (not `F16`: that name switches on shader-f16),
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4K, Q5K or Q6K. Every type has the same interface, so kernels never branch on it:
//   BLOCK_BYTES, BLOCK_ELEMS; GROUPS_PER_BLOCK groups of 8 elements per block (dense types: a pseudo-block of 8);
//   group_runs(g) -> vec2<u32>: group g is two runs of 4 elements, at these offsets in the block (multiples of 4);
//   dequant8(block_byte, g) -> Group8: the two runs of group g of the block at byte `block_byte`, in f32.
// A group is what one word of packed quants holds (e.g. low and high nibbles of 4 bytes: elements l..l+3 and
// l+32..l+35 in Q4_K), so consecutive invocations taking consecutive groups read consecutive words of W, and the
// activations they need are whole vec4s. Kernels that tile k just use the runs' positions for x as well.
// The arithmetic follows ggml's dequantize_row_* (and candle's to_float) operation for operation, so a gather
// matches the CPU dequantization exactly up to fused multiply-add contraction. Block layouts: ggml-common.h.

#include "include/quant_math.wgsl"

struct Group8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// The 4 bytes at `byte_off`, which must be even: ggml blocks are 2-byte aligned (Q4_0 = 18 bytes, Q6_K = 210),
// so a word may straddle two u32s. Branch-free: an aligned offset reads its word twice, never past it.
fn load_u32(byte_off: u32) -> u32 {
    let w = byte_off >> 2u;
    let odd = (byte_off >> 1u) & 1u;
    let lo = weights[w];
    let hi = weights[w + odd];
    return select(lo, (lo >> 16u) | (hi << 16u), odd == 1u);
}

// The 16-bit value at the even `byte_off`.
fn load_u16(byte_off: u32) -> u32 {
    return (weights[byte_off >> 2u] >> ((byte_off & 2u) * 8u)) & 0xffffu;
}

// An IEEE half at the even `byte_off`, widened exactly (no shader-f16 needed).
fn load_f16(byte_off: u32) -> f32 {
    return f16_to_f32(load_u16(byte_off));
}

#ifdef DENSE_F32
const BLOCK_BYTES: u32 = 32u;
const BLOCK_ELEMS: u32 = 8u;
const GROUPS_PER_BLOCK: u32 = 1u;
fn group_runs(g: u32) -> vec2<u32> { return vec2<u32>(0u, 4u); }
fn dequant8(block_byte: u32, g: u32) -> Group8 {
    let w = block_byte >> 2u;
    let lo = vec4<u32>(weights[w], weights[w + 1u], weights[w + 2u], weights[w + 3u]);
    let hi = vec4<u32>(weights[w + 4u], weights[w + 5u], weights[w + 6u], weights[w + 7u]);
    return Group8(bitcast<vec4<f32>>(lo), bitcast<vec4<f32>>(hi));
}
#endif

#ifdef DENSE_F16
const BLOCK_BYTES: u32 = 16u;
const BLOCK_ELEMS: u32 = 8u;
const GROUPS_PER_BLOCK: u32 = 1u;
fn group_runs(g: u32) -> vec2<u32> { return vec2<u32>(0u, 4u); }
fn dequant8(block_byte: u32, g: u32) -> Group8 {
    let w = block_byte >> 2u;
    let lo = vec4<f32>(f16x2_to_f32(weights[w]), f16x2_to_f32(weights[w + 1u]));
    return Group8(lo, vec4<f32>(f16x2_to_f32(weights[w + 2u]), f16x2_to_f32(weights[w + 3u])));
}
#endif

#ifdef DENSE_BF16
const BLOCK_BYTES: u32 = 16u;
const BLOCK_ELEMS: u32 = 8u;
const GROUPS_PER_BLOCK: u32 = 1u;
fn group_runs(g: u32) -> vec2<u32> { return vec2<u32>(0u, 4u); }
fn dequant8(block_byte: u32, g: u32) -> Group8 {
    let w = block_byte >> 2u;
    let lo = vec4<f32>(bf16_pair(weights[w]), bf16_pair(weights[w + 1u]));
    return Group8(lo, vec4<f32>(bf16_pair(weights[w + 2u]), bf16_pair(weights[w + 3u])));
}
#endif

// Q4_0 / Q4_1 / Q5_0 / Q5_1: blocks of 32; element j < 16 is the low nibble of qs[j], element j + 16 its high
// nibble, and in the Q5 types bit j of the 32-bit qh is element j's fifth bit (value 16). Group g = qs bytes
// 4g..4g+3: elements 4g..4g+3 (low nibbles) and 16+4g..16+4g+3 (high nibbles).
#ifdef Q4_0
const BLOCK_BYTES: u32 = 18u; // d: f16, qs: 16 bytes
const BLOCK_ELEMS: u32 = 32u;
const GROUPS_PER_BLOCK: u32 = 4u;
fn group_runs(g: u32) -> vec2<u32> { return vec2<u32>(4u * g, 16u + 4u * g); }
fn dequant8(block_byte: u32, g: u32) -> Group8 {
    let d = load_f16(block_byte);
    let q = load_u32(block_byte + 2u + 4u * g);
    return Group8((vec4<f32>(nibbles4(q, 0u)) - 8.0) * d, (vec4<f32>(nibbles4(q, 4u)) - 8.0) * d);
}
#endif

#ifdef Q4_1
const BLOCK_BYTES: u32 = 20u; // d: f16, m: f16, qs: 16 bytes (20-byte blocks are word-aligned)
const BLOCK_ELEMS: u32 = 32u;
const GROUPS_PER_BLOCK: u32 = 4u;
fn group_runs(g: u32) -> vec2<u32> { return vec2<u32>(4u * g, 16u + 4u * g); }
fn dequant8(block_byte: u32, g: u32) -> Group8 {
    let w = block_byte >> 2u;
    let dm = f16x2_to_f32(weights[w]);
    let q = weights[w + 1u + g];
    return Group8(vec4<f32>(nibbles4(q, 0u)) * dm.x + dm.y, vec4<f32>(nibbles4(q, 4u)) * dm.x + dm.y);
}
#endif

#ifdef Q5_0
const BLOCK_BYTES: u32 = 22u; // d: f16, qh: 4 bytes, qs: 16 bytes
const BLOCK_ELEMS: u32 = 32u;
const GROUPS_PER_BLOCK: u32 = 4u;
fn group_runs(g: u32) -> vec2<u32> { return vec2<u32>(4u * g, 16u + 4u * g); }
fn dequant8(block_byte: u32, g: u32) -> Group8 {
    let d = load_f16(block_byte);
    let qh = load_u32(block_byte + 2u) >> (4u * g);
    let q = load_u32(block_byte + 6u + 4u * g);
    let lo = nibbles4(q, 0u) | high4(qh);
    let hi = nibbles4(q, 4u) | high4(qh >> 16u);
    return Group8((vec4<f32>(lo) - 16.0) * d, (vec4<f32>(hi) - 16.0) * d);
}
#endif

#ifdef Q5_1
const BLOCK_BYTES: u32 = 24u; // d: f16, m: f16, qh: 4 bytes, qs: 16 bytes (all word-aligned)
const BLOCK_ELEMS: u32 = 32u;
const GROUPS_PER_BLOCK: u32 = 4u;
fn group_runs(g: u32) -> vec2<u32> { return vec2<u32>(4u * g, 16u + 4u * g); }
fn dequant8(block_byte: u32, g: u32) -> Group8 {
    let w = block_byte >> 2u;
    let dm = f16x2_to_f32(weights[w]);
    let qh = weights[w + 1u] >> (4u * g);
    let q = weights[w + 2u + g];
    let lo = nibbles4(q, 0u) | high4(qh);
    let hi = nibbles4(q, 4u) | high4(qh >> 16u);
    return Group8(vec4<f32>(lo) * dm.x + dm.y, vec4<f32>(hi) * dm.x + dm.y);
}
#endif

// Q8_0: group g = the 8 signed bytes 8g..8g+7.
#ifdef Q8_0
const BLOCK_BYTES: u32 = 34u; // d: f16, qs: 32 × i8
const BLOCK_ELEMS: u32 = 32u;
const GROUPS_PER_BLOCK: u32 = 4u;
fn group_runs(g: u32) -> vec2<u32> { return vec2<u32>(8u * g, 8u * g + 4u); }
// The four signed bytes of a word: shift each to the top, then arithmetic-shift back.
fn sbytes4(w: u32) -> vec4<f32> {
    return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}
fn dequant8(block_byte: u32, g: u32) -> Group8 {
    let d = load_f16(block_byte);
    let qs = block_byte + 2u + 8u * g;
    return Group8(sbytes4(load_u32(qs)) * d, sbytes4(load_u32(qs + 4u)) * d);
}
#endif

#include "include/quant_kblocks.wgsl"
