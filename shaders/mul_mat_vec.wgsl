// mul_mat_vec (decode): y[t][y_first_row + r] = dot(W[r], x[t]) for a few tokens t, W in any weight type of
// include/quant_chunks.wgsl, read in chunks of 32 elements; x, y and the accumulation are f32.
// GeGLU (GLU_STACKED or GLU_VECTOR, ggml mul_mat + geglu fused): y = gelu(W[r]·x) · u, where
//   GLU_STACKED: u = W[up_row_offset + r]·x, the up row of a [gate; up] stacked weight, read beside the gate row;
//   GLU_VECTOR:  u = up_vec[t·up_vec_stride + up_vec_offset + y_first_row + r] (Gemma 4's PLE gate times ple[l]).
// LORA adds a low-rank update to each product before its epilogue: W[r]·x[t] + Σ_j B[r][j]·u[t][j], with B
// `[m_rows][rank]` at `b_offset` of lora_b (already scaled) and u = A·x made beforehand (`[n_tokens][u_stride]`,
// this target's ranks from `u_offset`, each the sum of u_parts values part_stride apart: the attention merge
// makes o's u one part per head); with GLU_STACKED the up product has its own term. Each lane adds its
// share of the ranks to its partial sums, so the update rides on the reduction the product already does: a
// LoRA-adapted projection costs no dispatch of its own, and the base weights are read once.
// Bindings (group 0): 0 weights: array<vec4<u32>> (VEC4_WEIGHTS) or array<u32> read (W row-major [m_rows][k] in
// ggml blocks), 1 x: array<vec4<f32>> read ([n_tokens][k]), then GeGLU: 2 up_vec: array<f32> read (GLU_STACKED: x
// again, never read), 3 y; else 2 y: array<f32> read_write ([n_tokens][y_row_stride]). Then LORA: lora_b, lora_u:
// array<f32> read. Last: params uniform.
// Dispatch: workgroups of WG_SIZE = GROUPS row groups of LANES invocations; a group owns ROWS rows (4 for one
// token; 1 with MULTI_TOKEN, which serves 4 tokens per workgroup). Grid::for_items(n_row_blocks ·
// ceil(n_tokens / TOKENS), 1), row block fastest. Lane l of a group takes chunks l, l + LANES, … of its rows:
// neighbouring lanes read neighbouring 16-byte pieces of a row, and each lane loads the 32 x values of a chunk once
// for all of its rows (or decodes the chunk once for all 4 tokens). Reduction over a group's lanes: subgroup
// butterflies (SUBGROUPS) then a few workgroup-memory partials, or a workgroup tree.

#include "include/quant_chunks.wgsl"

const GROUPS: u32 = WG_SIZE / LANES;
#ifdef MULTI_TOKEN
const ROWS: u32 = 1u;
const TOKENS: u32 = 4u; // one vec4 lane per token
#else
const ROWS: u32 = 4u; // one vec4 lane per row
const TOKENS: u32 = 1u;
#endif

#ifdef LORA
// One product's low-rank update; rank 0 is none.
struct LoraTerm {
    rank: u32,
    b_offset: u32,
    u_offset: u32,
    u_stride: u32,
    u_parts: u32,
    part_stride: u32,
    _pad0: u32,
    _pad1: u32,
}
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
#ifdef GLU
    up_row_offset: u32,
    up_vec_offset: u32,
    up_vec_stride: u32,
    _pad1: u32,
#endif
#ifdef LORA
    lora_gate: LoraTerm, // the product's own update (the gate's with GLU)
    lora_up: LoraTerm,   // GLU_STACKED: the up product's; rank 0 elsewhere
#endif
}

#ifdef VEC4_WEIGHTS
@group(0) @binding(0) var<storage, read> weights: array<vec4<u32>>;
fn w128(word: u32) -> vec4<u32> {
    return weights[word >> 2u];
}
#else
@group(0) @binding(0) var<storage, read> weights: array<u32>;
fn w32(word: u32) -> u32 {
    return weights[word];
}
#endif
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
#ifdef GLU
#include "include/activation.wgsl"
@group(0) @binding(2) var<storage, read> up_vec: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
#ifdef LORA
@group(0) @binding(4) var<storage, read> lora_b: array<f32>;
@group(0) @binding(5) var<storage, read> lora_u: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;
#else
@group(0) @binding(4) var<uniform> params: Params;
#endif
#else
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
#ifdef LORA
@group(0) @binding(3) var<storage, read> lora_b: array<f32>;
@group(0) @binding(4) var<storage, read> lora_u: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;
#else
@group(0) @binding(3) var<uniform> params: Params;
#endif
#endif

