// mul_mat_grad_q: the input gradient of y = x·Wᵀ for a weight W [m][k] in any type of include/quant_blocks.wgsl
// (the frozen base of QLoRA-style training), in f32:
//   dx[t][c] = Σ_r dy[t][r] · W[r][c]      for t < n tokens, c < k
// W is decoded a group of 8 elements at a time as it is read, never into memory, and each decoded group serves
// TOKENS tokens (a define: each re-read of W serves that many tokens). Every row length is a whole number of blocks.
// Bindings (group 0): 0 weights: array<u32> read ([m][k] in ggml blocks), 1 dy: array<f32> read ([n][m]),
// 2 dx: array<vec4<f32>> read_write ([n][k]), 3 params uniform. dx may not alias dy.
// Dispatch: one invocation per (split, block of TOKENS tokens, group of 8 elements along k), WG_SIZE per
// workgroup, spread over x and y: Grid::for_items(n_splits · ceil(n / TOKENS) · k / 8, WG_SIZE). Each walks the
// rows of its split (all m rows when n_splits is 1) for its group. With several splits, `dx` is the partials
// scratch [n_splits][n][k], and sum_splits.wgsl adds the splits into dx: a long row loop (an LM head's
// 262144 rows) in one invocation leaves the GPU nearly idle, one load at a time.

#include "include/quant_blocks.wgsl"

struct Params {
    n_items: u32,
    row_elems: u32,
    n_rows: u32,
    n_tokens: u32,
    row_bytes: u32,
    n_splits: u32,
    rows_per_split: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let index = (wid.x + wid.y * nwg.x) * WG_SIZE + lid;
    if index >= params.n_items * params.n_splits {
        return;
    }
    let split = index / params.n_items;
    let item = index % params.n_items;
    let groups_per_row = params.row_elems / 8u;
    let t0 = (item / groups_per_row) * TOKENS;
    let g = item % groups_per_row;
    let block_byte = (g / GROUPS_PER_BLOCK) * BLOCK_BYTES;
    let gb = g % GROUPS_PER_BLOCK;
    let tokens = min(TOKENS, params.n_tokens - t0);
    var lo: array<vec4<f32>, TOKENS>;
    var hi: array<vec4<f32>, TOKENS>;
    let r_end = min(params.n_rows, (split + 1u) * params.rows_per_split);
    for (var r = split * params.rows_per_split; r < r_end; r++) {
        let w = dequant8(r * params.row_bytes + block_byte, gb);
        for (var t = 0u; t < tokens; t++) {
            let d = dy[(t0 + t) * params.n_rows + r];
            lo[t] += d * w.lo;
            hi[t] += d * w.hi;
        }
    }
    let runs = group_runs(gb);
    let block_elem = (g / GROUPS_PER_BLOCK) * BLOCK_ELEMS;
    let split_vec4 = split * params.n_tokens * params.row_elems / 4u;
    for (var t = 0u; t < tokens; t++) {
        let row_vec4 = split_vec4 + ((t0 + t) * params.row_elems + block_elem) / 4u;
        dx[row_vec4 + runs.x / 4u] = lo[t];
        dx[row_vec4 + runs.y / 4u] = hi[t];
    }
}
