// The prologue of the softmax-shaped row kernels (soft_max, cross_entropy): over the n values v = value_at(row, c),
// c < n, of the row a workgroup owns, the maximum and Σ exp(v − max), in one pass: each invocation keeps a running
// maximum and a sum rescaled to it over a strided slice, and the workgroup combines them. Every invocation gets
// vec2(max, sum). The including shader defines `fn value_at(row: u32, c: u32) -> f32`. Needs include/reduce.wgsl
// and include/reduce_max.wgsl. A row whose every value is −inf has sum 0.

// Stands in for −inf as the starting maximum: WGSL constant expressions may not be infinite. exp(x − NO_MAX) is
// 0 for every finite x, and a −inf entry never raises it.
const NO_MAX: f32 = -3.0e38;

fn row_max_sum(row: u32, n: u32, lane: Lane) -> vec2<f32> {
    var local_max = NO_MAX;
    var local_sum = 0.0;
    for (var c = lane.index; c < n; c += WG_SIZE) {
        let v = value_at(row, c);
        if v > local_max {
            local_sum = local_sum * exp(local_max - v) + 1.0;
            local_max = v;
        } else {
            local_sum += exp(v - local_max);
        }
    }
    let row_max = workgroup_max(local_max, lane);
    let row_sum = workgroup_sum(local_sum * exp(local_max - row_max), lane);
    return vec2(row_max, row_sum);
}