var<workgroup> partials: array<vec4<f32>, WG_SIZE>;
#ifdef GLU_STACKED
var<workgroup> partials_up: array<vec4<f32>, WG_SIZE>;
#endif

#include "include/chunk_dot.wgsl"

// Chunk c of the 4 rows at byte offsets `bases` times one token's x chunk.
fn row_dots(bases: vec4<u32>, c: u32, xc: XChunk) -> vec4<f32> {
    let k = params.k;
    return vec4<f32>(
        chunk_dot(load_chunk(bases.x, c, k), xc),
        chunk_dot(load_chunk(bases.y, c, k), xc),
        chunk_dot(load_chunk(bases.z, c, k), xc),
        chunk_dot(load_chunk(bases.w, c, k), xc),
    );
}

// Chunk c of the row at byte offset `base`, decoded once, times the x chunks of 4 tokens (x rows at vec4 `xt`).
fn token_dots(base: u32, c: u32, runs: vec2<u32>, xt: vec4<u32>) -> vec4<f32> {
    let ch = load_chunk(base, c, params.k);
    return vec4<f32>(
        chunk_dot(ch, x_chunk(xt.x, runs)),
        chunk_dot(ch, x_chunk(xt.y, runs)),
        chunk_dot(ch, x_chunk(xt.z, runs)),
        chunk_dot(ch, x_chunk(xt.w, runs)),
    );
}

#ifdef LORA
// u[t][j] of `term` (j counted from the term's first rank): the sum of its parts.
fn lora_u_of(term: LoraTerm, t: u32, j: u32) -> f32 {
    let first = t * term.u_stride + term.u_offset + j;
    var u = 0.0;
    for (var p = 0u; p < term.u_parts; p++) {
        u += lora_u[first + p * term.part_stride];
    }
    return u;
}

// This lane's share (ranks j ≡ lane mod LANES) of `term`'s update for the rows and tokens of the accumulator,
// clamped like them to the last row and token.
fn lora_share(term: LoraTerm, row0: u32, t0: u32, n_tok: u32, lane: u32) -> vec4<f32> {
    var d = vec4<f32>(0.0);
    let last_row = params.m_rows - 1u;
    for (var j = lane; j < term.rank; j += LANES) {
#ifdef MULTI_TOKEN
        let bv = lora_b[term.b_offset + min(row0, last_row) * term.rank + j];
        let ts = vec4<u32>(t0) + min(vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(n_tok - 1u));
        let us = vec4<f32>(
            lora_u_of(term, ts.x, j),
            lora_u_of(term, ts.y, j),
            lora_u_of(term, ts.z, j),
            lora_u_of(term, ts.w, j),
        );
        d += bv * us;
#else
        let rows = min(vec4<u32>(row0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last_row));
        let bs = rows * term.rank + vec4<u32>(term.b_offset + j);
        let uv = lora_u_of(term, t0, j);
        d += uv * vec4<f32>(lora_b[bs.x], lora_b[bs.y], lora_b[bs.z], lora_b[bs.w]);
#endif
    }
    return d;
}
#endif

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
    let t0 = (linear / params.n_row_blocks) * TOKENS;
    if t0 >= params.n_tokens {
        return;
    }
    let n_tok = min(TOKENS, params.n_tokens - t0);
    let lane = lid % LANES;
    let row0 = (linear % params.n_row_blocks) * (GROUPS * ROWS) + (lid / LANES) * ROWS;
    let k4 = params.k / 4u;
    let n_chunks = (params.k + 31u) / 32u;
    // Rows past the end repeat the last row, and missing tokens the last token (computed, never written), so every
    // invocation reaches the barriers and the accumulators are never indexed dynamically.
    let last_row = vec4<u32>(params.m_rows - 1u);
#ifdef MULTI_TOKEN
    let bases = vec4<u32>(min(row0, params.m_rows - 1u) * params.row_bytes);
    let xt = (vec4<u32>(t0) + min(vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(n_tok - 1u))) * k4;
