// lora_down: the down-projections of a LoRA group, u[t] = A·x[t] (every target of the group stacked in A), each in
// k_parts parts over consecutive slices of part_elems columns (the reader sums them; 1 part is u itself):
//   u_out[t][p][r] = Σ_{i in slice p} A[r][i] · x[t][i]     for r < rank_total, p < k_parts, t < n_tokens
// One workgroup per row r, slice p and block of 4 tokens: A has only a few dozen rows, so spreading rows and
// slices (not tokens) over workgroups is what keeps a decode step's product from waiting on one workgroup's loads
// down a long row; each row of A is read once per block. Every invocation takes every WG_SIZE-th column of its
// slice, four columns per loop step so their loads are in flight together, then the workgroup sums each token's
// partials (include/reduce.wgsl).
// Bindings (group 0): 0 a: array<f32> read ([rank_total][in_dim]), 1 x: array<f32> read ([n_tokens][in_dim]),
// 2 u_out: array<f32> read_write ([n_tokens][k_parts][rank_total]), 3 params uniform. u_out may not alias a or x.
// Dispatch: rank_total · k_parts · ceil(n_tokens / 4) workgroups of WG_SIZE, row fastest, then slice
// (Grid::for_items).

#include "include/reduce.wgsl"

struct Params {
    in_dim: u32,
    rank_total: u32,
    n_tokens: u32,
    k_parts: u32,
    part_elems: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> u_out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

#include "include/row_entry.wgsl"

const TOKENS: u32 = 4u;

fn row_main(wg: u32, lane: Lane) {
    let r = wg % params.rank_total;
    let part = (wg / params.rank_total) % params.k_parts;
    let t0 = (wg / (params.rank_total * params.k_parts)) * TOKENS;
    if t0 >= params.n_tokens {
        return;
    }
    let k = params.in_dim;
    let first = part * params.part_elems;
    let end = min(k, first + params.part_elems);
    // Tokens past the end repeat the last one (computed, never written), so the accumulator is never indexed
    // dynamically and every invocation reaches the reductions.
    let xt = (vec4<u32>(t0) + min(vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.n_tokens - 1u - t0))) * k;
    var acc = vec4<f32>(0.0);
    for (var i0 = first + lane.index; i0 < end; i0 += 4u * WG_SIZE) {
        for (var q = 0u; q < 4u; q++) {
            let i = i0 + q * WG_SIZE;
            if i < end {
                acc += a[r * k + i] * vec4<f32>(x[xt.x + i], x[xt.y + i], x[xt.z + i], x[xt.w + i]);
            }
        }
    }
    let sums = vec4<f32>(
        workgroup_sum(acc.x, lane),
        workgroup_sum(acc.y, lane),
        workgroup_sum(acc.z, lane),
        workgroup_sum(acc.w, lane),
    );
    let n_tok = min(TOKENS, params.n_tokens - t0);
    if lane.index < n_tok {
        u_out[((t0 + lane.index) * params.k_parts + part) * params.rank_total + r] = sums[lane.index];
    }
}
