// rms_norm_back: the input gradient of rms_norm (ggml `rms_norm_back`, with the fused weight multiply), f32. For
// each row r < n_rows of n elements, with y = x·s·w, s = 1/sqrt(mean(x²) + eps) and g = dy ⊙ w (g = dy without
// WEIGHT):
//   dx[r][c] = s·g[c] − x[c]·s³·(Σ_j g[j]·x[j]) / n
// The weight's own gradient is not computed: training keeps the norms frozen (LoRA trains only its A and B).
// Bindings (group 0): 0 x: array<f32> read (the forward's input), 1 weight: array<f32> read (n values; without
// WEIGHT the dispatcher binds x again, never read), 2 dy: array<f32> read, 3 dx: array<f32> read_write,
// 4 params uniform. dx must not alias x or dy.
// Dispatch: one workgroup of WG_SIZE invocations per row (Grid::for_items(n_rows, 1)); Σx² through
// include/row_rms.wgsl and Σg·x through include/reduce.wgsl (subgroups when SUBGROUPS is defined).

#include "include/reduce.wgsl"
#include "include/row_rms.wgsl"

struct Params {
    n_rows: u32,
    n_elems: u32,
    eps: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

fn norm_input(i: u32) -> f32 {
    return x[i];
}

fn upstream(base: u32, c: u32) -> f32 {
#ifdef WEIGHT
    return dy[base + c] * weight[c];
#else
    return dy[base + c];
#endif
}

#include "include/row_entry.wgsl"

fn row_main(wg: u32, lane: Lane) {
    let row = wg;
    if row >= params.n_rows {
        return;
    }
    let n = params.n_elems;
    let base = row * n;
    let s = row_inv_rms(base, n, params.eps, lane);
    var partial = 0.0;
    for (var c = lane.index; c < n; c += WG_SIZE) {
        partial += upstream(base, c) * x[base + c];
    }
    let gx_mean = workgroup_sum(partial, lane) / f32(n);
    let s3 = s * s * s;
    for (var c = lane.index; c < n; c += WG_SIZE) {
        dx[base + c] = s * upstream(base, c) - x[base + c] * s3 * gx_mean;
    }
}
