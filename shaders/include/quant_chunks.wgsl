// Weight rows read in chunks of 32 elements for the mat-vec: one guarded reader per weight type (K-quants in
// quant_kchunks.wgsl), each reading its chunk with as few and as wide loads as the layout allows and decoding it
// into integer-valued floats with per-run factors, so the dot product needs one multiply-add per weight:
//   value(run r, element i) = scale[r] · q_r[i] − offset[r]      (ggml's dequantization, factored)
//   dot(chunk, x) = scale.x · Σ q_lo·x_lo + scale.y · Σ q_hi·x_hi − offset.x · Σ x_lo − offset.y · Σ x_hi
// A chunk is two runs of 16 elements (`lo`, `hi`), at row element offsets chunk_runs(c); chunk c of a row lies in
// block c / CHUNKS_PER_BLOCK. Exactly one type define is set (as in quant_blocks.wgsl). This file sets
// VEC4_WEIGHTS for the types whose blocks are 16-byte aligned in every row (Q4_K, Q5_K, dense): the kernel then
// declares `weights: array<vec4<u32>>` and provides `w128(word) -> vec4<u32>` (word a multiple of 4); otherwise
// `weights: array<u32>` and `w32(word) -> u32`. Blocks of 18/22/34/210 bytes start on 2-byte boundaries: their
// readers load the covering aligned words once and shift pairs (`funnel16`) when the block starts mid-word.
// DENSE_TAIL (dense types, whose rows need only be multiples of 8): the last chunk may pass the row's end; its
// loads are clamped into the row and the kernel zeroes x there.

#include "include/quant_math.wgsl"

struct Chunk {
    lo: mat4x4<f32>,
    hi: mat4x4<f32>,
    scale: vec2<f32>,
    offset: vec2<f32>,
}

// The word that starts 2 bytes into `lo`: its high half, then the low half of `hi`.
fn funnel16(lo: vec4<u32>, hi: vec4<u32>) -> vec4<u32> {
    return (lo >> vec4<u32>(16u)) | (hi << vec4<u32>(16u));
}

// Runs are decoded a word at a time: masks and shifts act on the 4 byte lanes of a word at once, so each weight
// costs about one extraction, one OR and one subtraction (u_to_f32) before its multiply-add.
// Four words of 4 byte-sized integers (each < 2^8) as the 16 floats of a run, word i → column i.
fn byte_run(q: vec4<u32>) -> mat4x4<f32> {
    return mat4x4<f32>(u_to_f32(bytes4(q.x)), u_to_f32(bytes4(q.y)), u_to_f32(bytes4(q.z)), u_to_f32(bytes4(q.w)));
}

// The low (shift 0) or high (shift 4) nibbles of four words of packed quants, one per byte lane.
fn nibbles(q: vec4<u32>, shift: u32) -> vec4<u32> {
    return (q >> vec4<u32>(shift)) & vec4<u32>(0x0f0f0f0fu);
}

// Bits 0..3 of `b` spread to bit 0 of byte lanes 0..3: the product puts bit i at bits i, i+7, i+14, i+21, and only
// bit i of lane i survives the mask.
fn spread4(b: u32) -> u32 {
    return ((b & 15u) * 0x00204081u) & 0x01010101u;
}

#ifdef DENSE_F32
#define VEC4_WEIGHTS
#define DENSE_TAIL
const CHUNKS_PER_BLOCK: u32 = 1u;
const VEC4_PER_CHUNK: u32 = 8u;
fn dense_run(v: u32, last: u32) -> mat4x4<f32> {
    return mat4x4<f32>(
        bitcast<vec4<f32>>(w128(4u * min(v, last))),
        bitcast<vec4<f32>>(w128(4u * min(v + 1u, last))),
        bitcast<vec4<f32>>(w128(4u * min(v + 2u, last))),
        bitcast<vec4<f32>>(w128(4u * min(v + 3u, last))),
    );
}
#endif

#ifdef DENSE_F16
#define VEC4_WEIGHTS
#define DENSE_TAIL
const CHUNKS_PER_BLOCK: u32 = 1u;
const VEC4_PER_CHUNK: u32 = 4u;
fn half8(w: vec4<u32>) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(vec4<f32>(f16x2_to_f32(w.x), f16x2_to_f32(w.y)), vec4<f32>(f16x2_to_f32(w.z), f16x2_to_f32(w.w)));
}
fn dense_run(v: u32, last: u32) -> mat4x4<f32> {
    let a = half8(w128(4u * min(v, last)));
    let b = half8(w128(4u * min(v + 1u, last)));
    return mat4x4<f32>(a[0], a[1], b[0], b[1]);
}
#endif

