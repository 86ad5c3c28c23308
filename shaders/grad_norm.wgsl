// grad_norm: the gradient scale that AdamW reads (adamw.wgsl's grad_scale), from the global L2 norm of all
// trainable gradients, as torch.nn.utils.clip_grad_norm_ clips them: one dispatch per gradient tensor, then one more:
//   (default)  partials[w] (+)= Σ g[i]² over the elements i ≡ w·WG_SIZE + lane (mod n_partials·WG_SIZE),
//              i < n_elems; added to what is there when accumulate is 1 (every tensor after the first)
//   FINALIZE   norm = accum_scale · sqrt(Σ_w partials[w]);
//              scale[0] = accum_scale · min(1, max_norm / (norm + 1e-6))   (max_norm ≤ 0: no clipping, 1)
// accum_scale averages micro-batches (1/accumulated steps) before clipping, as accumulating scaled losses would.
// Bindings (group 0): default: 0 grads: array<f32> read, 1 partials: array<f32> read_write (n_partials);
// FINALIZE: 0 partials: array<f32> read, 1 scale: array<f32> read_write (1 value); then 2 params uniform.
// Dispatch: default: n_partials workgroups of WG_SIZE (Grid::for_items(n_partials, 1)), each a grid-stride walk;
// FINALIZE: one workgroup. Reductions through include/reduce.wgsl (subgroups when SUBGROUPS is defined).

#include "include/reduce.wgsl"

struct Params {
    n_elems: u32,
    n_partials: u32,
    max_norm: f32,
    accum_scale: f32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

#include "include/row_entry.wgsl"

fn row_main(wg: u32, lane: Lane) {
#ifdef FINALIZE
    var partial = 0.0;
    for (var w = lane.index; w < params.n_partials; w += WG_SIZE) {
        partial += src[w];
    }
    let norm = params.accum_scale * sqrt(workgroup_sum(partial, lane));
    if lane.index == 0u {
        var coef = 1.0;
        if params.max_norm > 0.0 {
            coef = min(1.0, params.max_norm / (norm + 1e-6));
        }
        dst[0] = params.accum_scale * coef;
    }
#else
    if wg >= params.n_partials {
        return;
    }
    var partial = 0.0;
    let stride = params.n_partials * WG_SIZE;
    for (var i = wg * WG_SIZE + lane.index; i < params.n_elems; i += stride) {
        partial += src[i] * src[i];
    }
    let total = workgroup_sum(partial, lane);
    if lane.index == 0u {
        if params.accumulate != 0u {
            dst[wg] += total;
        } else {
            dst[wg] = total;
        }
    }
#endif
}
