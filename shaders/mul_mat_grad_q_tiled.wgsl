// mul_mat_grad_q_tiled: the input gradient of y = x·Wᵀ for a weight W [m][k] in any type of
// include/quant_blocks.wgsl, for a sequence of tokens: the same sum as mul_mat_grad_q.wgsl,
//   dx[t][c] = Σ_r dy[t][r] · W[r][c]      for t < n tokens, c < k,
// on workgroup tiles like mul_mat.wgsl's with the roles of k and m swapped: the tile is TILE_C columns of k (a
// define: 64 or 256; TILE_C / 8 groups, in group order as there) × TILE_T = 4096 / TILE_C tokens (64 or 16: a
// training sequence, or the LM head's few rows at a time), and the inner sum walks W's rows, TILE_R = 2048 / TILE_C
// (32 or 8) per step. Each group of W is decoded once per TILE_T tokens (mul_mat_grad_q.wgsl: once per 4), and dy is
// read once per TILE_C columns.
// Bindings (group 0): 0 weights: array<u32> read ([m][k] in ggml blocks), 1 dy: array<f32> read ([n][m]),
// 2 dx: array<vec4<f32>> read_write ([n][k]), 3 params uniform. dx may not alias dy.
// Dispatch: one workgroup of 256 per (split, token tile, column tile), column tile fastest so that neighbours
// share dy's rows: Grid::for_items(n_splits · token_tiles · column_tiles, 1). With several splits each walks its
// rows_per_split rows and `dx` is the partials scratch [n_splits][n][k], summed by
// sum_splits.wgsl. Per step each invocation decodes one group of one row and loads its share of the step's dy
// into workgroup memory (8 KiB of W, at most 8 KiB of dy: within the 16 KiB WebGPU default), then accumulates
// 4 columns × 4 tokens.

#include "include/quant_blocks.wgsl"

const QUADS_C: u32 = TILE_C / 4u; // invocations along the columns, 4 each
const QUADS_T: u32 = 256u / QUADS_C; // and along the tokens
const TILE_T: u32 = 4u * QUADS_T;
const GROUPS_C: u32 = TILE_C / 8u;
const TILE_R: u32 = 256u / GROUPS_C; // rows of W per step: one group per invocation

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
@group(0) @binding(2) var<storage, read_write> dx: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> params: Params;

// [row][column quad] and [row][token quad]: the inner loop reads one vec4 of each per row.
var<workgroup> w_tile: array<vec4<f32>, TILE_R * QUADS_C>;
var<workgroup> dy_tile: array<vec4<f32>, TILE_R * QUADS_T>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
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

    // Loader roles. W: row `lid / 8` of the step, group `lid % 8` of the tile (the same group for all steps).
    let w_row = lid / GROUPS_C;
    let w_group = g0 + lid % GROUPS_C;
    let w_block_byte = (w_group / GROUPS_PER_BLOCK) * BLOCK_BYTES;
    let w_gb = w_group % GROUPS_PER_BLOCK;
    // Compute roles: columns 4·qc..4·qc+3 (half qc % 2 of group qc / 2) and tokens 4·qt..4·qt+3 of the tile.
    let qc = lid % QUADS_C;
    let qt = lid / QUADS_C;

    var acc: array<vec4<f32>, 4>; // acc[j][i]: token 4·qt + j, column 4·qc + i
    for (var r0 = r_begin; r0 < r_end; r0 += TILE_R) {
        // Rows past the split, groups past k (k need only be a multiple of 8) and tokens past n load zeros.
        let r = r0 + w_row;
        var w = Group8(vec4<f32>(0.0), vec4<f32>(0.0));
        if r < r_end && w_group < n_groups {
            w = dequant8(r * params.row_bytes + w_block_byte, w_gb);
        }
        w_tile[w_row * QUADS_C + 2u * (lid % GROUPS_C)] = w.lo;
        w_tile[w_row * QUADS_C + 2u * (lid % GROUPS_C) + 1u] = w.hi;
        // dy's TILE_T × TILE_R values of the step, rows fastest (consecutive invocations, consecutive words).
        for (var i = lid; i < TILE_T * TILE_R; i += 256u) {
            let t = t0 + i / TILE_R;
            let rr = i % TILE_R;
            var d = 0.0;
            if r0 + rr < r_end && t < params.n_tokens {
                d = dy[t * params.n_rows + r0 + rr];
            }
            dy_tile[rr * QUADS_T + (i / TILE_R) / 4u][(i / TILE_R) % 4u] = d;
        }
        workgroupBarrier();
        for (var rr = 0u; rr < TILE_R; rr++) {
            let a = w_tile[rr * QUADS_C + qc];
            let b = dy_tile[rr * QUADS_T + qt];
            acc[0] += a * b.x;
            acc[1] += a * b.y;
            acc[2] += a * b.z;
            acc[3] += a * b.w;
        }
        workgroupBarrier();
    }

    let g = g0 + qc / 2u;
    if g >= n_groups {
        return;
    }
    let runs = group_runs(g % GROUPS_PER_BLOCK);
    let run = select(runs.x, runs.y, qc % 2u == 1u);
    let column_vec4 = ((g / GROUPS_PER_BLOCK) * BLOCK_ELEMS + run) / 4u;
    let split_vec4 = split * params.n_tokens * (params.row_elems / 4u);
    for (var j = 0u; j < 4u; j++) {
        let t = t0 + 4u * qt + j;
        if t < params.n_tokens {
            dx[split_vec4 + t * (params.row_elems / 4u) + column_vec4] = acc[j];
        }
    }
}
