// mul_mat_grad_q_coop: the input gradient of y = x·Wᵀ on matrix cores, the sum mul_mat_grad_q_tiled.wgsl takes
// with its square tile,
//   dx[t][c] = Σ_r dy[t][r] · W[r][c]      for t < n tokens, c < k,
// for W [m][k] in any type of include/quant_blocks.wgsl: per step of 32 rows of W, W's groups are dequantized and dy
// converted to f16 in workgroup memory, and 16 × 16 × 16 f16 products accumulate in f32.
// dy is scaled per token before the f16 rounding: a token-mean loss makes gradients of ~1e-8, under f16's smallest
// normal (6.1e-5), so each token's dy is multiplied by the power of two that brings its largest value (over the
// rows this workgroup walks) into [0.5, 1), and the token's sums are divided by it after (both exact).
// Needs `wgpu_cooperative_matrix` with a 16 × 16 × 16 f16 → f32 configuration and subgroups of exactly 32 (the
// host checks both): the four subgroups each own a 32 tokens × 32 columns quarter of the 64 × 64 tile.
// Bindings (group 0): as mul_mat_grad_q_tiled.wgsl: 0 weights: array<u32> read ([m][k] in ggml blocks), 1 dy:
// array<f32> read ([n][m]), 2 dx: array<f32> read_write ([n][k], or the [n_splits][n][k] partials), 3 params.
// Dispatch: as mul_mat_grad_q_tiled.wgsl with TILE_C = 64: one workgroup of 128 per (split, token tile, column
// tile), column tile fastest, Grid::for_items(n_splits · token_tiles · column_tiles, 1). The tile's columns are in
// group order (each group's two runs of 4, as dequant8 returns them), so results go to dx through workgroup memory.

#include "include/quant_blocks.wgsl"

const TILE_C: u32 = 64u; // columns of W per tile
const TILE_T: u32 = 64u; // tokens per tile
const TILE_R: u32 = 32u; // rows of W per step
const GROUPS_C: u32 = TILE_C / 8u;
// Row lengths of the f16 tiles, 8 halves over: rows start in different banks and stay 16-byte aligned, as
// cooperative loads need.
const W_STRIDE: u32 = TILE_C + 8u;
const DY_STRIDE: u32 = TILE_R + 8u;

