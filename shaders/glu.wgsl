// glu (ggml `geglu`, with separate operands or the two halves of one): dst[r][c] = gelu(gate[r][c]) · up[r][c] for
// r < n_rows, c < n_cols, f32, gelu the tanh approximation from include/activation.wgsl. Operands are strided views:
// gate[r][c] = gate_buf[gate_offset + r·gate_stride + c] (up likewise), so one kernel serves contiguous operands,
// the halves of a stacked [gate | up] product row, and a layer's slice of Gemma 4's token-major PLE inputs.
// dst is contiguous [n_rows][n_cols].
// Bindings (group 0): 0 gate: array<f32> read, 1 up: array<f32> read (may be the same buffer as gate),
// 2 dst: array<f32> read_write, 3 params uniform. dst may not alias gate or up.
// Dispatch: one invocation per output element, WG_SIZE per workgroup, workgroups spread over x and y
// (Grid::for_items); the linear id is bounds-checked.

#include "include/activation.wgsl"

struct Params {
    n_elems: u32,
    n_cols: u32,
    gate_offset: u32,
    gate_stride: u32,
    up_offset: u32,
    up_stride: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

#include "include/element_entry.wgsl"

fn element_main(i: u32) {
    let r = i / params.n_cols;
    let c = i % params.n_cols;
    dst[i] = gelu(gate[params.gate_offset + r * params.gate_stride + c]) * up[params.up_offset + r * params.up_stride + c];
}
