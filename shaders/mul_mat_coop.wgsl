// mul_mat_coop (prefill on matrix cores): y[t][y_first_row + r] = dot(W[r], x[t]), as mul_mat.wgsl computes it, with
// the tile's products on cooperative matrices: W in any weight type of include/quant_blocks.wgsl is dequantized and
// x converted to f16 in workgroup memory, and 16 × 16 × 16 f16 products accumulate in f32.
// Needs `wgpu_cooperative_matrix` with a 16 × 16 × 16 f16 → f32 configuration, and subgroups of exactly 32
// invocations (the host checks both): each subgroup owns a 32 × 32 piece of the tile (rows × tokens).
// Defines: TILE_TOKENS (64 or 128), the tile's tokens, and WG_SIZE = 2 · TILE_TOKENS invocations (one subgroup per
// piece). The wider tile dequantizes each W element once per 128 tokens instead of per 64.
// Bindings (group 0): as mul_mat.wgsl: 0 weights: array<u32> read, 1 x: array<vec4<f32>> read ([n_tokens][k]),
// 2 y: array<f32> read_write ([n_tokens][y_row_stride]), 3 params uniform.
// Dispatch: one workgroup per 64 × TILE_TOKENS tile of (rows, tokens) and split of k, Grid::for_items(n_splits ·
// n_row_tiles · n_token_tiles, 1), row tile fastest, split slowest; splits as in mul_mat.wgsl. Per step of 4 groups
// of k (32 positions, in group order as in mul_mat.wgsl, the same order for W and x), the workgroup dequantizes 64
// rows' four groups of W and loads TILE_TOKENS tokens' four groups of x; then each subgroup runs 2 × 2 × 2 matrix
// products. A tile that reaches past the rows or tokens, or whose place in
// y is not 16-byte aligned, stores through workgroup memory, so no write leaves y's valid rows and tokens.

#include "include/quant_blocks.wgsl"

const TILE_M: u32 = 64u; // rows per tile
const TILE_N: u32 = TILE_TOKENS; // tokens per tile
const TILE_K: u32 = 32u; // elements of k per step: 4 groups of 8
// Row length of the f16 tiles: TILE_K plus 8 halves, so that the 16 rows one product reads start in different banks
// while every row stays 16-byte aligned, as cooperative loads need.
const STRIDE: u32 = TILE_K + 8u;

