// adamw: one AdamW step on f32 parameters in place, as torch.optim.AdamW computes it, for i < n_elems:
//   g = grad[i] · grad_scale[0]                     (1/accumulated micro-batches, times the clipping factor)
//   p ← p · (1 − lr·weight_decay)                   (decoupled weight decay)
//   m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / bias1) · m / (sqrt(v) / sqrt(bias2) + eps),   bias_k = 1 − β_k^step (from the host, in f64)
// Bindings (group 0): 0 param: array<f32> read_write, 1 grad: array<f32> read, 2 m: array<f32> read_write,
// 3 v: array<f32> read_write, 4 grad_scale: array<f32> read (1 value), 5 params uniform. All distinct buffers.
// Dispatch: one invocation per element, WG_SIZE per workgroup, workgroups spread over x and y (Grid::for_items);
// the linear id is bounds-checked.

struct Params {
    n_elems: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    bias1: f32,
    sqrt_bias2: f32,
}

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> grad_scale: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

#include "include/element_entry.wgsl"

fn element_main(i: u32) {
    let g = grad[i] * grad_scale[0];
    let mi = params.beta1 * m[i] + (1.0 - params.beta1) * g;
    let vi = params.beta2 * v[i] + (1.0 - params.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let decayed = param[i] * (1.0 - params.lr * params.weight_decay);
    let denom = sqrt(vi) / params.sqrt_bias2 + params.eps;
    param[i] = decayed - (params.lr / params.bias1) * mi / denom;
}