#ifdef DENSE_BF16
#define VEC4_WEIGHTS
#define DENSE_TAIL
const CHUNKS_PER_BLOCK: u32 = 1u;
const VEC4_PER_CHUNK: u32 = 4u;
fn bf16x8(w: vec4<u32>) -> array<vec4<f32>, 2> {
    return array<vec4<f32>, 2>(vec4<f32>(bf16_pair(w.x), bf16_pair(w.y)), vec4<f32>(bf16_pair(w.z), bf16_pair(w.w)));
}
fn dense_run(v: u32, last: u32) -> mat4x4<f32> {
    let a = bf16x8(w128(4u * min(v, last)));
    let b = bf16x8(w128(4u * min(v + 1u, last)));
    return mat4x4<f32>(a[0], a[1], b[0], b[1]);
}
#endif

#ifdef DENSE_TAIL
// Dense rows: chunk c is elements 32c..32c+31, VEC4_PER_CHUNK vec4s from the row start; a vec4 past the row's last
// one (k elements) repeats it, and the kernel zeroes the x it meets.
fn chunk_runs(c: u32) -> vec2<u32> {
    return vec2<u32>(32u * c, 32u * c + 16u);
}
fn load_chunk(row_byte: u32, c: u32, k: u32) -> Chunk {
    let first = row_byte / 16u;
    let last = first + k * VEC4_PER_CHUNK / 32u - 1u;
    let v = first + VEC4_PER_CHUNK * c;
    return Chunk(dense_run(v, last), dense_run(v + VEC4_PER_CHUNK / 2u, last), vec2<f32>(1.0), vec2<f32>(0.0));
}
#endif

// Blocks of 32 (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): a chunk is one block; element j < 16 of Q4/Q5 is the low nibble of
// qs[j] (run lo), element 16 + j the high nibble (run hi); Q8_0 runs are bytes 0..15 and 16..31.
#ifdef Q4_0
const BLOCK_BYTES: u32 = 18u; // d: f16, qs: 16 bytes
const CHUNKS_PER_BLOCK: u32 = 1u;
fn load_chunk(row_byte: u32, c: u32, k: u32) -> Chunk {
    let b = row_byte + c * BLOCK_BYTES;
    let w = b >> 2u;
    let a = vec4<u32>(w32(w), w32(w + 1u), w32(w + 2u), w32(w + 3u));
    let e = w32(w + 4u);
    let odd = (b & 2u) != 0u; // the block starts mid-word: d is the high half of word 0, qs are aligned
    let d = f16_to_f32(select(a.x & 0xffffu, a.x >> 16u, odd));
    let qs = select(funnel16(a, vec4<u32>(a.yzw, e)), vec4<u32>(a.yzw, e), odd);
    return Chunk(byte_run(nibbles(qs, 0u)), byte_run(nibbles(qs, 4u)), vec2<f32>(d), vec2<f32>(8.0 * d));
}
#endif

#ifdef Q4_1
const BLOCK_BYTES: u32 = 20u; // d, m: f16; qs: 16 bytes (word-aligned)
const CHUNKS_PER_BLOCK: u32 = 1u;
fn load_chunk(row_byte: u32, c: u32, k: u32) -> Chunk {
    let w = (row_byte + c * BLOCK_BYTES) >> 2u;
    let dm = f16x2_to_f32(w32(w));
    let qs = vec4<u32>(w32(w + 1u), w32(w + 2u), w32(w + 3u), w32(w + 4u));
    return Chunk(byte_run(nibbles(qs, 0u)), byte_run(nibbles(qs, 4u)), vec2<f32>(dm.x), vec2<f32>(-dm.y));
}
#endif