struct Params {
    m_rows: u32,
    k: u32,
    n_tokens: u32,
    row_bytes: u32,
    y_first_row: u32,
    y_row_stride: u32,
    n_row_tiles: u32,
    groups_per_split: u32,
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> w_tile: array<f16, TILE_M * STRIDE>; // [row][k]: the B operand (Wᵀ), column-major
var<workgroup> x_tile: array<f16, TILE_N * STRIDE>; // [token][k]: the A operand, row-major
var<workgroup> edge: array<f32, WG_SIZE / 32u * 256u>; // one 16 × 16 result per subgroup, for tiles past the edge

// Stores one 16 × 16 result at tokens t0.., rows r0.. of the tile, inside y's valid rows and tokens only.
// `full` is uniform across the workgroup, so the barriers of the edge path are reached by all or none.
fn store_result(c: coop_mat16x16<f32, C>, sg: u32, lane: u32, y_base: u32, t0: u32, r0: u32, full: bool) {
    // Stride and offsets are bound to names first: naga 30's SPIR-V writer needs a cooperative store's operands
    // emitted before the store, which a bare uniform read is not.
    let stride = params.y_row_stride;
    let at = y_base + t0 * stride + params.y_first_row + r0;
    let edge_at = sg * 256u;
    let edge_stride = 16u;
    if full {
        coopStoreT(c, &y[at], stride);
        return;
    }
    coopStoreT(c, &edge[edge_at], edge_stride);
    workgroupBarrier();
    for (var i = lane; i < 256u; i += 32u) {
        let t = t0 + i / 16u;
        let r = r0 + i % 16u;
        if t < params.n_tokens && r < params.m_rows {
            y[y_base + t * params.y_row_stride + params.y_first_row + r] = edge[sg * 256u + i];
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
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
    // The subgroup's piece: tokens 32·(sg / 2).., rows 32·(sg % 2)..
    let qt = 32u * (sg / 2u);
    let qr = 32u * (sg % 2u);

    var acc00 = coop_mat16x16<f32, C>(); // acc{token half}{row half}
    var acc01 = coop_mat16x16<f32, C>();
    var acc10 = coop_mat16x16<f32, C>();
    var acc11 = coop_mat16x16<f32, C>();
    for (var k0 = g_begin; k0 < g_end; k0 += TILE_K / 8u) {
        // Loader roles: (row or token, group) pairs lid, lid + WG_SIZE, … of the step's TILE_N × 4; the first
        // TILE_M × 4 also load W.
        for (var pair = lid; pair < TILE_N * 4u; pair += WG_SIZE) {
            let idx = pair / 4u;
            let group = pair % 4u;
            let g = k0 + group;
            // Constant true in the square tile. Both loads come before either store, as in the square tile's first
            // form: a loop that stored W before loading x made the square tile ~20% slower on an H100.
            let loads_w = TILE_N == TILE_M || idx < TILE_M;
            var w = Group8(vec4<f32>(0.0), vec4<f32>(0.0));
            var xlo = vec4<f32>(0.0);
            var xhi = vec4<f32>(0.0);
            // Groups past k and rows/tokens past the edge load zeros.
            if g < g_end {
                let block = g / GROUPS_PER_BLOCK;
                let gb = g % GROUPS_PER_BLOCK;
                if loads_w && m0 + idx < params.m_rows {
                    w = dequant8((m0 + idx) * params.row_bytes + block * BLOCK_BYTES, gb);
                }
                if n0 + idx < params.n_tokens {
                    let xi = vec2<u32>((n0 + idx) * (params.k / 4u) + block * (BLOCK_ELEMS / 4u)) + group_runs(gb) / 4u;
                    xlo = x[xi.x];
                    xhi = x[xi.y];
                }
            }
            let at = idx * STRIDE + group * 8u;
            for (var i = 0u; i < 4u; i++) {
                if loads_w {
                    w_tile[at + i] = f16(w.lo[i]);
                    w_tile[at + 4u + i] = f16(w.hi[i]);
                }
                x_tile[at + i] = f16(xlo[i]);
                x_tile[at + 4u + i] = f16(xhi[i]);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk += 16u) {
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&x_tile[qt * STRIDE + kk], STRIDE);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&x_tile[(qt + 16u) * STRIDE + kk], STRIDE);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&w_tile[qr * STRIDE + kk], STRIDE);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&w_tile[(qr + 16u) * STRIDE + kk], STRIDE);
            acc00 = coopMultiplyAdd(a0, b0, acc00);
            acc01 = coopMultiplyAdd(a0, b1, acc01);
            acc10 = coopMultiplyAdd(a1, b0, acc10);
            acc11 = coopMultiplyAdd(a1, b1, acc11);
        }
        workgroupBarrier();
    }

    // A cooperative store's pointer and row stride must be 16-byte aligned (VK_KHR_cooperative_matrix): whole
    // tiles of a y whose row stride and first row are multiples of 4 floats store directly.
    let aligned = params.y_row_stride % 4u == 0u && params.y_first_row % 4u == 0u;
    let full = aligned && n0 + TILE_N <= params.n_tokens && m0 + TILE_M <= params.m_rows;
    store_result(acc00, sg, lane, y_base, n0 + qt, m0 + qr, full);
    store_result(acc01, sg, lane, y_base, n0 + qt, m0 + qr + 16u, full);
    store_result(acc10, sg, lane, y_base, n0 + qt + 16u, m0 + qr, full);
    store_result(acc11, sg, lane, y_base, n0 + qt + 16u, m0 + qr + 16u, full);
}
