// attention: for query token t (absolute position p = q_pos0 + t) and query head h, with kv head
// g = h / (n_head / n_kv_head):
//   out[t][h] = Σ_{p'} softmax_{p'}(s(p')) · v[g](p'),  s(p') = softcap? (scale · q[t][h] · k[g](p'))
// over the positions p' that the causal mask (p' ≤ p) and the sliding window (p − p' < window, window 0 = none)
// allow. The caches are rings: position p' lives in slot p' % kv_capacity; the dispatcher has checked that every
// position a query needs is still in the ring. Softmax and accumulation are in f32, online (flash-attention
// style): a running max and normalizer are rescaled tile by tile, so no score row is ever materialised.
// Cache storage type T: f32, or f16 when F16 is defined (needs SHADER_F16); q and out are always f32.
// Bindings (group 0): 0 q: array<vec4<f32>> read [n_tokens][n_head][head_dim], 1 k_cache: array<vec4<T>> read
// [kv_capacity][n_kv_head][head_dim], 2 v_cache: array<vec4<T>> read (same layout), 3 dst: array<vec4<f32>>
// read_write, 4 params uniform. head_dim is a multiple of 4 and ≤ 4 · WG_SIZE.
//   Without SPLIT dst is out, [n_tokens][n_head][head_dim]. With SPLIT (flash decoding: few rows, many keys)
//   dst holds one partial result per (row, split): head_dim/4 vec4s of unnormalised Σ w·v, then
//   vec4(running max, Σ w, 0, 0); the COMBINE variant (include/attention_combine.wgsl) merges them into out.
// Dispatch: one workgroup of WG_SIZE invocations per (row, split), linear id row · n_splits + split with
// row = t · n_head + h (Grid::for_items(n_tokens · n_head · n_splits, 1)); ids past the end exit. Split s scores
// the row's visible positions [s · split_keys, (s + 1) · split_keys) and may be empty. Each tile of
// WG_SIZE / KEY_LANES positions takes three phases:
//   1. scores: KEY_LANES invocations per position each dot a strided slice of q and k (vec4s, four loads in
//      flight), the partial sums meet in workgroup memory;
//   2. softmax: every invocation takes the tile max, one invocation per position computes its weight;
//   3. values: invocation (part, col) accumulates vec4 column col of v over the tile's positions ≡ part
//      (mod n_parts), four positions' loads at a time, with n_parts = WG_SIZE / (head_dim / 4) partitions so
//      that small heads use every lane.
// The partitions' accumulators are summed at the end.

#include "include/attention_params.wgsl"

#ifdef COMBINE
#include "include/attention_combine.wgsl"
#else

#ifdef F16
alias KvVec = vec4<f16>;
#else
alias KvVec = vec4<f32>;
#endif

// Positions scored per tile.
const TILE_KEYS: u32 = WG_SIZE / KEY_LANES;

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_cache: array<KvVec>;
@group(0) @binding(2) var<storage, read> v_cache: array<KvVec>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: Params;

// The query row while scoring; after the last tile it holds the partitions' value accumulators instead (nobody
// reads q any more by then, and reusing it keeps the kernel well inside 16 KiB of workgroup memory).
var<workgroup> q_or_acc: array<vec4<f32>, WG_SIZE>;
var<workgroup> dot_parts: array<f32, WG_SIZE>;
var<workgroup> scores: array<f32, TILE_KEYS>;
var<workgroup> probs: array<f32, TILE_KEYS>;
// One softmax normalizer per value partition.
var<workgroup> part_sums: array<f32, WG_SIZE>;

// Part of q·k for one position: vec4 columns i, i + KEY_LANES, i + 2·KEY_LANES, i + 3·KEY_LANES (i < head_dim4).
// The four loads come first and past-the-end columns are clamped rather than branched around, so each
// invocation keeps four requests in flight: with one load per iteration, decode was bound by memory latency.
fn dot4_slice(k_base: u32, i: u32, head_dim4: u32) -> f32 {
    let last = head_dim4 - 1u;
    let i1 = i + KEY_LANES;
    let i2 = i1 + KEY_LANES;
    let i3 = i2 + KEY_LANES;
    let k0 = vec4<f32>(k_cache[k_base + i]);
    let k1 = vec4<f32>(k_cache[k_base + min(i1, last)]);
    let k2 = vec4<f32>(k_cache[k_base + min(i2, last)]);
    let k3 = vec4<f32>(k_cache[k_base + min(i3, last)]);
    var s = dot(q_or_acc[i], k0);
    if i1 < head_dim4 {
        s += dot(q_or_acc[i1], k1);
    }
    if i2 < head_dim4 {
        s += dot(q_or_acc[i2], k2);
    }
    if i3 < head_dim4 {
        s += dot(q_or_acc[i3], k3);
    }
    return s;
}

