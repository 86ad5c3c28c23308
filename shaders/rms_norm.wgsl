// rms_norm: for each row r < n_rows of n_elems values,
//   dst[r][c] = src[r][c] / sqrt(mean over the row of src² + eps)  (· weight[c] when WEIGHT is defined),
// all in f32. A per-head norm is the same kernel over rows of head_dim with one weight shared by every row.
// Bindings (group 0): 0 src: array<f32> read, 1 weight: array<f32> read (n_elems values; without WEIGHT the
// dispatcher binds src again as a stand-in that is never read), 2 dst: array<f32> read_write, 3 params uniform.
// dst must not alias src (there is no in-place variant).
// Dispatch: one workgroup of WG_SIZE invocations per row (Grid::for_items(n_rows, 1)); the sum of squares is
// include/row_rms.wgsl (subgroups when SUBGROUPS is defined), then each invocation scales its strided slice.

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
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

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
    for (var c = lid; c < n; c += WG_SIZE) {
#ifdef WEIGHT
        dst[base + c] = src[base + c] * inv_rms * weight[c];
#else
        dst[base + c] = src[base + c] * inv_rms;
#endif
    }
}
