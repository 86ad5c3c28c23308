// rope, NeoX pairing (ggml `rope` mode NEOX, HF rotate_half): x is [n_tokens][n_heads][head_dim] f32, row
// r = token·n_heads + head at absolute position p = positions[token]. For pair i < n_dims/2, elements i and
// i + n_dims/2 rotate by θ_i = freq_scale · p · base^(−2i/n_dims) / ff_i (include/rope_angle.wgsl):
//   (x_i, x_{i+n_dims/2}) ← (x_i·cos θ − x_{i+n_dims/2}·sin θ,  x_i·sin θ + x_{i+n_dims/2}·cos θ).
// Elements n_dims..head_dim pass through. ff_i = freq_factors[i] with FREQ_FACTORS (Gemma 4 full layers: 1e30
// turns a pair off), else 1.
// With INPLACE x is rewritten in place and the pass-through elements are not touched. With BACK the kernel is
// rope's input gradient (training): each pair turns by −θ, the transpose of the rotation, and dy stands for x.
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

#include "include/rope_angle.wgsl"

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
    var cs = rope_cos_sin(p, t, params.inv_freq_log2_step, params.freq_scale);
#ifdef BACK
    cs.y = -cs.y;
#endif
    let y = rope_rotate(load(base + t), load(base + t + half), cs);
    dst[base + t] = y.x;
    dst[base + t + half] = y.y;
}
