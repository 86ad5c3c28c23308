// mul_mat (prefill): y[t][y_first_row + r] = dot(W[r], x[t]) for a batch of tokens, W in any weight type of
// include/quant_blocks.wgsl; f32 activations, f32 workgroup tiles, f32 accumulation.
// Bindings (group 0): 0 weights: array<u32> read (W row-major [m_rows][k] in ggml blocks), 1 x: array<vec4<f32>>
// read ([n_tokens][k]), 2 y: array<f32> read_write ([n_tokens][y_row_stride]), 3 params uniform.
// Dispatch: one workgroup of 256 per 64×64 tile of (rows, tokens) and split of k:
// Grid::for_items(n_splits · n_row_tiles · n_token_tiles, 1), row tile fastest, split slowest. Split s sums groups
// s·groups_per_split.. of k (a multiple of 4) into y + s·n_tokens·y_row_stride: with several splits y is the
// partials scratch [n_splits][n_tokens][m_rows], which the host sums next. Per step of 4 groups of k (32
// positions, not always contiguous: see quant_blocks.wgsl), each invocation dequantizes one group of one W row and
// loads the same 8 positions of one x row into workgroup memory (stored k-major, 2 × 8 KiB: exactly the 16 KiB
// WebGPU default), then accumulates a 4-row × 4-token block of outputs from vec4 reads.

#include "include/quant_blocks.wgsl"

const TILE_M: u32 = 64u; // rows per tile: 16 invocations × 4
const TILE_N: u32 = 64u; // tokens per tile: 16 invocations × 4
const TILE_K: u32 = 32u; // elements of k per step: TILE_M · TILE_K / 8 = 256 groups, one per invocation
const QUADS_M: u32 = TILE_M / 4u;
const QUADS_N: u32 = TILE_N / 4u;

struct Params {
    m_rows: u32,
    k: u32,
    n_tokens: u32,
    row_bytes: u32,
    // As in mul_mat_vec: where this weight part's rows land in y, and y's row length.
    y_first_row: u32,
    y_row_stride: u32,
    n_row_tiles: u32,
    groups_per_split: u32,
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

// [k][row quad] and [k][token quad]: the inner loop reads one vec4 of each per k.
var<workgroup> w_tile: array<vec4<f32>, TILE_K * QUADS_M>;
var<workgroup> x_tile: array<vec4<f32>, TILE_K * QUADS_N>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Uniform across the workgroup, so the early exit cannot split a barrier.
    let linear = wid.x + wid.y * nwg.x;
    let n_tiles = params.n_row_tiles * ((params.n_tokens + TILE_N - 1u) / TILE_N);
    let tile = linear % n_tiles;
    let n_groups = params.k / 8u;
    let g_begin = (linear / n_tiles) * params.groups_per_split;
    // Workgroups past the last split (the grid's padding); with k = 0 split 0 still stores its zeros.
    if g_begin >= max(n_groups, 1u) {
        return;
    }
    let g_end = min(g_begin + params.groups_per_split, n_groups);
    let y_base = (linear / n_tiles) * params.n_tokens * params.y_row_stride;
    let m0 = (tile % params.n_row_tiles) * TILE_M;
    let n0 = (tile / params.n_row_tiles) * TILE_N;

    // Loader roles: W row / x token `lid / 4`, group `lid % 4` of the current k step.
    let load_idx = lid / 4u;
    let load_group = lid % 4u;
    let w_row = m0 + load_idx;
    let w_base = min(w_row, params.m_rows - 1u) * params.row_bytes;
    let x_token = n0 + load_idx;
    let x_base = min(x_token, params.n_tokens - 1u) * (params.k / 4u);
    // Compute roles: rows 4·qm..4·qm+3 and tokens 4·qn..4·qn+3 of the tile.
    let qm = lid % QUADS_M;
    let qn = lid / QUADS_M;

    var acc: array<vec4<f32>, 4>; // acc[j][i]: row 4·qm + i, token 4·qn + j
    for (var k0 = g_begin; k0 < g_end; k0 += TILE_K / 8u) {
        let g = k0 + load_group;
        var w = Group8(vec4<f32>(0.0), vec4<f32>(0.0));
        var xlo = vec4<f32>(0.0);
        var xhi = vec4<f32>(0.0);
        // Groups past k (k need only be a multiple of 8) and rows/tokens past the edge load zeros.
        if g < g_end {
            let block = g / GROUPS_PER_BLOCK;
            let gb = g % GROUPS_PER_BLOCK;
            if w_row < params.m_rows {
                w = dequant8(w_base + block * BLOCK_BYTES, gb);
            }
            if x_token < params.n_tokens {
                // The group's two runs of k; the tile holds them in group order, the same for W and x.
                let xi = vec2<u32>(x_base + block * (BLOCK_ELEMS / 4u)) + group_runs(gb) / 4u;
                xlo = x[xi.x];
                xhi = x[xi.y];
            }
        }
        let kk = load_group * 8u;
        let wq = load_idx / 4u;
        let wc = load_idx % 4u;
        for (var i = 0u; i < 4u; i++) {
            w_tile[(kk + i) * QUADS_M + wq][wc] = w.lo[i];
            w_tile[(kk + 4u + i) * QUADS_M + wq][wc] = w.hi[i];
            x_tile[(kk + i) * QUADS_N + wq][wc] = xlo[i];
            x_tile[(kk + 4u + i) * QUADS_N + wq][wc] = xhi[i];
        }
        workgroupBarrier();
        for (var kk2 = 0u; kk2 < TILE_K; kk2++) {
            let a = w_tile[kk2 * QUADS_M + qm];
            let b = x_tile[kk2 * QUADS_N + qn];
            acc[0] += a * b.x;
            acc[1] += a * b.y;
            acc[2] += a * b.z;
            acc[3] += a * b.w;
        }
        workgroupBarrier();
    }

    for (var j = 0u; j < 4u; j++) {
        let t = n0 + 4u * qn + j;
        if t < params.n_tokens {
            let out = y_base + t * params.y_row_stride + params.y_first_row;
            for (var i = 0u; i < 4u; i++) {
                let r = m0 + 4u * qm + i;
                if r < params.m_rows {
                    y[out + r] = acc[j][i];
                }
            }
        }
    }
}
