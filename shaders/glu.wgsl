// glu (ggml `geglu` with separate gate and up tensors): dst[i] = gelu(gate[i]) · up[i] for i < n_elems, f32,
// gelu the tanh approximation from include/activation.wgsl. Gemma 4's MLP (ffn_gate, ffn_up) and its PLE gate
// (gelu(inp_gate·h) ⊙ ple[l]) produce the two operands in separate buffers, so there is no split-buffer form.
// Bindings (group 0): 0 gate: array<f32> read, 1 up: array<f32> read, 2 dst: array<f32> read_write,
// 3 params uniform. dst may not alias gate or up.
// Dispatch: one invocation per element, WG_SIZE per workgroup, workgroups spread over x and y (Grid::for_items);
// the linear id is bounds-checked.

#include "include/activation.wgsl"

struct Params {
    n_elems: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG_SIZE + lid;
    if i >= params.n_elems {
        return;
    }
    dst[i] = gelu(gate[i]) * up[i];
}
