// The prologue of the rms_norm kernels: 1 / sqrt(mean(x²) + eps) over the n values x = norm_input(base + c),
// c < n, of the row a workgroup owns, each invocation summing the squares of a strided slice; every invocation gets
// the result. The including shader defines `fn norm_input(i: u32) -> f32`. Needs include/reduce.wgsl.

fn row_inv_rms(base: u32, n: u32, eps: f32, lane: Lane) -> f32 {
    var partial = 0.0;
    for (var c = lane.index; c < n; c += WG_SIZE) {
        let v = norm_input(base + c);
        partial += v * v;
    }
    return inverse_rms(workgroup_sum(partial, lane), n, eps);
}

fn inverse_rms(sum_sq: f32, n: u32, eps: f32) -> f32 {
    // 1/sqrt rather than inverseSqrt, which may be a low-precision approximation on some drivers.
    return 1.0 / sqrt(sum_sq / f32(n) + eps);
}
