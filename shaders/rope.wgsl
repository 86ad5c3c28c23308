// rope, NeoX pairing (ggml `rope` mode NEOX, HF rotate_half): x is [n_tokens][n_heads][head_dim] f32, row
// r = token·n_heads + head at absolute position p = positions[token]. For pair i < n_dims/2, elements i and
// i + n_dims/2 rotate by θ_i = freq_scale · p · base^(−2i/n_dims) / ff_i:
//   (x_i, x_{i+n_dims/2}) ← (x_i·cos θ − x_{i+n_dims/2}·sin θ,  x_i·sin θ + x_{i+n_dims/2}·cos θ).
// Elements n_dims..head_dim pass through. ff_i = freq_factors[i] with FREQ_FACTORS (Gemma 4 full layers: 1e30
// turns a pair off), else 1. base^(−2i/n_dims) = exp2(i·inv_freq_log2_step), the step −2·log2(base)/n_dims
// computed by the host in f64. θ is an f32 product like ggml's; it is reduced to [−π, π] with a two-part 2π
// (Cody–Waite) before cos/sin, because GPU sin/cos lose accuracy for large arguments (θ ≈ 3e4 at position 32768).
// With INPLACE x is rewritten in place and the pass-through elements are not touched.
// Bindings (group 0): 0 positions: array<u32> read, 1 freq_factors: array<f32> read (n_dims/2 values; without
// FREQ_FACTORS the dispatcher binds positions as a stand-in that is never read), then
//   INPLACE: 2 dst: array<f32> read_write (x), 3 params uniform;
//   else:    2 src: array<f32> read, 3 dst: array<f32> read_write, 4 params uniform.
// Dispatch: one invocation per item, WG_SIZE per workgroup, spread over x and y (Grid::for_items); a row has
// items_per_row items: n_dims/2 pairs, then (out of place) head_dim − n_dims pass-through copies.

struct Params {
    n_items: u32,
    items_per_row: u32,
    n_heads: u32,
    head_dim: u32,
    n_dims: u32,
    inv_freq_log2_step: f32,
    freq_scale: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> positions: array<u32>;
@group(0) @binding(1) var<storage, read> freq_factors: array<f32>;
#ifdef INPLACE
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
#else
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
#endif

// 2π = TWO_PI_HI + TWO_PI_LO; TWO_PI_HI = 201/32 has 8 significant bits, so k·TWO_PI_HI is exact in f32 for
// k < 2^16 (positions up to ~400k at the highest frequency) and θ − k·TWO_PI_HI loses nothing.
const INV_TWO_PI: f32 = 0.15915494309189535;
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;

fn load(i: u32) -> f32 {
#ifdef INPLACE
    return dst[i];
#else
    return src[i];
#endif
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let item = (wid.x + wid.y * nwg.x) * WG_SIZE + lid;
    if item >= params.n_items {
        return;
    }
    let row = item / params.items_per_row;
    let t = item % params.items_per_row;
    let base = row * params.head_dim;
    let half = params.n_dims / 2u;
#ifndef INPLACE
    if t >= half {
        let c = base + params.n_dims + (t - half);
        dst[c] = src[c];
        return;
    }
#endif
    let p = f32(positions[row / params.n_heads]);
    var theta = p * exp2(f32(t) * params.inv_freq_log2_step);
#ifdef FREQ_FACTORS
    theta = theta / freq_factors[t];
#endif
    theta = params.freq_scale * theta;
    let k = round(theta * INV_TWO_PI);
    let r = (theta - k * TWO_PI_HI) - k * TWO_PI_LO;
    let cos_r = cos(r);
    let sin_r = sin(r);
    let x0 = load(base + t);
    let x1 = load(base + t + half);
    dst[base + t] = x0 * cos_r - x1 * sin_r;
    dst[base + t + half] = x0 * sin_r + x1 * cos_r;
}
