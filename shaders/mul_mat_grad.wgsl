// mul_mat_grad: the two gradients of y = x·Wᵀ (x [n][k], W [m][k], y [n][m]) as one product, f32:
//   out[i][j] (+)= scale · Σ_t lhs(i, t) · rhs[t][j]     for i < n_out_rows, j < n_out_cols, t < n_inner
// with rhs row-major [n_inner][n_out_cols] and lhs(i, t) = lhs[i][t] ([n_out_rows][n_inner]), or with TRANSPOSE_LHS
// lhs[t][i] ([n_inner][n_out_rows]). The input gradient dx = dy·W is the plain form (lhs = dy, rhs = W); the weight
// gradient dW = scale·dyᵀ·x (ggml `out_prod`) the transposed one (lhs = dy, rhs = x). With ACCUMULATE the product
// is added to out (gradient accumulation over micro-batches); otherwise out is overwritten.
// Bindings (group 0): 0 lhs: array<f32> read, 1 rhs: array<f32> read, 2 out: array<f32> read_write, 3 params
// uniform. out may not alias lhs or rhs.
// Dispatch: one invocation per output element, WG_SIZE per workgroup, workgroups spread over x and y
// (Grid::for_items); consecutive invocations take consecutive j, so their rhs loads are contiguous. With
// WORKGROUP_SUM, one workgroup per output element instead: its invocations take every WG_SIZE-th t and reduce
// through include/reduce.wgsl (with SUBGROUPS, subgroup sums first), for few outputs with long inner sums.

struct Params {
    n_elems: u32,
    n_out_cols: u32,
    n_inner: u32,
    n_out_rows: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> lhs: array<f32>;
@group(0) @binding(1) var<storage, read> rhs: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

fn lhs_at(i: u32, t: u32) -> f32 {
#ifdef TRANSPOSE_LHS
    return lhs[t * params.n_out_rows + i];
#else
    return lhs[i * params.n_inner + t];
#endif
}

// Σ over t = first, first + step, … < n_inner of output element e's products.
fn partial_sum(e: u32, first: u32, step: u32) -> f32 {
    let i = e / params.n_out_cols;
    let j = e % params.n_out_cols;
    var sum = 0.0;
    for (var t = first; t < params.n_inner; t += step) {
        sum += lhs_at(i, t) * rhs[t * params.n_out_cols + j];
    }
    return sum;
}

fn store(e: u32, sum: f32) {
#ifdef ACCUMULATE
    out[e] += params.scale * sum;
#else
    out[e] = params.scale * sum;
#endif
}

#ifdef WORKGROUP_SUM
#include "include/reduce.wgsl"
#include "include/row_entry.wgsl"

fn row_main(e: u32, lane: Lane) {
    if e >= params.n_elems {
        return;
    }
    let total = workgroup_sum(partial_sum(e, lane.index, WG_SIZE), lane);
    if lane.index == 0u {
        store(e, total);
    }
}
#else
#include "include/element_entry.wgsl"

fn element_main(e: u32) {
    store(e, partial_sum(e, 0u, 1u));
}
#endif
