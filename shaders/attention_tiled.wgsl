// attention_tiled: attention.wgsl's attention (the math, the mask and the cache rings are described there) for
// prompt chunks, which have many query rows per kv head. A workgroup takes a block of BLOCK_ROWS rows that read
// one kv head and walks the positions any of them sees in tiles of TILE_KEYS, so each key is loaded once per block
// and each value once per row group (phase 3 below) rather than both once per row. The rows of kv head g, in
// order: row j is token j / G, query head g · G + j % G, with G = n_head / n_kv_head. Online softmax in f32, as in
// attention.wgsl.
// Cache storage type T: f32, or f16 when F16 is defined (needs SHADER_F16); q and out are always f32. HEAD_DIM (64,
// 128, 256 or 512) is a compile-time constant, so each invocation's value accumulators are registers.
// Bindings (group 0): 0 q: array<vec4<f32>> read [n_tokens][n_head][HEAD_DIM], 1 k_cache, 2 v_cache:
// array<vec4<T>> read [kv_capacity][n_kv_head][HEAD_DIM], 3 out: array<vec4<f32>> read_write (layout of q), 4
// params uniform (attention.wgsl's; n_splits and split_keys are not read).
// Dispatch: Grid::for_items(n_kv_head · n_blocks, 1) with n_blocks = ⌈n_tokens · G / BLOCK_ROWS⌉; workgroup i
// takes kv head i % n_kv_head and block n_blocks − 1 − i / n_kv_head, so the blocks of the latest tokens, which
// see the most positions, start first. Positions are walked as offsets from the block's first one, so nothing
// wraps near the end of the u32 range. WG_SIZE is BLOCK_ROWS · 16. Each tile of positions takes three phases:
//   1. scores: invocation (r, c) = (lid / 16, lid % 16) scores row r against the tile's positions c and c + 16,
//      over HEAD_DIM in chunks of 16 vec4s that the workgroup stages in workgroup memory (q rows, then keys);
//   2. softmax: the same invocation masks and scales its two scores; the 16 invocations of a row meet in
//      workgroup memory for the tile max, and each keeps its share of the row's running sum;
//   3. values: invocation (g, col) = (lid / HEAD_DIM4, lid % HEAD_DIM4) adds weight · v to vec4 column col of its
//      ROWS_PER rows g · ROWS_PER…, reading v from the cache.

#include "include/attention_params.wgsl"

#ifdef F16
alias KvVec = vec4<f16>;
#else
alias KvVec = vec4<f32>;
#endif

const BLOCK_ROWS: u32 = 16u;
const TILE_KEYS: u32 = 32u;
// Vec4s of a head staged per chunk, and the padded stride of a staged key (consecutive lanes read consecutive
// keys' chunks; the pad puts them in different banks).
const CHUNK4: u32 = 16u;
const KEY_STRIDE4: u32 = CHUNK4 + 1u;
const HEAD_DIM4: u32 = HEAD_DIM / 4u;
const N_CHUNKS: u32 = HEAD_DIM4 / CHUNK4;
const ROW_GROUPS: u32 = WG_SIZE / HEAD_DIM4;
const ROWS_PER: u32 = BLOCK_ROWS / ROW_GROUPS;

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_cache: array<KvVec>;
@group(0) @binding(2) var<storage, read> v_cache: array<KvVec>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: Params;

var<workgroup> q_chunk: array<vec4<f32>, BLOCK_ROWS * CHUNK4>;
var<workgroup> k_chunk: array<vec4<f32>, TILE_KEYS * KEY_STRIDE4>;
// Phase 2 → 3: the tile's weights per row, and the factor each row's accumulators are rescaled by.
var<workgroup> weights: array<f32, BLOCK_ROWS * TILE_KEYS>;
var<workgroup> row_rescale: array<f32, BLOCK_ROWS>;
// Per invocation: its two scores' max while taking the tile max; at the end, its share of the row's sum.
var<workgroup> lane_vals: array<f32, WG_SIZE>;

