// sum_splits: dst[i] = Σ_s partials[s·n_vec4 + i] over vec4s, s < n_splits: adds the partial sums of work split
// into independent parts (mul_mat's k, the input gradient's rows) in f32, in split order.
// Bindings (group 0): 0 partials: array<vec4<f32>> read ([n_splits][n_vec4]), 1 dst: array<vec4<f32>> read_write,
// 2 params uniform. Dispatch: Grid::for_items(n_vec4, WG_SIZE).

struct Params {
    n_vec4: u32,
    n_splits: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> partials: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * nwg.x) * WG_SIZE + lid;
    if i >= params.n_vec4 {
        return;
    }
    var sum = vec4<f32>(0.0);
    for (var s = 0u; s < params.n_splits; s++) {
        sum += partials[s * params.n_vec4 + i];
    }
    dst[i] = sum;
}
