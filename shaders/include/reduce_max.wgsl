// Workgroup-wide f32 maximum, the companion of include/reduce.wgsl's workgroup_sum (soft_max needs both).
// Needs WG_SIZE and include/reduce.wgsl (its `Lane`). With SUBGROUPS each subgroup first reduces in
// registers and only one value per subgroup goes through workgroup memory; otherwise a tree in workgroup memory.
// Every invocation of the workgroup must call it (it contains barriers); every invocation gets the maximum.

var<workgroup> reduce_max_scratch: array<f32, WG_SIZE>;

#ifdef SUBGROUPS
fn workgroup_max(value: f32, lane: Lane) -> f32 {
    let sg_max = subgroupMax(value);
    let n_subgroups = (WG_SIZE + lane.sg_size - 1u) / lane.sg_size;
    if lane.sg_lane == 0u {
        reduce_max_scratch[lane.index / lane.sg_size] = sg_max;
    }
    workgroupBarrier();
    var result = reduce_max_scratch[0];
    for (var i = 1u; i < n_subgroups; i++) {
        result = max(result, reduce_max_scratch[i]);
    }
    workgroupBarrier();
    return result;
}
#else
fn workgroup_max(value: f32, lane: Lane) -> f32 {
    let local_index = lane.index;
    reduce_max_scratch[local_index] = value;
    workgroupBarrier();
    for (var stride = WG_SIZE / 2u; stride > 0u; stride /= 2u) {
        if local_index < stride {
            reduce_max_scratch[local_index] = max(reduce_max_scratch[local_index], reduce_max_scratch[local_index + stride]);
        }
        workgroupBarrier();
    }
    let result = reduce_max_scratch[0];
    workgroupBarrier();
    return result;
}
#endif
