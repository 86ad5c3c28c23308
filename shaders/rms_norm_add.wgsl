// rms_norm_add: a post-norm folded into the residual add that follows it (ggml rms_norm + mul + add (+ mul), fused).
// For each row r < n_rows of n_elems values, in f32:
//   h[r] = (residual[r] + src[r] / sqrt(mean(src[r]²) + eps) ⊙ weight) · s
// with s = scale[0] when SCALE is defined (Gemma 4's layer_output_scale on a layer's last add), else 1. With
// NEXT_NORM the workgroup, which already holds the whole new residual row, also writes the pre-norm of what
// consumes it (the next layer's attn_norm, the ffn_norm, or the final output_norm):
//   normed[r] = h[r] / sqrt(mean(h[r]²) + eps) ⊙ next_weight
// Bindings (group 0): 0 src: array<f32> read, 1 weight: array<f32> read (n_elems), 2 residual: array<f32> read,
// 3 scale: array<f32> read (1 value; without SCALE the dispatcher binds src as a stand-in that is never read),
// 4 next_weight: array<f32> read (n_elems; stand-in without NEXT_NORM), 5 dst: array<f32> read_write (h), then
// NEXT_NORM: 6 normed: array<f32> read_write, 7 params uniform; else 6 params uniform.
// dst and normed must not alias any input.
// Dispatch: one workgroup of WG_SIZE invocations per row (Grid::for_items(n_rows, 1)); each invocation owns a
// strided slice of the row; the sums of squares go through include/row_rms.wgsl (subgroups when SUBGROUPS).

#include "include/reduce.wgsl"
#include "include/row_rms.wgsl"

struct Params {
    n_rows: u32,
    n_elems: u32,
    eps: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> residual: array<f32>;
@group(0) @binding(3) var<storage, read> scale: array<f32>;
@group(0) @binding(4) var<storage, read> next_weight: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;
#ifdef NEXT_NORM
@group(0) @binding(6) var<storage, read_write> normed: array<f32>;
@group(0) @binding(7) var<uniform> params: Params;
#else
@group(0) @binding(6) var<uniform> params: Params;
#endif

fn norm_input(i: u32) -> f32 {
    return src[i];
}

#include "include/row_entry.wgsl"

fn row_main(wg: u32, lane: Lane) {
    let lid = lane.index;
    let row = wg;
    if row >= params.n_rows {
        return;
    }
    let n = params.n_elems;
    let base = row * n;
    let inv_rms = row_inv_rms(base, n, params.eps, lane);
#ifdef SCALE
    let s = scale[0];
#endif
    var partial_h = 0.0;
    for (var c = lid; c < n; c += WG_SIZE) {
        var h = residual[base + c] + src[base + c] * inv_rms * weight[c];
#ifdef SCALE
        h = h * s;
#endif
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
