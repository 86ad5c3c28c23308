// NeoX RoPE rotation of pair i at position p, shared by rope.wgsl and rms_norm_rope.wgsl:
//   θ_i = freq_scale · p · base^(−2i/n_dims) / ff_i,   base^(−2i/n_dims) = exp2(i · inv_freq_log2_step),
// the step −2·log2(base)/n_dims computed by the host in f64; ff_i = freq_factors[i] with FREQ_FACTORS (the including
// kernel declares `freq_factors: array<f32>`; Gemma 4 full layers: 1e30 turns a pair off), else 1. θ is an f32
// product like ggml's; it is reduced to [−π, π] with a two-part 2π (Cody–Waite), because GPU sin/cos lose accuracy for
// large arguments (θ ≈ 3e4 at position 32768). Then to [−π/4, π/4] and a quadrant, where cos and sin are Taylor
// polynomials accurate to f32 rounding: WGSL promises built-in sin/cos only to 2^-11 absolute on [−π, π], and
// Chromium's SwiftShader delivers about that (rope NMSE 4e-6 and tiny-model logits 7e-4 off HF, against 1e-10 and
// 2e-5 with these).

// 2π = TWO_PI_HI + TWO_PI_LO; TWO_PI_HI = 201/32 has 8 significant bits, so k·TWO_PI_HI is exact in f32 for
// k < 2^16 (positions up to ~400k at the highest frequency) and θ − k·TWO_PI_HI loses nothing.
const INV_TWO_PI: f32 = 0.15915494309189535;
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;
// π/2 = HALF_PI_HI + HALF_PI_LO; the quadrant k ∈ [−2, 2], so k·HALF_PI_HI is exact.
const TWO_OVER_PI: f32 = 0.6366197723675814;
const HALF_PI_HI: f32 = 1.5703125;
const HALF_PI_LO: f32 = 0.0004838267948966192;

// (cos r, sin r) for |r| ≤ π/4 + ε: Taylor terms through r^10 and r^9; the first left out is below 1.2e-10 and
// 1.8e-9, under half an f32 ulp of the results.
fn cos_sin_quarter(r: f32) -> vec2<f32> {
    let r2 = r * r;
    let c = 1.0 + r2 * (-0.5 + r2 * (4.1666666666666664e-2 + r2 * (-1.3888888888888889e-3
        + r2 * (2.48015873015873e-5 - r2 * 2.755731922398589e-7))));
    let s = r * (1.0 + r2 * (-0.16666666666666666 + r2 * (8.333333333333333e-3 + r2 * (-1.984126984126984e-4
        + r2 * 2.7557319223985893e-6))));
    return vec2<f32>(c, s);
}

// (cos r, sin r) for |r| ≤ π (+ rounding): the quarter-turn k = round(2r/π) rotates (cos, sin) of the rest.
fn cos_sin_reduced(r: f32) -> vec2<f32> {
    let k = round(r * TWO_OVER_PI);
    let cs = cos_sin_quarter((r - k * HALF_PI_HI) - k * HALF_PI_LO);
    switch (i32(k) & 3) {
        case 1: { return vec2<f32>(-cs.y, cs.x); }
        case 2: { return vec2<f32>(-cs.x, -cs.y); }
        case 3: { return vec2<f32>(cs.y, -cs.x); }
        default: { return cs; }
    }
}

// (cos θ_i, sin θ_i).
fn rope_cos_sin(p: f32, i: u32, inv_freq_log2_step: f32, freq_scale: f32) -> vec2<f32> {
    var theta = p * exp2(f32(i) * inv_freq_log2_step);
#ifdef FREQ_FACTORS
    theta = theta / freq_factors[i];
#endif
    theta = freq_scale * theta;
    let k = round(theta * INV_TWO_PI);
    let r = (theta - k * TWO_PI_HI) - k * TWO_PI_LO;
    return cos_sin_reduced(r);
}

// (x0, x1) rotated by the angle whose (cos, sin) is cs: (x0·cos − x1·sin, x0·sin + x1·cos).
fn rope_rotate(x0: f32, x1: f32, cs: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(x0 * cs.x - x1 * cs.y, x0 * cs.y + x1 * cs.x);
}
