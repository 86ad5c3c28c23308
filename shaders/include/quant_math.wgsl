// Pure decoding arithmetic shared by the block readers (quant_blocks.wgsl: groups of 8, through `weights:
// array<u32>`) and the chunk readers (quant_chunks.wgsl: runs of 16, through the mat-vec's own weight view). No
// memory access here, so any kernel can include it whatever its bindings.

// IEEE half bits (low 16 of `h`) widened exactly with integer ops: naga counts unpack2x16float as needing
// SHADER_FLOAT16_IN_FLOAT32, which the WebGPU baseline does not promise. Subnormals are scaled by 2^-24 as floats
// (exact) rather than built as f32 bits, so nothing depends on denormal support.
fn f16_to_f32(h: u32) -> f32 {
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    let sign = (h & 0x8000u) << 16u;
    let e32 = select(e + 112u, 255u, e == 31u); // 31 is inf/NaN
    let normal = sign | (e32 << 23u) | (m << 13u);
    let subnormal = sign | bitcast<u32>((bitcast<f32>(m | 0x4b000000u) - 8388608.0) * 5.9604644775390625e-8);
    return bitcast<f32>(select(normal, subnormal, e == 0u));
}

// Both halves of a word: (low, high).
fn f16x2_to_f32(w: u32) -> vec2<f32> {
    return vec2<f32>(f16_to_f32(w & 0xffffu), f16_to_f32(w >> 16u));
}

// The four bytes of a word, low byte first.
fn bytes4(w: u32) -> vec4<u32> {
    return (vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
}

// The four nibbles at bit `shift` (0 or 4) of each byte of a word.
fn nibbles4(w: u32, shift: u32) -> vec4<u32> {
    return (bytes4(w) >> vec4<u32>(shift)) & vec4<u32>(15u);
}

// Bits 0..3 of `b`, each as 0 or 1.
fn bits4(b: u32) -> vec4<u32> {
    return (vec4<u32>(b) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
}

// bits 0..3 of `b` as 0/1 shifted to value 16: the fifth bit of Q5 quants.
fn high4(b: u32) -> vec4<u32> {
    return bits4(b) << vec4<u32>(4u);
}

// A bf16 is the high half of an f32: element 2i is the low half-word of word i, shifted up.
fn bf16_pair(w: u32) -> vec2<f32> {
    return bitcast<vec2<f32>>(vec2<u32>(w << 16u, w & 0xffff0000u));
}

// Unsigned integers below 2^23 as f32, exactly: the integer becomes the mantissa of 2^23 + v, then 2^23 is
// subtracted. One OR and one subtraction instead of an int-to-float conversion, which runs at a quarter of the FMA
// rate or less on NVIDIA (sm_80/sm_90: 16 per clock per SM).
fn u_to_f32(v: vec4<u32>) -> vec4<f32> {
    return bitcast<vec4<f32>>(v | vec4<u32>(0x4b000000u)) - vec4<f32>(8388608.0);
}

// K-quant super-blocks (Q4_K, Q5_K): 8 sub-blocks of 32 with 6-bit scales and mins packed into 12 bytes (ggml's
// get_scale_min_k4). Sub-block s < 4: scale = byte s & 63, min = byte s+4 & 63; s >= 4: the low 4 bits come from
// byte s+4 (scale: low nibble, min: high nibble) and the top 2 bits from bytes s-4 (scale) and s (min). sc: the 12
// bytes as 3 words. Branch-free, since neighbouring invocations decode different sub-blocks.
fn scale_min_k4(s: u32, sc: vec3<u32>) -> vec2<f32> {
    let t = 8u * (s & 3u);
    let b0 = (sc.x >> t) & 0xffu; // byte s (s < 4) or s - 4
    let b1 = (sc.y >> t) & 0xffu; // byte s + 4 (s < 4) or s
    let b2 = (sc.z >> t) & 0xffu; // byte s + 4 (s >= 4)
    let low = vec2<u32>(b0 & 63u, b1 & 63u);
    let high = vec2<u32>((b2 & 15u) | ((b0 >> 6u) << 4u), (b2 >> 4u) | ((b1 >> 6u) << 4u));
    return vec2<f32>(select(high, low, s < 4u));
}

