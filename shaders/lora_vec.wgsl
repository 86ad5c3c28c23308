// lora_vec: a LoRA group's whole update for a few tokens in one dispatch (decode). Each workgroup first computes its
// token's down-projection u = A·x[t] into workgroup memory (A [rank_total][in_dim] f32: every target of the group
// stacked), then adds B_k·u[slice_k] to each of its output columns in place:
//   y_k[t][y_first_k + c] += Σ_{j < rank_k} B[b_offset_k + c·rank_k + j] · u[first_rank_k + j]
// for up to 3 targets k (q, k, v of one layer) whose columns follow each other in the dispatch's column space,
// each writing the output binding `y_binding_k` (Y1, Y2 add bindings). With GLU the two targets are the gate and up
// halves of a [gate | up] product row (gate_up, read only) and the kernel writes act[t][c] = gelu(gate + Δgate) ·
// (up + Δup) instead: the update lands between the product and the activation without a second pass.
// Every workgroup recomputes u: A is a few hundred KB at most and stays in L2, and no second dispatch waits on u.
// WG_SIZE must be a power of two (the tree reduction).
// With DOWN_ONLY it stops after u and writes it to u_out [n_tokens][rank_total] (prefill: one workgroup per token,
// then `lora_add` per target, instead of a tiled product whose few rows leave the GPU idle).
// Bindings (group 0): 0 a, 1 x: array<f32> read; DOWN_ONLY: 2 u_out read_write, 3 params; else 2 b read, then GLU:
// 3 gate_up read, 4 act read_write, 5 params; else: 3 y0 (4 y1, 5 y2 with Y1/Y2) read_write, then params uniform.
// Outputs may not alias a, x or b.
// Dispatch: n_col_groups × n_tokens workgroups of WG_SIZE (Grid::for_items); one invocation per output column.

#include "include/activation.wgsl"

struct Target {
    n_rows: u32,
    rank: u32,
    first_rank: u32,
    b_offset: u32,
    y_first: u32,
    y_stride: u32,
    y_binding: u32,
    _pad: u32,
}

struct Params {
    in_dim: u32,
    rank_total: u32,
    n_targets: u32,
    n_cols: u32,
    n_col_groups: u32,
    n_tokens: u32,
    _pad0: u32,
    _pad1: u32,
    targets: array<Target, 3>,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
#ifdef DOWN_ONLY
@group(0) @binding(2) var<storage, read_write> u_out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
#else
@group(0) @binding(2) var<storage, read> b: array<f32>;
#ifdef GLU
@group(0) @binding(3) var<storage, read> gate_up: array<f32>;
@group(0) @binding(4) var<storage, read_write> act: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;
#else
@group(0) @binding(3) var<storage, read_write> y0: array<f32>;
#ifdef Y2
@group(0) @binding(4) var<storage, read_write> y1: array<f32>;
@group(0) @binding(5) var<storage, read_write> y2: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;
#else
#ifdef Y1
@group(0) @binding(4) var<storage, read_write> y1: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;
#else
@group(0) @binding(4) var<uniform> params: Params;
#endif
#endif
#endif
#endif

// Eight rows' partial sums per invocation (two vec4), reduced as one tree: 8 KB.
var<workgroup> partial: array<vec4<f32>, 2 * WG_SIZE>;
var<workgroup> u: array<f32, MAX_RANK>;

fn a_at(r: u32, i: u32) -> f32 {
    if r < params.rank_total {
        return a[r * params.in_dim + i];
    }
    return 0.0;
}

#ifndef DOWN_ONLY
fn delta(k: u32, c: u32) -> f32 {
    let tg = params.targets[k];
    var sum = 0.0;
    for (var j = 0u; j < tg.rank; j++) {
        sum += b[tg.b_offset + c * tg.rank + j] * u[tg.first_rank + j];
    }
    return sum;
}
#endif

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let group = wid.x + wid.y * nwg.x;
    if group >= params.n_col_groups * params.n_tokens {
        return;
    }
    let t = group / params.n_col_groups;
    // u = A·x[t], eight rows at a time: every invocation takes every WG_SIZE-th column (coalesced reads of x and
    // of each row of A), then one tree reduction sums the eight rows' partials together.
    let x_row = t * params.in_dim;
    for (var base = 0u; base < params.rank_total; base += 8u) {
        var lo = vec4<f32>(0.0);
        var hi = vec4<f32>(0.0);
        // Four columns per iteration: their 36 loads are independent and in flight together, where one column
        // per iteration left each invocation waiting on L2 once per column (33 µs for k = 12288 on an H200).
        for (var i0 = lid; i0 < params.in_dim; i0 += 4u * WG_SIZE) {
            for (var q = 0u; q < 4u; q++) {
                let i = i0 + q * WG_SIZE;
                if i < params.in_dim {
                    let xv = x[x_row + i];
                    lo += vec4<f32>(a_at(base, i), a_at(base + 1u, i), a_at(base + 2u, i), a_at(base + 3u, i)) * xv;
                    hi += vec4<f32>(a_at(base + 4u, i), a_at(base + 5u, i), a_at(base + 6u, i), a_at(base + 7u, i)) * xv;
                }
            }
        }
        partial[2u * lid] = lo;
        partial[2u * lid + 1u] = hi;
        workgroupBarrier();
        for (var stride = WG_SIZE / 2u; stride > 0u; stride >>= 1u) {
            if lid < stride {
                partial[2u * lid] += partial[2u * (lid + stride)];
                partial[2u * lid + 1u] += partial[2u * (lid + stride) + 1u];
            }
            workgroupBarrier();
        }
        if lid < 8u && base + lid < params.rank_total {
            u[base + lid] = partial[lid / 4u][lid % 4u];
        }
        workgroupBarrier();
    }

#ifdef DOWN_ONLY
    for (var r = lid; r < params.rank_total; r += WG_SIZE) {
        u_out[t * params.rank_total + r] = u[r];
    }
#else
    let c = (group % params.n_col_groups) * WG_SIZE + lid;
    if c >= params.n_cols {
        return;
    }
#ifdef GLU
    let gate_t = params.targets[0];
    let up_t = params.targets[1];
    let row = t * gate_t.y_stride;
    let gate = gate_up[row + gate_t.y_first + c] + delta(0u, c);
    let up = gate_up[row + up_t.y_first + c] + delta(1u, c);
    act[t * params.n_cols + c] = gelu(gate) * up;
#else
    var k = 0u;
    var col = c;
    while k + 1u < params.n_targets && col >= params.targets[k].n_rows {
        col -= params.targets[k].n_rows;
        k++;
    }
    let tg = params.targets[k];
    let d = delta(k, col);
    let idx = t * tg.y_stride + tg.y_first + col;
    switch tg.y_binding {
#ifdef Y1
        case 1u: { y1[idx] = y1[idx] + d; }
#endif
#ifdef Y2
        case 2u: { y2[idx] = y2[idx] + d; }
#endif
        default: { y0[idx] = y0[idx] + d; }
    }
#endif
#endif
}
