// rms_norm_rope: a per-head RMSNorm with weight, then NeoX RoPE (ggml rms_norm + mul + rope, fused), in f32; with
// KV_WRITE also the KV-cache write of the result (+ set_rows) and of the V heads beside it.
// Rows are heads: row r < n_rows of head_dim values belongs to token t = r / n_heads, head r % n_heads, at
// position positions[t]. x = src[r] / sqrt(mean(src[r]²) + eps) ⊙ weight; pairs (i, i + n_dims/2), i < n_dims/2,
// rotate by θ_i (include/rope_angle.wgsl); elements n_dims..head_dim pass through normalized.
//   plain:    dst[r] = rope(x)                                           (the queries)
//   KV_WRITE: k_cache[slots[t]][head] = rope(x)                          (the keys; workgroups 0..n_rows)
//             v_cache[slots[t]][head] = v[r] / sqrt(mean(v[r]²) + eps)   (workgroups n_rows..2·n_rows; without
//             V_NORM, Gemma 3, a plain copy)
//   A slot ≥ n_dst_rows is not written (as set_rows). Caches are f32, or f16 with F16 (store rounds to nearest).
// Bindings (group 0), plain: 0 src: array<f32> read, 1 weight: array<f32> read (head_dim), 2 positions: array<u32>
// read, 3 freq_factors: array<f32> read (n_dims/2; without FREQ_FACTORS the dispatcher binds positions as a
// stand-in), 4 dst: array<f32> read_write, 5 params uniform.
// KV_WRITE: 0 k: array<f32> read, 1 v: array<f32> read (may be k itself), 2 weight, 3 positions, 4 freq_factors,
// 5 slots: array<u32> read, 6 k_cache: array<T> read_write, 7 v_cache: array<T> read_write, 8 params uniform.
// Dispatch: one workgroup of WG_SIZE per row (per K row, then per V row): Grid::for_items(rows, 1); the sum of
// squares is include/row_rms.wgsl (subgroups when SUBGROUPS).

#ifdef F16
alias T = f16;
#else
alias T = f32;
#endif

#include "include/reduce.wgsl"
#include "include/row_rms.wgsl"

struct Params {
    n_rows: u32,
    n_heads: u32,
    head_dim: u32,
    n_dims: u32,
    inv_freq_log2_step: f32,
    freq_scale: f32,
    eps: f32,
    // Slots in each cache (KV_WRITE).
    n_dst_rows: u32,
}

#ifdef KV_WRITE
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> v_src: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> positions: array<u32>;
@group(0) @binding(4) var<storage, read> freq_factors: array<f32>;
@group(0) @binding(5) var<storage, read> slots: array<u32>;
@group(0) @binding(6) var<storage, read_write> dst: array<T>;
@group(0) @binding(7) var<storage, read_write> v_cache: array<T>;
@group(0) @binding(8) var<uniform> params: Params;
#else
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> freq_factors: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<T>;
@group(0) @binding(5) var<uniform> params: Params;
#endif

#include "include/rope_angle.wgsl"

#ifdef KV_WRITE
// Whether this workgroup normalizes a V row rather than a K row (uniform across the workgroup).
var<private> reads_v: bool;

fn norm_input(i: u32) -> f32 {
    return select(src[i], v_src[i], reads_v);
}
#else
fn norm_input(i: u32) -> f32 {
    return src[i];
}
#endif

#include "include/row_entry.wgsl"

fn row_main(wg: u32, lane: Lane) {
    let lid = lane.index;
#ifdef KV_WRITE
    let is_v = wg >= params.n_rows;
    let row = select(wg, wg - params.n_rows, is_v);
    if wg >= 2u * params.n_rows {
        return;
    }
#else
    let row = wg;
    if row >= params.n_rows {
        return;
    }
#endif
    let hd = params.head_dim;
    let base = row * hd;
    let token = row / params.n_heads;
#ifdef KV_WRITE
    reads_v = is_v;
#endif
    let inv_rms = row_inv_rms(base, hd, params.eps, lane);

#ifdef KV_WRITE
    let slot = slots[token];
    if slot >= params.n_dst_rows {
        return;
    }
    let out_base = (slot * params.n_heads + row % params.n_heads) * hd;
    if is_v {
        for (var c = lid; c < hd; c += WG_SIZE) {
#ifdef V_NORM
            v_cache[out_base + c] = T(v_src[base + c] * inv_rms);
#else
            v_cache[out_base + c] = T(v_src[base + c]);
#endif
        }
        return;
    }
#else
    let out_base = base;
#endif
    let half = params.n_dims / 2u;
    let p = f32(positions[token]);
    for (var i = lid; i < half; i += WG_SIZE) {
        let x0 = src[base + i] * inv_rms * weight[i];
        let x1 = src[base + i + half] * inv_rms * weight[i + half];
        let y = rope_rotate(x0, x1, rope_cos_sin(p, i, params.inv_freq_log2_step, params.freq_scale));
        dst[out_base + i] = T(y.x);
        dst[out_base + i + half] = T(y.y);
    }
    for (var c = params.n_dims + lid; c < hd; c += WG_SIZE) {
        dst[out_base + c] = T(src[base + c] * inv_rms * weight[c]);
    }
}
