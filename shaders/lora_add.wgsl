// lora_add: the low-rank half of a LoRA projection, added in place to the base product:
//   y[t][y_first + c] += Σ_{j < rank} B[c][j] · u[t][u_offset + j]     for t < n_tokens, c < n_rows,
// with B [n_rows][rank] f32 at b_offset (the adapter's scale folded in; a group's targets share one buffer) and u = A·x the down-projection, a slice of a stacked
// [n_tokens][u_stride] buffer (several targets' A share one product when they read the same input).
// Ranks are small (4–64), so each invocation's dot product is short and reads one contiguous row of B.
// Bindings (group 0): 0 b: array<f32> read, 1 u: array<f32> read, 2 y: array<f32> read_write, 3 params uniform.
// y may not alias u. Dispatch: one invocation per (t, c), WG_SIZE per workgroup (include/element_entry.wgsl).

struct Params {
    n_elems: u32,
    n_rows: u32,
    rank: u32,
    u_offset: u32,
    u_stride: u32,
    y_first: u32,
    y_stride: u32,
    b_offset: u32,
}

@group(0) @binding(0) var<storage, read> b: array<f32>;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

#include "include/element_entry.wgsl"

fn element_main(i: u32) {
    let t = i / params.n_rows;
    let c = i % params.n_rows;
    let b_row = params.b_offset + c * params.rank;
    let u_row = t * params.u_stride + params.u_offset;
    var sum = 0.0;
    for (var j = 0u; j < params.rank; j++) {
        sum += b[b_row + j] * u[u_row + j];
    }
    let dst = t * params.y_stride + params.y_first + c;
    y[dst] = y[dst] + sum;
}
