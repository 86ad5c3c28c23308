// Workgroup-wide f32 sum, shared by row reductions (sum_rows, and later rms_norm and soft_max).
// Needs WG_SIZE defined and the caller's builtins passed in. With SUBGROUPS each subgroup first reduces in
// registers and only one value per subgroup goes through workgroup memory; otherwise a tree in workgroup memory.
// Every invocation of the workgroup must call it (it contains barriers); every invocation gets the total.

var<workgroup> reduce_scratch: array<f32, WG_SIZE>;

#ifdef SUBGROUPS
fn workgroup_sum(value: f32, local_index: u32, sg_lane: u32, sg_size: u32) -> f32 {
    let sg_total = subgroupAdd(value);
    let n_subgroups = (WG_SIZE + sg_size - 1u) / sg_size;
    if sg_lane == 0u {
        reduce_scratch[local_index / sg_size] = sg_total;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < n_subgroups; i++) {
        total += reduce_scratch[i];
    }
    workgroupBarrier();
    return total;
}
#else
fn workgroup_sum(value: f32, local_index: u32) -> f32 {
    reduce_scratch[local_index] = value;
    workgroupBarrier();
    for (var stride = WG_SIZE / 2u; stride > 0u; stride /= 2u) {
        if local_index < stride {
            reduce_scratch[local_index] += reduce_scratch[local_index + stride];
        }
        workgroupBarrier();
    }
    let total = reduce_scratch[0];
    workgroupBarrier();
    return total;
}
#endif
