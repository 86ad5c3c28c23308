// lora_down: the down-projections of a LoRA group, u[t] = A·x[t] (every target of the group stacked in A):
//   u_out[t][r] = Σ_i A[r][i] · x[t][i]     for r < rank_total, t < n_tokens
// One workgroup per row r and block of 4 tokens: A has only a few dozen rows, so spreading rows (not tokens) over
// workgroups is what keeps a decode step's product from waiting on one workgroup's loads; each row of A is read
// once per block. Every invocation takes every WG_SIZE-th column, four columns per loop step so their loads are in
// flight together, then the workgroup sums each token's partials (include/reduce.wgsl).
// Bindings (group 0): 0 a: array<f32> read ([rank_total][in_dim]), 1 x: array<f32> read ([n_tokens][in_dim]),
// 2 u_out: array<f32> read_write ([n_tokens][rank_total]), 3 params uniform. u_out may not alias a or x.
// Dispatch: rank_total · ceil(n_tokens / 4) workgroups of WG_SIZE, row fastest (Grid::for_items).

#include "include/reduce.wgsl"

struct Params {
    in_dim: u32,
    rank_total: u32,
    n_tokens: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> u_out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

#include "include/row_entry.wgsl"

const TOKENS: u32 = 4u;

fn row_main(wg: u32, lane: Lane) {
    let r = wg % params.rank_total;
    let t0 = (wg / params.rank_total) * TOKENS;
    if t0 >= params.n_tokens {
        return;
    }
    let k = params.in_dim;
    // Tokens past the end repeat the last one (computed, never written), so the accumulator is never indexed
    // dynamically and every invocation reaches the reductions.
    let xt = (vec4<u32>(t0) + min(vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.n_tokens - 1u - t0))) * k;
    var acc = vec4<f32>(0.0);
    for (var i0 = lane.index; i0 < k; i0 += 4u * WG_SIZE) {
        for (var q = 0u; q < 4u; q++) {
            let i = i0 + q * WG_SIZE;
            if i < k {
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
        u_out[(t0 + lane.index) * params.rank_total + r] = sums[lane.index];
    }
}
