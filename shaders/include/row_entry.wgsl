// The entry point of the row kernels (one workgroup of WG_SIZE per row, reducing through include/reduce.wgsl): it
// gathers the builtins the reductions need into a `Lane` (subgroup ones only with SUBGROUPS) and calls the including
// shader's `fn row_main(wg: u32, lane: Lane)` with the linear workgroup id (Grid spreads rows over x and y). Every
// invocation of a workgroup gets the same `wg`, so an early return on it cannot split a barrier.

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
#ifdef SUBGROUPS
    let lane = Lane(lid, sg_lane, sg_size);
#else
    let lane = Lane(lid, 0u, 0u);
#endif
    row_main(wid.x + wid.y * nwg.x, lane);
}
