// soft_max (ggml `soft_max_ext` without ALiBi): for each row r < n_rows of n_elems values,
//   v[c] = src[r][c]·scale (+ mask[r mod n_mask_rows][c] when MASK is defined),  dst[r][c] = exp(v[c] − max v) / Σ,
// all in f32. The mask is additive (−inf suppresses an entry). A row whose every entry is −inf gets all zeros
// (the reference's 0/0 would be NaN). Serves sampling and logit processing; attention has its own fused softmax.
// Bindings (group 0): 0 src: array<f32> read, 1 mask: array<f32> read (without MASK the dispatcher binds src as a
// stand-in that is never read), 2 dst: array<f32> read_write, 3 params uniform. dst may not alias src.
// Dispatch: one workgroup of WG_SIZE invocations per row (Grid::for_items(n_rows, 1)). The row's maximum and sum
// in one pass (include/row_max_sum.wgsl, subgroups when SUBGROUPS is defined), then each invocation writes its slice.

#include "include/reduce.wgsl"
#include "include/reduce_max.wgsl"
#include "include/row_max_sum.wgsl"

struct Params {
    n_rows: u32,
    n_elems: u32,
    n_mask_rows: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> mask: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

fn value_at(row: u32, c: u32) -> f32 {
    let v = src[row * params.n_elems + c] * params.scale;
#ifdef MASK
    return v + mask[(row % params.n_mask_rows) * params.n_elems + c];
#else
    return v;
#endif
}

#include "include/row_entry.wgsl"

fn row_main(wg: u32, lane: Lane) {
    let lid = lane.index;
    let row = wg;
    if row >= params.n_rows {
        return;
    }
    let n = params.n_elems;
    let max_sum = row_max_sum(row, n, lane);
    let row_max = max_sum.x;
    let row_sum = max_sum.y;
    let base = row * n;
    for (var c = lid; c < n; c += WG_SIZE) {
        var y = 0.0;
        if row_sum > 0.0 {
            y = exp(value_at(row, c) - row_max) / row_sum;
        }
        dst[base + c] = y;
    }
}
