// unary_back: the input gradient of unary.wgsl's ops, f32: dx[i] = dy[i] · OP'(x[i]) for i < n_elems, one of
//   SCALE    value                                   (ggml `scale`)
//   SOFTCAP  1 − tanh²(x / value)                    (Gemma's final logit softcap)
//   GELU     gelu'(x), the tanh form's derivative    (include/activation.wgsl)
// Bindings (group 0): 0 x: array<f32> read (the forward's input), 1 dy: array<f32> read, 2 dx: array<f32>
// read_write, 3 params uniform. dx may not alias x or dy.
// Dispatch: one invocation per element, WG_SIZE per workgroup, workgroups spread over x and y (Grid::for_items);
// the linear id is bounds-checked.

#include "include/activation.wgsl"

struct Params {
    n_elems: u32,
    // The scale factor (SCALE) or the cap (SOFTCAP); unused by GELU.
    value: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

#include "include/element_entry.wgsl"

fn element_main(i: u32) {
#ifdef SCALE
    dx[i] = dy[i] * params.value;
#endif
#ifdef SOFTCAP
    let t = safe_tanh(x[i] / params.value);
    dx[i] = dy[i] * (1.0 - t * t);
#endif
#ifdef GELU
    dx[i] = dy[i] * gelu_grad(x[i]);
#endif
}
