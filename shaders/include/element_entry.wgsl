// The entry point of the elementwise kernels: one invocation per element, WG_SIZE per workgroup, workgroups spread
// over x and y (Grid::for_items). It bounds-checks the linear id against the including shader's `params.n_elems`
// and calls its `fn element_main(i: u32)` for each element in range.

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG_SIZE + lid;
    if i < params.n_elems {
        element_main(i);
    }
}
