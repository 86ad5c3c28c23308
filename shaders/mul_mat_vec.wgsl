// mul_mat_vec (decode): y[t][y_first_row + r] = dot(W[r], x[t]) for a few tokens t, W in any weight type of
// include/quant_blocks.wgsl, dequantized on the fly; x, y and the accumulation are f32.
// Bindings (group 0): 0 weights: array<u32> read (W row-major [m_rows][k] in ggml blocks), 1 x: array<vec4<f32>>
// read ([n_tokens][k]), 2 y: array<f32> read_write ([n_tokens][y_row_stride]), 3 params uniform.
// Dispatch: one workgroup of WG_SIZE per (ROWS_PER_WG rows, TOKENS_PER_WG tokens): Grid::for_items(n_row_blocks ·
// ceil(n_tokens / TOKENS_PER_WG), 1), row block fastest; TOKENS_PER_WG is 4 with MULTI_TOKEN, else 1 (decode).
// Each row gets THREADS_PER_ROW consecutive invocations; invocation i takes groups i, i + THREADS_PER_ROW, … of
// its row (8 weights from one word of quants, see quant_blocks.wgsl), so neighbours read neighbouring words of W
// and whole vec4s of x. Each weight is decoded once and used for all of the workgroup's tokens.
// Reduction per row: subgroup butterflies (SUBGROUPS) then a few workgroup-memory partials, or a workgroup tree.

#include "include/quant_blocks.wgsl"

const ROWS_PER_WG: u32 = WG_SIZE / THREADS_PER_ROW;
#ifdef MULTI_TOKEN
const TOKENS_PER_WG: u32 = 4u; // one vec4 lane per token
#else
const TOKENS_PER_WG: u32 = 1u;
#endif

struct Params {
    m_rows: u32,
    k: u32,
    n_tokens: u32,
    row_bytes: u32,
    // Column of y that row 0 of this weight part writes, and y's row length: a tensor split on rows across
    // bindings (SplitTensor) is dispatched once per part into the same y.
    y_first_row: u32,
    y_row_stride: u32,
    n_row_blocks: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> partials: array<vec4<f32>, WG_SIZE>;

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
#ifdef SUBGROUPS
    @builtin(subgroup_size) sg_size: u32,
#endif
) {
    // Uniform across the workgroup, so the early exit cannot split a barrier.
    let linear = wid.x + wid.y * nwg.x;
    let t0 = (linear / params.n_row_blocks) * TOKENS_PER_WG;
    if t0 >= params.n_tokens {
        return;
    }
    let n_tok = min(TOKENS_PER_WG, params.n_tokens - t0);
    let row = (linear % params.n_row_blocks) * ROWS_PER_WG + lid / THREADS_PER_ROW;
    let lane = lid % THREADS_PER_ROW;
    // Rows past the end repeat the last row, so every invocation reaches the barriers; they are never written.
    let base = min(row, params.m_rows - 1u) * params.row_bytes;
    let k4 = params.k / 4u;
    let x0 = t0 * k4;
    let n_groups = params.k / 8u;

#ifdef MULTI_TOKEN
    // x offsets of tokens t0 + 1..3; missing tokens repeat the last one (computed, never written), so the
    // accumulator is never indexed dynamically (which would put it in local memory).
    let xt = vec3<u32>(min(vec3<u32>(1u, 2u, 3u), vec3<u32>(n_tok - 1u))) * k4;
#endif
    var acc = vec4<f32>(0.0); // token t0 + j in lane j
    // UNROLL groups per iteration, so several independent loads are in flight per invocation. Groups past the row's
    // end are clamped to its last group and their products dropped, so the body has no branch.
    let last_group = n_groups - 1u;
    for (var g0 = lane; g0 < n_groups; g0 += THREADS_PER_ROW * UNROLL) {
        for (var u = 0u; u < UNROLL; u++) {
            let g_raw = g0 + u * THREADS_PER_ROW;
            let g = min(g_raw, last_group);
            let block = g / GROUPS_PER_BLOCK;
            let gb = g % GROUPS_PER_BLOCK;
            let w = dequant8(base + block * BLOCK_BYTES, gb);
            let xi = vec2<u32>(x0 + block * (BLOCK_ELEMS / 4u)) + group_runs(gb) / 4u;
#ifdef MULTI_TOKEN
            let p = vec4<f32>(
                dot(w.lo, x[xi.x]) + dot(w.hi, x[xi.y]),
                dot(w.lo, x[xi.x + xt.x]) + dot(w.hi, x[xi.y + xt.x]),
                dot(w.lo, x[xi.x + xt.y]) + dot(w.hi, x[xi.y + xt.y]),
                dot(w.lo, x[xi.x + xt.z]) + dot(w.hi, x[xi.y + xt.z]),
            );
            acc += select(vec4<f32>(0.0), p, g_raw <= last_group);
#else
            acc.x += select(0.0, dot(w.lo, x[xi.x]) + dot(w.hi, x[xi.y]), g_raw <= last_group);
#endif
        }
    }

#ifdef SUBGROUPS
    // Butterflies within runs of c = min(THREADS_PER_ROW, subgroup size) lanes: both are powers of two and aligned,
    // so a run never crosses a row or a subgroup (subgroups hold consecutive invocation indices, as reduce.wgsl
    // assumes too). One partial per run goes through workgroup memory.
    let c = min(THREADS_PER_ROW, sg_size);
    for (var off = 1u; off < c; off <<= 1u) {
        acc += subgroupShuffleXor(acc, off);
    }
    if lid % c == 0u {
        partials[lid / c] = acc;
    }
    workgroupBarrier();
    if lane == 0u {
        var total = vec4<f32>(0.0);
        for (var i = lid / c; i < (lid + THREADS_PER_ROW) / c; i++) {
            total += partials[i];
        }
        write_row(row, t0, n_tok, total);
    }
#else
    partials[lid] = acc;
    workgroupBarrier();
    for (var stride = THREADS_PER_ROW / 2u; stride > 0u; stride /= 2u) {
        if lane < stride {
            partials[lid] += partials[lid + stride];
        }
        workgroupBarrier();
    }
    if lane == 0u {
        write_row(row, t0, n_tok, partials[lid]);
    }
#endif
}

fn write_row(row: u32, t0: u32, n_tok: u32, total: vec4<f32>) {
    if row >= params.m_rows {
        return;
    }
    for (var j = 0u; j < n_tok; j++) {
        y[(t0 + j) * params.y_row_stride + params.y_first_row + row] = total[j];
    }
}
