// glu_back: the gradients of geglu (dst = gelu(gate) ⊙ up, gelu the tanh form) for contiguous operands, f32:
//   d_gate[i] = dy[i] · up[i] · gelu'(gate[i]),   d_up[i] = dy[i] · gelu(gate[i])
// for i < n_elems, gelu and gelu' from include/activation.wgsl.
// Bindings (group 0): 0 gate: array<f32> read, 1 up: array<f32> read, 2 dy: array<f32> read,
// 3 d_gate: array<f32> read_write, 4 d_up: array<f32> read_write, 5 params uniform. The outputs may not alias
// each other or an input.
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
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> d_gate: array<f32>;
@group(0) @binding(4) var<storage, read_write> d_up: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

#include "include/element_entry.wgsl"

fn element_main(i: u32) {
    let g = gate[i];
    d_gate[i] = dy[i] * up[i] * gelu_grad(g);
    d_up[i] = dy[i] * gelu(g);
}
