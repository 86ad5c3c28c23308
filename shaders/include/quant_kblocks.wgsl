// K-quant super-blocks of 256 elements (Q4_K, Q5_K, Q6_K) for include/quant_blocks.wgsl, which includes this file
// and documents the interface (BLOCK_BYTES, BLOCK_ELEMS, GROUPS_PER_BLOCK, group_runs, dequant8).
// Layouts and arithmetic: ggml-common.h block_q4_K / block_q5_K / block_q6_K and dequantize_row_q*_K.

// Shared by Q4K and Q5K, whose keys also define SCALE_MIN_K4.
#ifdef SCALE_MIN_K4
// Group g = qs word g: its low nibbles are elements l..l+3 of sub-block 2c and its high nibbles the same of
// sub-block 2c + 1 (c = g / 8, l = 4 (g % 8)). Value = (d·scale)·q − (dmin·min), both products rounded first as
// in ggml. Returns (d·scale, dmin·min) of the low sub-block in .xy and of the high one in .zw.
fn scales_k4(block_word: u32, c: u32) -> vec4<f32> {
    let dmin = f16x2_to_f32(weights[block_word]);
    let sc = vec3<u32>(weights[block_word + 1u], weights[block_word + 2u], weights[block_word + 3u]);
    let a = scale_min_k4(2u * c, sc);
    let b = scale_min_k4(2u * c + 1u, sc);
    return vec4<f32>(dmin.x * a.x, dmin.y * a.y, dmin.x * b.x, dmin.y * b.y);
}

fn runs_k4(g: u32) -> vec2<u32> {
    let first = 64u * (g >> 3u) + 4u * (g & 7u);
    return vec2<u32>(first, first + 32u);
}
#endif

#ifdef Q4K
const BLOCK_BYTES: u32 = 144u; // d, dmin: f16; scales: 12 bytes; qs: 128 bytes (all word-aligned)
const BLOCK_ELEMS: u32 = 256u;
const GROUPS_PER_BLOCK: u32 = 32u;
fn group_runs(g: u32) -> vec2<u32> { return runs_k4(g); }
fn dequant8(block_byte: u32, g: u32) -> Group8 {
    let w = block_byte >> 2u;
    let s = scales_k4(w, g >> 3u);
    let q = weights[w + 4u + g];
    return Group8(s.x * vec4<f32>(nibbles4(q, 0u)) - s.y, s.z * vec4<f32>(nibbles4(q, 4u)) - s.w);
}
#endif

// Q5_K adds a fifth bit per element from qh[32]: element l of sub-block s takes bit s of qh[l].
#ifdef Q5K
const BLOCK_BYTES: u32 = 176u; // d, dmin: f16; scales: 12; qh: 32; qs: 128 (all word-aligned)
const BLOCK_ELEMS: u32 = 256u;
const GROUPS_PER_BLOCK: u32 = 32u;
fn group_runs(g: u32) -> vec2<u32> { return runs_k4(g); }
fn dequant8(block_byte: u32, g: u32) -> Group8 {
    let w = block_byte >> 2u;
    let c = g >> 3u;
    let s = scales_k4(w, c);
    let q = weights[w + 12u + g];
    let qh = bytes4(weights[w + 4u + (g & 7u)]) >> vec4<u32>(2u * c);
    let lo = nibbles4(q, 0u) | ((qh & vec4<u32>(1u)) << vec4<u32>(4u));
    let hi = nibbles4(q, 4u) | ((qh & vec4<u32>(2u)) << vec4<u32>(3u));
    return Group8(s.x * vec4<f32>(lo) - s.y, s.z * vec4<f32>(hi) - s.w);
}
#endif

// Q6_K: two halves of 128; in half n, element 32·qd + l (quarter qd, l < 32) takes the low (qd 0, 1) or high
// (qd 2, 3) nibble of ql[64n + 32(qd % 2) + l] and bits 2qd..2qd+1 of qh[32n + l], minus 32, times
// d·scales[8n + l/16 + 2qd] (i8). Group g = ql word j = g % 16 of half n = g / 16: its low nibbles are quarter
// qd = j / 8, its high nibbles quarter qd + 2, at l = 4 (j % 8). Blocks are 210 bytes, so only 2-byte aligned:
// every read goes through load_u32/load_u16.
#ifdef Q6K
const BLOCK_BYTES: u32 = 210u; // ql: 128; qh: 64; scales: 16 × i8; d: f16
const BLOCK_ELEMS: u32 = 256u;
const GROUPS_PER_BLOCK: u32 = 32u;
fn group_runs(g: u32) -> vec2<u32> {
    let first = 128u * (g >> 4u) + 32u * ((g >> 3u) & 1u) + 4u * (g & 7u);
    return vec2<u32>(first, first + 64u);
}
fn dequant8(block_byte: u32, g: u32) -> Group8 {
    let n = g >> 4u;
    let qd = (g >> 3u) & 1u; // quarter of the low nibbles; the high nibbles are quarter qd + 2
    let l = 4u * (g & 7u);
    let ql = load_u32(block_byte + 4u * g); // = 64n + 32qd + l
    let qh = bytes4(load_u32(block_byte + 128u + 32u * n + l)) >> vec4<u32>(2u * qd);
    let lo = nibbles4(ql, 0u) | ((qh & vec4<u32>(3u)) << vec4<u32>(4u));
    let hi = nibbles4(ql, 4u) | (((qh >> vec4<u32>(4u)) & vec4<u32>(3u)) << vec4<u32>(4u));
    // scales[8n + l/16 + 2qd] (low) and 4 bytes on (high): bytes of the 2-byte-aligned block, read as u16s.
    let sc_byte = block_byte + 192u + 8u * n + l / 16u + 2u * qd;
    let sc_lo = (load_u16(sc_byte & ~1u) >> (8u * (sc_byte & 1u))) & 0xffu;
    let sc_hi = (load_u16((sc_byte + 4u) & ~1u) >> (8u * (sc_byte & 1u))) & 0xffu;
    let sc = vec2<f32>(bitcast<vec2<i32>>(vec2<u32>(sc_lo, sc_hi) << vec2<u32>(24u)) >> vec2<u32>(24u));
    let ds = load_f16(block_byte + 208u) * sc;
    return Group8(ds.x * (vec4<f32>(lo) - 32.0), ds.y * (vec4<f32>(hi) - 32.0));
}
#endif