// Q5: the fifth bit of element j is bit j of qh (value 16).
fn q5_runs(qs: vec4<u32>, qh: u32) -> array<mat4x4<f32>, 2> {
    let lo_bits = vec4<u32>(spread4(qh), spread4(qh >> 4u), spread4(qh >> 8u), spread4(qh >> 12u));
    let hi_bits = vec4<u32>(spread4(qh >> 16u), spread4(qh >> 20u), spread4(qh >> 24u), spread4(qh >> 28u));
    let lo = byte_run(nibbles(qs, 0u) | (lo_bits << vec4<u32>(4u)));
    let hi = byte_run(nibbles(qs, 4u) | (hi_bits << vec4<u32>(4u)));
    return array<mat4x4<f32>, 2>(lo, hi);
}

#ifdef Q5_0
const BLOCK_BYTES: u32 = 22u; // d: f16, qh: 4 bytes, qs: 16 bytes
const CHUNKS_PER_BLOCK: u32 = 1u;
fn load_chunk(row_byte: u32, c: u32, k: u32) -> Chunk {
    let b = row_byte + c * BLOCK_BYTES;
    let w = b >> 2u;
    let a = vec4<u32>(w32(w), w32(w + 1u), w32(w + 2u), w32(w + 3u));
    let e = vec2<u32>(w32(w + 4u), w32(w + 5u));
    let odd = (b & 2u) != 0u; // mid-word start: d high half of word 0, qh word 1, qs words 2..5
    let d = f16_to_f32(select(a.x & 0xffffu, a.x >> 16u, odd));
    let qh = select((a.x >> 16u) | (a.y << 16u), a.y, odd);
    let next = vec4<u32>(a.zw, e);
    let qs = select(funnel16(vec4<u32>(a.yzw, e.x), next), next, odd);
    let r = q5_runs(qs, qh);
    return Chunk(r[0], r[1], vec2<f32>(d), vec2<f32>(16.0 * d));
}
#endif

#ifdef Q5_1
const BLOCK_BYTES: u32 = 24u; // d, m: f16; qh: 4 bytes; qs: 16 bytes (word-aligned)
const CHUNKS_PER_BLOCK: u32 = 1u;
fn load_chunk(row_byte: u32, c: u32, k: u32) -> Chunk {
    let w = (row_byte + c * BLOCK_BYTES) >> 2u;
    let dm = f16x2_to_f32(w32(w));
    let qs = vec4<u32>(w32(w + 2u), w32(w + 3u), w32(w + 4u), w32(w + 5u));
    let r = q5_runs(qs, w32(w + 1u));
    return Chunk(r[0], r[1], vec2<f32>(dm.x), vec2<f32>(-dm.y));
}
#endif

#ifdef Q8_0
const BLOCK_BYTES: u32 = 34u; // d: f16, qs: 32 × i8
const CHUNKS_PER_BLOCK: u32 = 1u;
// Signed bytes flipped to unsigned (q + 128); the offset takes the 128 back out.
fn signed_byte_run(q: vec4<u32>) -> mat4x4<f32> {
    return byte_run(q ^ vec4<u32>(0x80808080u));
}
fn load_chunk(row_byte: u32, c: u32, k: u32) -> Chunk {
    let b = row_byte + c * BLOCK_BYTES;
    let w = b >> 2u;
    let a = vec4<u32>(w32(w), w32(w + 1u), w32(w + 2u), w32(w + 3u));
    let m = vec4<u32>(w32(w + 4u), w32(w + 5u), w32(w + 6u), w32(w + 7u));
    let e = w32(w + 8u);
    let odd = (b & 2u) != 0u; // mid-word start: d high half of word 0, qs words 1..8
    let d = f16_to_f32(select(a.x & 0xffffu, a.x >> 16u, odd));
    let a1 = vec4<u32>(a.yzw, m.x);
    let m1 = vec4<u32>(m.yzw, e);
    let lo = select(funnel16(a, a1), a1, odd);
    let hi = select(funnel16(m, m1), m1, odd);
    return Chunk(signed_byte_run(lo), signed_byte_run(hi), vec2<f32>(d), vec2<f32>(128.0 * d));
}
#endif

#ifdef Q4_0
#define BLOCK32
#endif
#ifdef Q4_1
#define BLOCK32
#endif
#ifdef Q5_0
#define BLOCK32
#endif
#ifdef Q5_1
#define BLOCK32
#endif
#ifdef Q8_0
#define BLOCK32
#endif
#ifdef BLOCK32
fn chunk_runs(c: u32) -> vec2<u32> {
    return vec2<u32>(32u * c, 32u * c + 16u);
}
#endif

#include "include/quant_kchunks.wgsl"
