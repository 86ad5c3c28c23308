// rms_norm_add: a post-norm folded into the residual add that follows it (ggml rms_norm + mul + add (+ mul), fused).
// For each row r < n_rows of n_elems values, in f32:
//   h[r] = (residual[r] + src[r] / sqrt(mean(src[r]²) + eps) ⊙ weight) · s
// with s = scale[0] when SCALE is defined (Gemma 4's layer_output_scale on a layer's last add), else 1. With
// NEXT_NORM the workgroup, which already holds the whole new residual row, also writes the pre-norm of what
// consumes it (the next layer's attn_norm, the ffn_norm, or the final output_norm):
//   normed[r] = h[r] / sqrt(mean(h[r]²) + eps) ⊙ next_weight
// LORA_DOWN (with NEXT_NORM) also makes the LoRA down-projections of the group that reads `normed`,
//   u[r][j] = Σ_c A[j][c] · normed[r][c]     for j < rank_total,
// so a decode step needs no lora_down dispatch for it: extra workgroups, one per (row, j), each recompute their
// row's normed values (a few KB, cached) and reduce one row of A against them. A `[rank_total][n_elems]` and u
// `[n_rows][rank_total]` (at element u_offset, past A) share one buffer, which keeps the kernel within WebGPU's 8
// storage buffers per stage.
// Bindings (group 0): 0 src: array<f32> read, 1 weight: array<f32> read (n_elems), 2 residual: array<f32> read,
// 3 scale: array<f32> read (1 value; without SCALE the dispatcher binds src as a stand-in that is never read),
// 4 next_weight: array<f32> read (n_elems; stand-in without NEXT_NORM), 5 dst: array<f32> read_write (h), then
// NEXT_NORM: 6 normed: array<f32> read_write, then LORA_DOWN: 7 lora_au: array<f32> read_write (A, then u), and
// params uniform last (6, 7 or 8). dst, normed and lora_au must not alias any input or each other.
// Dispatch: n_rows · (1 + rank_total) workgroups of WG_SIZE (Grid::for_items; rank_total is 0 without LORA_DOWN):
// the first n_rows own one row each, the rest one (row, j) of u, j fastest. Each invocation owns a strided slice of
// the row; the sums go through include/reduce.wgsl and include/row_rms.wgsl (subgroups when SUBGROUPS).

#include "include/reduce.wgsl"
#include "include/row_rms.wgsl"

struct Params {
    n_rows: u32,
    n_elems: u32,
    eps: f32,
    // LORA_DOWN: A's rows, and where u starts in lora_au (elements); 0 otherwise.
    rank_total: u32,
    u_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> residual: array<f32>;
@group(0) @binding(3) var<storage, read> scale: array<f32>;
@group(0) @binding(4) var<storage, read> next_weight: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;
#ifdef NEXT_NORM
@group(0) @binding(6) var<storage, read_write> normed: array<f32>;
#ifdef LORA_DOWN
@group(0) @binding(7) var<storage, read_write> lora_au: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;
#else
@group(0) @binding(7) var<uniform> params: Params;
#endif
#else
@group(0) @binding(6) var<uniform> params: Params;
#endif

fn norm_input(i: u32) -> f32 {
    return src[i];
}

#include "include/row_entry.wgsl"

// The new residual's value at column c of the row starting at base, from the src row's inverse RMS.
fn residual_sum(base: u32, c: u32, inv_rms: f32) -> f32 {
    let h = residual[base + c] + src[base + c] * inv_rms * weight[c];
#ifdef SCALE
    return h * scale[0];
#else
    return h;
#endif
}

fn row_main(wg: u32, lane: Lane) {
#ifdef LORA_DOWN
    if wg >= params.n_rows {
        lora_down_row(wg - params.n_rows, lane);
        return;
    }
#endif
    let lid = lane.index;
    let row = wg;
    if row >= params.n_rows {
        return;
    }
    let n = params.n_elems;
    let base = row * n;
    let inv_rms = row_inv_rms(base, n, params.eps, lane);
    var partial_h = 0.0;
    for (var c = lid; c < n; c += WG_SIZE) {
        let h = residual_sum(base, c, inv_rms);
        dst[base + c] = h;
        partial_h += h * h;
    }
#ifdef NEXT_NORM
    let inv_rms_h = inverse_rms(workgroup_sum(partial_h, lane), n, params.eps);
    // Each invocation reads back only the values it wrote itself.
    for (var c = lid; c < n; c += WG_SIZE) {
        normed[base + c] = dst[base + c] * inv_rms_h * next_weight[c];
    }
#endif
}

#ifdef LORA_DOWN
// u[row][j] for k = row · rank_total + j: the row's h and normed values are recomputed, not read back from the
// workgroup that writes them (workgroups cannot wait on each other).
fn lora_down_row(k: u32, lane: Lane) {
    let row = k / params.rank_total;
    let j = k % params.rank_total;
    if row >= params.n_rows {
        return;
    }
    let n = params.n_elems;
    let base = row * n;
    let inv_rms = row_inv_rms(base, n, params.eps, lane);
    var partial_h = 0.0;
    for (var c = lane.index; c < n; c += WG_SIZE) {
        let h = residual_sum(base, c, inv_rms);
        partial_h += h * h;
    }
    let inv_rms_h = inverse_rms(workgroup_sum(partial_h, lane), n, params.eps);
    var partial_u = 0.0;
    for (var c = lane.index; c < n; c += WG_SIZE) {
        let normed_c = residual_sum(base, c, inv_rms) * inv_rms_h * next_weight[c];
        partial_u += lora_au[j * n + c] * normed_c;
    }
    let u = workgroup_sum(partial_u, lane);
    if lane.index == 0u {
        lora_au[params.u_offset + k] = u;
    }
}
#endif
