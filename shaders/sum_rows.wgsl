// sum_rows: dst[r] = sum over c < n_cols of src[r * n_cols + c], accumulated in f32.
// Bindings (group 0): 0 src: array<f32> read, 1 dst: array<f32> read_write, 2 params uniform.
// Dispatch: one workgroup of WG_SIZE invocations per row (Grid::for_items(n_rows, 1)); each invocation sums a
// strided slice of the row, then the workgroup reduces (subgroup reduction when SUBGROUPS is defined).

#include "include/reduce.wgsl"

struct Params {
    n_rows: u32,
    n_cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

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
    var partial = 0.0;
    let base = row * params.n_cols;
    for (var c = lid; c < params.n_cols; c += WG_SIZE) {
        partial += src[base + c];
    }
#ifdef SUBGROUPS
    let total = workgroup_sum(partial, lid, sg_lane, sg_size);
#else
    let total = workgroup_sum(partial, lid);
#endif
    if lid == 0u {
        dst[row] = total;
    }
}