struct Params {
    n_rows: u32,
    row_elems: u32,
    n_tokens: u32,
    row_bytes: u32,
    n_column_tiles: u32,
    n_token_tiles: u32,
    n_splits: u32,
    rows_per_split: u32,
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> w_tile: array<f16, TILE_R * W_STRIDE>; // [row][column]: the B operand, row-major
var<workgroup> dy_tile: array<f16, TILE_T * DY_STRIDE>; // [token][row]: the A operand, row-major
var<workgroup> token_exp: array<i32, TILE_T>; // e: each token's dy was scaled by 2^-e, its sums are scaled by 2^e
var<workgroup> result: array<f32, 4u * 256u>; // one 16 × 16 result per subgroup on its way to dx

// Writes one 16 × 16 result (tokens t0.., tile columns c0..) to dx at the columns the tile's group order stands
// for, each token's sums scaled back, inside dx's valid tokens and columns only.
fn store_result(c: coop_mat16x16<f32, C>, sg: u32, lane: u32, tt0: u32, c0: u32, t_base: u32, g0: u32, out0: u32) {
    let at = sg * 256u;
    let stride = 16u;
    coopStoreT(c, &result[at], stride);
    workgroupBarrier();
    let n_groups = params.row_elems / 8u;
    for (var i = lane; i < 256u; i += 32u) {
        let tt = tt0 + i / 16u;
        let j = c0 + i % 16u; // column of the tile, in group order
        let t = t_base + tt;
        let g = g0 + j / 8u;
        if t < params.n_tokens && g < n_groups {
            let gb = g % GROUPS_PER_BLOCK;
            let runs = group_runs(gb);
            let e = j % 8u;
            let run = select(runs.x + e, runs.y + e - 4u, e >= 4u);
            let column = (g / GROUPS_PER_BLOCK) * BLOCK_ELEMS + run;
            dx[out0 + t * params.row_elems + column] = ldexp(result[at + i], token_exp[tt]);
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(128)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    // Uniform across the workgroup, so the early exit cannot split a barrier.
    let linear = wid.x + wid.y * nwg.x;
    let column_tile = linear % params.n_column_tiles;
    let token_tile = (linear / params.n_column_tiles) % params.n_token_tiles;
    let split = linear / (params.n_column_tiles * params.n_token_tiles);
    if split >= params.n_splits {
        return;
    }
    let n_groups = params.row_elems / 8u;
    let g0 = column_tile * GROUPS_C;
    let t0 = token_tile * TILE_T;
    let r_begin = split * params.rows_per_split;
    let r_end = min(params.n_rows, r_begin + params.rows_per_split);

    // Each token's scale: a subgroup per token, 16 tokens per subgroup, the largest |dy| over this split's rows.
    for (var tt = sg; tt < TILE_T; tt += 4u) {
        let t = t0 + tt;
        var largest = 0.0;
        if t < params.n_tokens {
            for (var r = r_begin + lane; r < r_end; r += 32u) {
                largest = max(largest, abs(dy[t * params.n_rows + r]));
            }
        }
        largest = subgroupMax(largest);
        if lane == 0u {
            // largest = f · 2^e with f in [0.5, 1): dy · 2^-e has its largest value in [0.5, 1). Zero stays unscaled;
            // e stays within ±126, where ldexp is exact both ways.
            token_exp[tt] = select(0, clamp(frexp(largest).exp, -126, 126), largest > 0.0);
        }
    }
    workgroupBarrier();

    // The subgroup's quarter: tokens 32·(sg / 2).., columns 32·(sg % 2)..
    let qt = 32u * (sg / 2u);
    let qc = 32u * (sg % 2u);
    var acc00 = coop_mat16x16<f32, C>(); // acc{token half}{column half}
    var acc01 = coop_mat16x16<f32, C>();
    var acc10 = coop_mat16x16<f32, C>();
    var acc11 = coop_mat16x16<f32, C>();
    for (var r0 = r_begin; r0 < r_end; r0 += TILE_R) {
        // W: the step's 32 rows × 8 groups, two (row, group) pairs per invocation. Rows past the split and groups
        // past k load zeros.
        for (var pair = lid; pair < TILE_R * GROUPS_C; pair += 128u) {
            let rr = pair / GROUPS_C;
            let gl = pair % GROUPS_C;
            let r = r0 + rr;
            let g = g0 + gl;
            var w = Group8(vec4<f32>(0.0), vec4<f32>(0.0));
            if r < r_end && g < n_groups {
                w = dequant8(r * params.row_bytes + (g / GROUPS_PER_BLOCK) * BLOCK_BYTES, g % GROUPS_PER_BLOCK);
            }
            let at = rr * W_STRIDE + gl * 8u;
            for (var i = 0u; i < 4u; i++) {
                w_tile[at + i] = f16(w.lo[i]);
                w_tile[at + 4u + i] = f16(w.hi[i]);
            }
        }
        // dy: the step's 64 tokens × 32 rows, rows fastest (consecutive invocations, consecutive words), scaled.
        for (var i = lid; i < TILE_T * TILE_R; i += 128u) {
            let tt = i / TILE_R;
            let rr = i % TILE_R;
            let t = t0 + tt;
            var d = 0.0;
            if r0 + rr < r_end && t < params.n_tokens {
                d = ldexp(dy[t * params.n_rows + r0 + rr], -token_exp[tt]);
            }
            dy_tile[tt * DY_STRIDE + rr] = f16(d);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_R; kk += 16u) {
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&dy_tile[qt * DY_STRIDE + kk], DY_STRIDE);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&dy_tile[(qt + 16u) * DY_STRIDE + kk], DY_STRIDE);
            let b0 = coopLoadT<coop_mat16x16<f16, B>>(&w_tile[kk * W_STRIDE + qc], W_STRIDE);
            let b1 = coopLoadT<coop_mat16x16<f16, B>>(&w_tile[kk * W_STRIDE + qc + 16u], W_STRIDE);
            acc00 = coopMultiplyAdd(a0, b0, acc00);
            acc01 = coopMultiplyAdd(a0, b1, acc01);
            acc10 = coopMultiplyAdd(a1, b0, acc10);
            acc11 = coopMultiplyAdd(a1, b1, acc11);
        }
        workgroupBarrier();
    }

    let out0 = split * params.n_tokens * params.row_elems;
    store_result(acc00, sg, lane, qt, qc, t0, g0, out0);
    store_result(acc01, sg, lane, qt, qc + 16u, t0, g0, out0);
    store_result(acc10, sg, lane, qt + 16u, qc, t0, g0, out0);
    store_result(acc11, sg, lane, qt + 16u, qc + 16u, t0, g0, out0);
}