// Vec4 column `offset4` (kv head offset + column) of the value row for position `pos`.
fn v_col(pos: u32, slot_stride4: u32, offset4: u32) -> vec4<f32> {
    return vec4<f32>(v_cache[(pos % params.kv_capacity) * slot_stride4 + offset4]);
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // Uniform across the workgroup, so the early exit cannot split a barrier.
    let item = wid.x + wid.y * nwg.x;
    if item >= params.n_tokens * params.n_head * params.n_splits {
        return;
    }
    let row = item / params.n_splits;
    let split = item % params.n_splits;
    let head = row % params.n_head;
    let kv_head = head / (params.n_head / params.n_kv_head);
    let head_dim4 = params.head_dim / 4u;
    let pos = params.q_pos0 + row / params.n_head;
    var first_pos = 0u;
    if params.window != 0u && pos >= params.window {
        first_pos = pos + 1u - params.window;
    }
    // This split's share of the visible positions [first_pos, pos]: [key_pos0, key_pos0 + n_keys).
    let n_visible = pos + 1u - first_pos;
    let key_start = min(split * params.split_keys, n_visible);
    let n_keys = min(params.split_keys, n_visible - key_start);
    let key_pos0 = first_pos + key_start;
    // vec4s between the rows of consecutive slots, and the offset of this kv head inside a slot.
    let slot_stride4 = params.n_kv_head * head_dim4;
    let head_offset4 = kv_head * head_dim4;

    for (var i = lid; i < head_dim4; i += WG_SIZE) {
        q_or_acc[i] = q[row * head_dim4 + i];
    }
    workgroupBarrier();

    // Phase-1 role: which position of the tile this invocation scores, and its lane within that position.
    let tile_key = lid / KEY_LANES;
    let lane = lid % KEY_LANES;
    // Phase-3 role: the vec4 column of v and the partition of positions this invocation accumulates.
    let n_parts = WG_SIZE / head_dim4;
    let col = lid % head_dim4;
    let part = lid / head_dim4;

    var run_max = NEG_BIG;
    var run_sum = 0.0;
    var acc = vec4<f32>(0.0);
    for (var tile0 = 0u; tile0 < n_keys; tile0 += TILE_KEYS) {
        var partial = 0.0;
        if tile0 + tile_key < n_keys {
            let k_base = ((key_pos0 + tile0 + tile_key) % params.kv_capacity) * slot_stride4 + head_offset4;
            for (var i = lane; i < head_dim4; i += 4u * KEY_LANES) {
                partial += dot4_slice(k_base, i, head_dim4);
            }
        }
        dot_parts[lid] = partial;
        workgroupBarrier();

        if lid < TILE_KEYS {
            var s = NEG_BIG;
            if tile0 + lid < n_keys {
                var qk = 0.0;
                for (var l = 0u; l < KEY_LANES; l++) {
                    qk += dot_parts[lid * KEY_LANES + l];
                }
                s = qk * params.scale;
                if params.softcap > 0.0 {
                    s = params.softcap * tanh(s / params.softcap);
                }
            }
            scores[lid] = s;
        }
        workgroupBarrier();

        // Every invocation takes the same max, so the rescale factor needs no broadcast.
        var tile_max = NEG_BIG;
        for (var k = 0u; k < TILE_KEYS; k++) {
            tile_max = max(tile_max, scores[k]);
        }
        let new_max = max(run_max, tile_max);
        if lid < TILE_KEYS {
            // Positions past the end must weigh exactly 0, whatever NEG_BIG − new_max rounds to.
            probs[lid] = select(0.0, exp(scores[lid] - new_max), tile0 + lid < n_keys);
        }
        let rescale = exp(run_max - new_max);
        run_max = new_max;
        workgroupBarrier();

        acc *= rescale;
        run_sum *= rescale;
        if part < n_parts {
            let tile_keys = min(TILE_KEYS, n_keys - tile0);
            let tile_pos0 = key_pos0 + tile0;
            for (var k = part; k < tile_keys; k += 4u * n_parts) {
                // Four positions' loads issued before any is used (see dot4_slice).
                let k1 = k + n_parts;
                let k2 = k1 + n_parts;
                let k3 = k2 + n_parts;
                let v0 = v_col(tile_pos0 + k, slot_stride4, head_offset4 + col);
                let v1 = v_col(tile_pos0 + min(k1, tile_keys - 1u), slot_stride4, head_offset4 + col);
                let v2 = v_col(tile_pos0 + min(k2, tile_keys - 1u), slot_stride4, head_offset4 + col);
                let v3 = v_col(tile_pos0 + min(k3, tile_keys - 1u), slot_stride4, head_offset4 + col);
                let w0 = probs[k];
                let w1 = select(0.0, probs[min(k1, TILE_KEYS - 1u)], k1 < tile_keys);
                let w2 = select(0.0, probs[min(k2, TILE_KEYS - 1u)], k2 < tile_keys);
                let w3 = select(0.0, probs[min(k3, TILE_KEYS - 1u)], k3 < tile_keys);
                acc += w0 * v0 + w1 * v1 + w2 * v2 + w3 * v3;
                run_sum += w0 + w1 + w2 + w3;
            }
        }
    }

    // Every partition used the same running max, so partial accumulators and normalizers simply add.
    q_or_acc[lid] = acc;
    if part < n_parts && col == 0u {
        part_sums[part] = run_sum;
    }
    workgroupBarrier();
    if lid < head_dim4 {
        var total = vec4<f32>(0.0);
        var norm = 0.0;
        for (var k = 0u; k < n_parts; k++) {
            total += q_or_acc[k * head_dim4 + lid];
            norm += part_sums[k];
        }
#ifdef SPLIT
        // An empty split leaves (0, NEG_BIG, 0): weight 0 in the combine.
        let base = item * (head_dim4 + 1u);
        dst[base + lid] = total;
        if lid == 0u {
            dst[base + head_dim4] = vec4<f32>(run_max, norm, 0.0, 0.0);
        }
#else
        dst[row * head_dim4 + lid] = total / norm;
#endif
    }
}
#endif
