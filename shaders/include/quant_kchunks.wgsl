// K-quant super-blocks of 256 in chunks of 32 for include/quant_chunks.wgsl, which includes this file and documents
// the interface (Chunk, chunk_runs, load_chunk, CHUNKS_PER_BLOCK, VEC4_WEIGHTS). Layouts and arithmetic:
// ggml-common.h block_q4_K / block_q5_K / block_q6_K and dequantize_row_q*_K; chunk c of a block is 16 bytes of its
// qs (or ql), so eight neighbouring invocations read one block's quants as eight neighbouring 16-byte loads.

// Q4_K / Q5_K chunk c (0..7) of a block: qs bytes 16c..16c+15 hold elements l = 16 (c % 2) + 0..15 of the pair of
// sub-blocks p = c / 2: low nibbles are sub-block 2p (run lo, elements 64p + l), high nibbles sub-block 2p + 1
// (run hi, 32 further). Value = (d·scale)·q − (dmin·min), each product rounded first as in ggml.
#ifdef Q4K
#define VEC4_WEIGHTS
#define K4_CHUNKS
#endif
#ifdef Q5K
#define VEC4_WEIGHTS
#define K4_CHUNKS
#endif

#ifdef K4_CHUNKS
const CHUNKS_PER_BLOCK: u32 = 8u;
fn chunk_runs(c: u32) -> vec2<u32> {
    let lo = 256u * (c / 8u) + 64u * ((c % 8u) / 2u) + 16u * (c % 2u);
    return vec2<u32>(lo, lo + 32u);
}
// (scale, offset) of the two sub-blocks of pair p from the block's first 16 bytes (d, dmin, 12 scale bytes).
fn k4_factors(header: vec4<u32>, p: u32) -> array<vec2<f32>, 2> {
    let dm = f16x2_to_f32(header.x);
    let a = scale_min_k4(2u * p, header.yzw);
    let b = scale_min_k4(2u * p + 1u, header.yzw);
    return array<vec2<f32>, 2>(vec2<f32>(dm.x * a.x, dm.x * b.x), vec2<f32>(dm.y * a.y, dm.y * b.y));
}
#endif

#ifdef Q4K
const BLOCK_BYTES: u32 = 144u; // d, dmin: f16; scales: 12 bytes; qs: 128 bytes
fn load_chunk(row_byte: u32, c: u32, k: u32) -> Chunk {
    let w = (row_byte + (c / 8u) * BLOCK_BYTES) / 4u;
    let cb = c % 8u;
    let f = k4_factors(w128(w), cb / 2u);
    let qs = w128(w + 4u + 4u * cb);
    return Chunk(byte_run(nibbles(qs, 0u)), byte_run(nibbles(qs, 4u)), f[0], f[1]);
}
#endif

// Q5_K adds a fifth bit from qh[32]: element l of sub-block s takes bit s of qh[l] (qh bytes 16 (c % 2)..+16 for
// chunk c).
#ifdef Q5K
const BLOCK_BYTES: u32 = 176u; // d, dmin: f16; scales: 12; qh: 32; qs: 128
fn q5k_run(qs: vec4<u32>, qh: vec4<u32>, shift: u32, bit: u32) -> mat4x4<f32> {
    let high = ((qh >> vec4<u32>(bit)) & vec4<u32>(0x01010101u)) << vec4<u32>(4u);
    return byte_run(nibbles(qs, shift) | high);
}
fn load_chunk(row_byte: u32, c: u32, k: u32) -> Chunk {
    let w = (row_byte + (c / 8u) * BLOCK_BYTES) / 4u;
    let cb = c % 8u;
    let p = cb / 2u;
    let f = k4_factors(w128(w), p);
    let qh = w128(w + 4u + 4u * (cb % 2u));
    let qs = w128(w + 12u + 4u * cb);
    return Chunk(q5k_run(qs, qh, 0u, 2u * p), q5k_run(qs, qh, 4u, 2u * p + 1u), f[0], f[1]);
}
#endif

// Q6_K chunk c = 4n + 2s + j (half n, quarter pair s, sixteenth j): ql bytes 16c..16c+15 = ql[64n + 32s + 16j + l],
// l < 16, whose low nibbles are quarter s (run lo, elements 128n + 32s + 16j + l) and high nibbles quarter s + 2
// (run hi, 64 further); the top two bits come from qh[32n + 16j + l] (bits 2s, 2s + 4); scales
// sc[8n + j + 2s] and sc[8n + j + 2s + 4] (i8) times d. Value = (d·sc)·(q − 32), q in 0..63. 210-byte blocks
// start on 2-byte boundaries: the 16-byte runs are read as 5 aligned words and shifted when the block is odd.
#ifdef Q6K
const BLOCK_BYTES: u32 = 210u; // ql: 128; qh: 64; scales: 16 × i8; d: f16
const CHUNKS_PER_BLOCK: u32 = 8u;
fn chunk_runs(c: u32) -> vec2<u32> {
    let cb = c % 8u;
    let lo = 256u * (c / 8u) + 128u * (cb / 4u) + 32u * ((cb / 2u) % 2u) + 16u * (cb % 2u);
    return vec2<u32>(lo, lo + 64u);
}
// The 16 bytes at the even byte offset `b`.
fn bytes16_at(b: u32) -> vec4<u32> {
    let w = b >> 2u;
    let a = vec4<u32>(w32(w), w32(w + 1u), w32(w + 2u), w32(w + 3u));
    let next = vec4<u32>(a.yzw, w32(w + 4u));
    return select(a, funnel16(a, next), (b & 2u) != 0u);
}
// The byte at `b` as a signed integer.
fn i8_at(b: u32) -> f32 {
    let word = w32(b >> 2u);
    return f32(bitcast<i32>(word << (24u - 8u * (b & 3u))) >> 24u);
}
// Quarter values 0..63: a nibble of ql and two bits of qh (at `bits`) as bits 4..5, per byte lane.
fn q6k_run(ql: vec4<u32>, qh: vec4<u32>, shift: u32, bits: u32) -> mat4x4<f32> {
    let high = ((qh >> vec4<u32>(bits)) & vec4<u32>(0x03030303u)) << vec4<u32>(4u);
    return byte_run(nibbles(ql, shift) | high);
}
fn load_chunk(row_byte: u32, c: u32, k: u32) -> Chunk {
    let block = row_byte + (c / 8u) * BLOCK_BYTES;
    let cb = c % 8u;
    let n = cb / 4u;
    let s = (cb / 2u) % 2u;
    let j = cb % 2u;
    let ql = bytes16_at(block + 16u * cb);
    let qh = bytes16_at(block + 128u + 32u * n + 16u * j);
    let sc_byte = block + 192u + 8u * n + j + 2u * s;
    let d_byte = block + 208u;
    let d = f16_to_f32((w32(d_byte >> 2u) >> (8u * (d_byte & 2u))) & 0xffffu);
    let scale = d * vec2<f32>(i8_at(sc_byte), i8_at(sc_byte + 4u));
    return Chunk(q6k_run(ql, qh, 0u, 2u * s), q6k_run(ql, qh, 4u, 2u * s + 4u), scale, 32.0 * scale);
}
#endif
