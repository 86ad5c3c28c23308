// Workgroup-wide f32 sum, shared by the row reductions (sum_rows, the rms_norm family, soft_max).
// Needs WG_SIZE defined. The entry point describes each invocation once as a `Lane` (its local index and, with
// SUBGROUPS, its subgroup builtins; `Lane(lid, 0u, 0u)` without). With SUBGROUPS each subgroup first reduces in
// registers and only one value per subgroup goes through workgroup memory; otherwise a tree in workgroup memory.
// Every invocation of the workgroup must call it (it contains barriers); every invocation gets the total.

struct Lane {
    index: u32,
    sg_lane: u32,
    sg_size: u32,
}

var<workgroup> reduce_scratch: array<f32, WG_SIZE>;

#ifdef SUBGROUPS
fn workgroup_sum(value: f32, lane: Lane) -> f32 {
    let sg_total = subgroupAdd(value);
    let n_subgroups = (WG_SIZE + lane.sg_size - 1u) / lane.sg_size;
    if lane.sg_lane == 0u {
        reduce_scratch[lane.index / lane.sg_size] = sg_total;
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
fn workgroup_sum(value: f32, lane: Lane) -> f32 {
    let local_index = lane.index;
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
