// unary: dst[i] = OP(src[i]) for i < n_elems, f32, one of
//   SCALE       x · params.value                       (ggml `scale`)
//   SOFTCAP     value · tanh(x / value)                 (Gemma's final logit softcap, value = 30)
//   GELU        gelu(x), tanh approximation             (ggml `gelu`; include/activation.wgsl)
//   MUL_SCALAR  x · scalar[0], scalar a 1-element buffer (Gemma 4 `layer_output_scale`)
// With INPLACE the op reads and writes dst (no src binding).
// Bindings (group 0), numbered by the key in this order, absent ones skipped: BINDING_SRC src: array<f32> read
// (not INPLACE), BINDING_SCALAR scalar: array<f32> read (MUL_SCALAR), BINDING_DST dst: array<f32> read_write,
// BINDING_PARAMS params uniform.
// Dispatch: one invocation per element, WG_SIZE per workgroup, workgroups spread over x and y (Grid::for_items);
// the linear id is bounds-checked.

#include "include/activation.wgsl"

struct Params {
    n_elems: u32,
    // The scale factor (SCALE) or the cap (SOFTCAP); unused otherwise.
    value: f32,
    _pad0: u32,
    _pad1: u32,
}

#ifndef INPLACE
@group(0) @binding(BINDING_SRC) var<storage, read> src: array<f32>;
#endif
#ifdef MUL_SCALAR
@group(0) @binding(BINDING_SCALAR) var<storage, read> scalar: array<f32>;
#endif
@group(0) @binding(BINDING_DST) var<storage, read_write> dst: array<f32>;
@group(0) @binding(BINDING_PARAMS) var<uniform> params: Params;

#include "include/element_entry.wgsl"

fn element_main(i: u32) {
#ifdef INPLACE
    let x = dst[i];
#else
    let x = src[i];
#endif
#ifdef SCALE
    dst[i] = x * params.value;
#endif
#ifdef SOFTCAP
    dst[i] = params.value * safe_tanh(x / params.value);
#endif
#ifdef GELU
    dst[i] = gelu(x);
#endif
#ifdef MUL_SCALAR
    dst[i] = x * scalar[0];
#endif
}