#else
    let bases = min(vec4<u32>(row0) + vec4<u32>(0u, 1u, 2u, 3u), last_row) * params.row_bytes;
    let xt = vec4<u32>(t0 * k4);
#endif
    var acc = vec4<f32>(0.0); // row row0 + j (one token) or token t0 + j (MULTI_TOKEN) in lane j
#ifdef GLU_STACKED
    let up_bases = bases + vec4<u32>(params.up_row_offset * params.row_bytes);
    var acc_up = vec4<f32>(0.0);
#endif
    for (var c = lane; c < n_chunks; c += LANES) {
        let runs = chunk_runs(c);
#ifdef MULTI_TOKEN
        acc += token_dots(bases.x, c, runs, xt);
#ifdef GLU_STACKED
        acc_up += token_dots(up_bases.x, c, runs, xt);
#endif
#else
        let xc = x_chunk(xt.x, runs);
        acc += row_dots(bases, c, xc);
#ifdef GLU_STACKED
        acc_up += row_dots(up_bases, c, xc);
#endif
#endif
    }
#ifdef LORA
    acc += lora_share(params.lora_gate, row0, t0, n_tok, lane);
#ifdef GLU_STACKED
    acc_up += lora_share(params.lora_up, row0, t0, n_tok, lane);
#endif
#endif

#ifdef SUBGROUPS
    // Butterflies within runs of s = min(LANES, subgroup size) lanes: both are powers of two and aligned, so a run
    // never crosses a group or a subgroup (subgroups hold consecutive invocation indices, as reduce.wgsl assumes
    // too). One partial per run goes through workgroup memory.
    let s = min(LANES, sg_size);
    for (var off = 1u; off < s; off <<= 1u) {
        acc += subgroupShuffleXor(acc, off);
#ifdef GLU_STACKED
        acc_up += subgroupShuffleXor(acc_up, off);
#endif
    }
    if lid % s == 0u {
        partials[lid / s] = acc;
#ifdef GLU_STACKED
        partials_up[lid / s] = acc_up;
#endif
    }
    workgroupBarrier();
    if lane == 0u {
        var total = vec4<f32>(0.0);
        var total_up = vec4<f32>(0.0);
        for (var i = lid / s; i < (lid + LANES) / s; i++) {
            total += partials[i];
#ifdef GLU_STACKED
            total_up += partials_up[i];
#endif
        }
        write_out(row0, t0, n_tok, total, total_up);
    }
#else
    partials[lid] = acc;
#ifdef GLU_STACKED
    partials_up[lid] = acc_up;
#endif
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
        if lane < stride {
            partials[lid] += partials[lid + stride];
#ifdef GLU_STACKED
            partials_up[lid] += partials_up[lid + stride];
#endif
        }
        workgroupBarrier();
    }
    if lane == 0u {
#ifdef GLU_STACKED
        write_out(row0, t0, n_tok, partials[lid], partials_up[lid]);
#else
        write_out(row0, t0, n_tok, partials[lid], vec4<f32>(0.0));
#endif
    }
#endif
}

// One finished output: `up` is its up product (GLU_STACKED), otherwise unused.
fn store(t: u32, row: u32, v: f32, up: f32) {
    let col = params.y_first_row + row;
#ifdef GLU_STACKED
    y[t * params.y_row_stride + col] = gelu(v) * up;
#else
#ifdef GLU_VECTOR
    y[t * params.y_row_stride + col] = gelu(v) * up_vec[t * params.up_vec_stride + params.up_vec_offset + col];
#else
    y[t * params.y_row_stride + col] = v;
#endif
#endif
}

// Lane j of `total` is row row0 + j of token t0, or (MULTI_TOKEN) token t0 + j of row row0.
fn write_out(row0: u32, t0: u32, n_tok: u32, total: vec4<f32>, up: vec4<f32>) {
#ifdef MULTI_TOKEN
    if row0 >= params.m_rows {
        return;
    }
    for (var j = 0u; j < n_tok; j++) {
        store(t0 + j, row0, total[j], up[j]);
    }
#else
    let n_rows = min(ROWS, params.m_rows - min(row0, params.m_rows));
    for (var j = 0u; j < n_rows; j++) {
        store(t0, row0 + j, total[j], up[j]);
    }
#endif
}
