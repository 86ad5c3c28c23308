// NeoX RoPE rotation of pair i at position p, shared by rope.wgsl and rms_norm_rope.wgsl:
//   θ_i = freq_scale · p · base^(−2i/n_dims) / ff_i,   base^(−2i/n_dims) = exp2(i · inv_freq_log2_step),
// the step −2·log2(base)/n_dims computed by the host in f64; ff_i = freq_factors[i] with FREQ_FACTORS (the including
// kernel declares `freq_factors: array<f32>`; Gemma 4 full layers: 1e30 turns a pair off), else 1. θ is an f32
// product like ggml's; it is reduced to [−π, π] with a two-part 2π (Cody–Waite) before cos/sin, because GPU sin/cos
// lose accuracy for large arguments (θ ≈ 3e4 at position 32768).

// 2π = TWO_PI_HI + TWO_PI_LO; TWO_PI_HI = 201/32 has 8 significant bits, so k·TWO_PI_HI is exact in f32 for
// k < 2^16 (positions up to ~400k at the highest frequency) and θ − k·TWO_PI_HI loses nothing.
const INV_TWO_PI: f32 = 0.15915494309189535;
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;

// (cos θ_i, sin θ_i).
fn rope_cos_sin(p: f32, i: u32, inv_freq_log2_step: f32, freq_scale: f32) -> vec2<f32> {
    var theta = p * exp2(f32(i) * inv_freq_log2_step);
#ifdef FREQ_FACTORS
    theta = theta / freq_factors[i];
#endif
    theta = freq_scale * theta;
    let k = round(theta * INV_TWO_PI);
    let r = (theta - k * TWO_PI_HI) - k * TWO_PI_LO;
    return vec2<f32>(cos(r), sin(r));
}

// (x0, x1) rotated by the angle whose (cos, sin) is cs: (x0·cos − x1·sin, x0·sin + x1·cos).
fn rope_rotate(x0: f32, x1: f32, cs: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(x0 * cs.x - x1 * cs.y, x0 * cs.y + x1 * cs.x);
}
