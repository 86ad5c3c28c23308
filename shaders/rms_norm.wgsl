// rms_norm: for each row r < n_rows of n_elems values,
//   dst[r][c] = src[r][c] / sqrt(mean over the row of src² + eps)  (· weight[c] when WEIGHT is defined),
// all in f32. A per-head norm is the same kernel over rows of head_dim with one weight shared by every row.
// Bindings (group 0): 0 src: array<f32> read, 1 weight: array<f32> read (n_elems values; without WEIGHT the
// dispatcher binds src again as a stand-in that is never read), 2 dst: array<f32> read_write, 3 params uniform.
// dst must not alias src (there is no in-place variant).
// Dispatch: one workgroup of WG_SIZE invocations per row (Grid::for_items(n_rows, 1)); each invocation sums the
// squares of a strided slice of the row, the workgroup reduces (include/reduce.wgsl, subgroups when SUBGROUPS is
// defined), then each invocation scales its slice.

#include "include/reduce.wgsl"

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

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
#ifdef SUBGROUPS
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_size) sg_size: u32,
#endif
) {
    // Uniform across the workgroup, so the early exit cannot split a barrier.
    let row = wid.x + wid.y * nwg.x;
    if row >= params.n_rows {
        return;
    }
    let n = params.n_elems;
    let base = row * n;
    var partial = 0.0;
    for (var c = lid; c < n; c += WG_SIZE) {
        let v = src[base + c];
        partial += v * v;
    }
#ifdef SUBGROUPS
    let sum_sq = workgroup_sum(partial, lid, sg_lane, sg_size);
#else
    let sum_sq = workgroup_sum(partial, lid);
#endif
    // 1/sqrt rather than inverseSqrt, which may be a low-precision approximation on some drivers.
    let inv_rms = 1.0 / sqrt(sum_sq / f32(n) + params.eps);
    for (var c = lid; c < n; c += WG_SIZE) {
#ifdef WEIGHT
        dst[base + c] = src[base + c] * inv_rms * weight[c];
#else
        dst[base + c] = src[base + c] * inv_rms;
#endif
    }
}
