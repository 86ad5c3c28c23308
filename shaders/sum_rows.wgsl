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

#include "include/row_entry.wgsl"

fn row_main(wg: u32, lane: Lane) {
    let lid = lane.index;
    let row = wg;
    if row >= params.n_rows {
        return;
    }
    var partial = 0.0;
    let base = row * params.n_cols;
    for (var c = lid; c < params.n_cols; c += WG_SIZE) {
        partial += src[base + c];
    }
    let total = workgroup_sum(partial, lane);
    if lid == 0u {
        dst[row] = total;
    }
}