// The oldest position a query at `pos` sees.
fn first_visible(pos: u32) -> u32 {
    if params.window != 0u && pos >= params.window {
        return pos + 1u - params.window;
    }
    return 0u;
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let group_size = params.n_head / params.n_kv_head;
    let group_rows = params.n_tokens * group_size;
    let n_blocks = (group_rows + BLOCK_ROWS - 1u) / BLOCK_ROWS;
    // Uniform across the workgroup, so the early exit cannot split a barrier.
    let item = wid.x + wid.y * nwg.x;
    if item >= params.n_kv_head * n_blocks {
        return;
    }
    let kv_head = item % params.n_kv_head;
    let row0 = (n_blocks - 1u - item / params.n_kv_head) * BLOCK_ROWS;
    let last_row = min(row0 + BLOCK_ROWS, group_rows) - 1u;
    // The block's positions: from what its first token sees to its last token.
    let key_begin = first_visible(params.q_pos0 + row0 / group_size);
    let n_keys = params.q_pos0 + last_row / group_size + 1u - key_begin;
    let slot_stride4 = params.n_kv_head * HEAD_DIM4;
    let head_offset4 = kv_head * HEAD_DIM4;

    // Phases 1–2: row r of the block, positions c and c + 16 of each tile.
    let r = lid / 16u;
    let c = lid % 16u;
    let row_valid = row0 + r <= last_row;
    let token = min(row0 + r, last_row) / group_size;
    let q_base = (token * params.n_head + kv_head * group_size + (row0 + r) % group_size) * HEAD_DIM4;
    let pos = params.q_pos0 + token;
    let first = first_visible(pos);
    var run_max = NEG_BIG;
    // This invocation's share of its row's Σ weights (its two positions of every tile), rescaled with the row.
    var run_sum = 0.0;

    // Phase 3: vec4 column col of rows g · ROWS_PER….
    let col = lid % HEAD_DIM4;
    let g = lid / HEAD_DIM4;
    var acc: array<vec4<f32>, ROWS_PER>;

    for (var tile0 = 0u; tile0 < n_keys; tile0 += TILE_KEYS) {
        var s0 = 0.0;
        var s1 = 0.0;
        for (var chunk = 0u; chunk < N_CHUNKS; chunk++) {
            let offset4 = chunk * CHUNK4 + c;
            q_chunk[lid] = select(vec4<f32>(0.0), q[q_base + offset4], row_valid);
            // Offsets past n_keys (the last tile's tail) load the last position: finite, and weighted 0 below.
            let key_pos0 = key_begin + min(tile0 + r, n_keys - 1u);
            let key_pos1 = key_begin + min(tile0 + r + 16u, n_keys - 1u);
            k_chunk[r * KEY_STRIDE4 + c] =
                vec4<f32>(k_cache[(key_pos0 % params.kv_capacity) * slot_stride4 + head_offset4 + offset4]);
            k_chunk[(r + 16u) * KEY_STRIDE4 + c] =
                vec4<f32>(k_cache[(key_pos1 % params.kv_capacity) * slot_stride4 + head_offset4 + offset4]);
            workgroupBarrier();
            for (var i = 0u; i < CHUNK4; i++) {
                let qv = q_chunk[r * CHUNK4 + i];
                s0 += dot(qv, k_chunk[c * KEY_STRIDE4 + i]);
                s1 += dot(qv, k_chunk[(c + 16u) * KEY_STRIDE4 + i]);
            }
            workgroupBarrier();
        }

        s0 *= params.scale;
        s1 *= params.scale;
        if params.softcap > 0.0 {
            s0 = params.softcap * tanh(s0 / params.softcap);
            s1 = params.softcap * tanh(s1 / params.softcap);
        }
        let off0 = tile0 + c;
        let off1 = off0 + 16u;
        let p0 = key_begin + min(off0, n_keys - 1u);
        let p1 = key_begin + min(off1, n_keys - 1u);
        let visible0 = row_valid && off0 < n_keys && p0 >= first && p0 <= pos;
        let visible1 = row_valid && off1 < n_keys && p1 >= first && p1 <= pos;
        lane_vals[lid] = max(select(NEG_BIG, s0, visible0), select(NEG_BIG, s1, visible1));
        workgroupBarrier();
        var tile_max = NEG_BIG;
        for (var i = 0u; i < 16u; i++) {
            tile_max = max(tile_max, lane_vals[r * 16u + i]);
        }
        // The 16 invocations of a row read the same values, so they agree on the max without a broadcast.
        let new_max = max(run_max, tile_max);
        let rescale = exp(run_max - new_max);
        run_max = new_max;
        // Hidden positions must weigh exactly 0, whatever NEG_BIG − new_max rounds to.
        let w0 = select(0.0, exp(s0 - new_max), visible0);
        let w1 = select(0.0, exp(s1 - new_max), visible1);
        run_sum = run_sum * rescale + w0 + w1;
        weights[r * TILE_KEYS + c] = w0;
        weights[r * TILE_KEYS + c + 16u] = w1;
        if c == 0u {
            row_rescale[r] = rescale;
        }
        workgroupBarrier();

        // The next tile writes weights, row_rescale and lane_vals only after its first chunk's barrier.
        for (var i = 0u; i < ROWS_PER; i++) {
            acc[i] *= row_rescale[g * ROWS_PER + i];
        }
        for (var k = 0u; k < TILE_KEYS; k++) {
            let v_pos = key_begin + min(tile0 + k, n_keys - 1u);
            let v = vec4<f32>(v_cache[(v_pos % params.kv_capacity) * slot_stride4 + head_offset4 + col]);
            for (var i = 0u; i < ROWS_PER; i++) {
                acc[i] += weights[(g * ROWS_PER + i) * TILE_KEYS + k] * v;
            }
        }
    }

    lane_vals[lid] = run_sum;
    workgroupBarrier();
    for (var i = 0u; i < ROWS_PER; i++) {
        let row = g * ROWS_PER + i;
        if row0 + row <= last_row {
            var sum = 0.0;
            for (var j = 0u; j < 16u; j++) {
                sum += lane_vals[row * 16u + j];
            }
            let out_token = (row0 + row) / group_size;
            let head = kv_head * group_size + (row0 + row) % group_size;
            out[(out_token * params.n_head + head) * HEAD_DIM4 + col] = acc[i] / sum;
        }
    }
}
