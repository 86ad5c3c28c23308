// attention_back: the gradients of attention.wgsl's forward for a training chunk that starts at position 0 and
// attends to its own keys (K and V are [n_tokens][n_kv_head][head_dim], key j at position j), all f32. For query row
// (t, h), kv head g = h / G (G = n_head / n_kv_head), visible keys j ≤ t with t − j < window (window 0 = none):
//   z_j = scale·q·k_j,  s_j = softcap? c·tanh(z_j / c) : z_j,  p = softmax(s),  out = Σ_j p_j·v_j,
//   dp_j = dO·v_j,  D = Σ_j p_j·dp_j,  dz_j = p_j·(dp_j − D)·(softcap? 1 − (s_j / c)² : 1)
//   dq = scale·Σ_j dz_j·k_j,  dk_j = scale·Σ_{rows of g} dz_j·q,  dv_j = Σ_{rows of g} p_j·dO
// As matrix products per kv head g over its n·G query rows r = t·G + hh (head g·G + hh), through two
// [n_tokens·n_head][n_tokens] tables (row t·n_head + h), in five passes, one define each:
//   SCORES:  z = scale·Q·Kᵀ into `probs` and dP = dO·Vᵀ into `dscores`;
//   ROWS:    per table row, p and dz in place (0 where j is not visible);
//   DQ:      dQ = scale·dZ·K;
//   DKV:     dZᵀ·Q and Pᵀ·dO over one chunk of `chunk_rows` query rows each, into `parts`;
//   DKV_SUM: dK = scale·Σ_chunks and dV = Σ_chunks of the parts, in chunk order.
// DKV's sums run over up to n·G rows for only n_kv_head·(n / 64)·(head_dim / 64) output tiles: chunking the rows
// gives the GPU more workgroups of even length (the first key tile sees every row, the last the fewest).
// The products run on 64 × 64 output tiles (4 × 4 per invocation) with 16 elements of the inner sum per step staged
// in workgroup memory (at most four 4 KiB tiles: the 16 KiB WebGPU default); tiles and steps that the causal mask
// and the window leave empty are skipped (a DKV chunk with no visible row writes zeros).
// Bindings (group 0), last the params uniform: SCORES: 0 q, 1 k, 2 v, 3 d_out read, 4 probs, 5 dscores
// read_write; ROWS: 0 probs, 1 dscores read_write; DQ: 0 k, 1 dscores read, 2 dq read_write; DKV: 0 q, 1 d_out,
// 2 probs, 3 dscores read, 4 parts read_write ([2][chunks][n_tokens·n_kv_head·head_dim]: dK's, then dV's);
// DKV_SUM: 0 parts read, 1 dk, 2 dv read_write.
// Dispatch (Grid::for_items(n, 1)): SCORES n_kv_head · row tiles · key tiles; ROWS n_tokens · n_head; DQ n_kv_head ·
// row tiles · head_dim tiles; DKV n_kv_head · key tiles · chunks · head_dim tiles (tiles of 64, the last index
// fastest); DKV_SUM n_tokens · n_kv_head · head_dim / WG_SIZE.

struct Params {
    n_tokens: u32,
    n_head: u32,
    n_kv_head: u32,
    head_dim: u32,
    // 0 = no sliding window.
    window: u32,
    scale: f32,
    // 0 = no logit softcap.
    softcap: f32,
    // DKV's query rows per chunk, a multiple of STEP.
    chunk_rows: u32,
}

#ifdef SCORES
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> d_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> probs: array<f32>;
@group(0) @binding(5) var<storage, read_write> dscores: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;
#endif
#ifdef ROWS
@group(0) @binding(0) var<storage, read_write> probs: array<f32>;
@group(0) @binding(1) var<storage, read_write> dscores: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
#endif
#ifdef DQ
@group(0) @binding(0) var<storage, read> k: array<f32>;
@group(0) @binding(1) var<storage, read> dscores: array<f32>;
@group(0) @binding(2) var<storage, read_write> dq: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
#endif
#ifdef DKV
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> d_out: array<f32>;
@group(0) @binding(2) var<storage, read> probs: array<f32>;
@group(0) @binding(3) var<storage, read> dscores: array<f32>;
@group(0) @binding(4) var<storage, read_write> parts: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;
#endif
#ifdef DKV_SUM
@group(0) @binding(0) var<storage, read> parts: array<f32>;
@group(0) @binding(1) var<storage, read_write> dk: array<f32>;
@group(0) @binding(2) var<storage, read_write> dv: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
#endif

// Query rows that share one kv head.
fn group_size() -> u32 {
    return params.n_head / params.n_kv_head;
}

fn chunks() -> u32 {
    return (params.n_tokens * group_size() + params.chunk_rows - 1u) / params.chunk_rows;
}

fn visible(t: u32, j: u32) -> bool {
    return j <= t && (params.window == 0u || t - j < params.window);
}

#ifdef ROWS
#include "include/reduce.wgsl"
#include "include/reduce_max.wgsl"

// Stands in for −inf as the starting maximum (WGSL constants may not be infinite).
const NO_MAX: f32 = -3.0e38;

fn capped(z: f32) -> f32 {
    if params.softcap > 0.0 {
        return params.softcap * tanh(clamp(z / params.softcap, -10.0, 10.0));
    }
    return z;
}

#include "include/row_entry.wgsl"

// Each lane owns keys j ≡ lane (mod WG_SIZE) and reads and writes only those: no barrier between the loops. The
// first loop leaves the capped score s_j in `probs` for the other two.
fn row_main(wg: u32, lane: Lane) {
    let n = params.n_tokens;
    if wg >= n * params.n_head {
        return;
    }
    let t = wg / params.n_head;
    let table = wg * n;
    var local_max = NO_MAX;
    var local_sum = 0.0;
    for (var j = lane.index; j < n; j += WG_SIZE) {
        if visible(t, j) {
            let s = capped(probs[table + j]);
            probs[table + j] = s;
            if s > local_max {
                local_sum = local_sum * exp(local_max - s) + 1.0;
                local_max = s;
            } else {
                local_sum += exp(s - local_max);
            }
        }
    }
    let row_max = workgroup_max(local_max, lane);
    let row_sum = workgroup_sum(local_sum * exp(local_max - row_max), lane);
    var partial = 0.0;
    for (var j = lane.index; j < n; j += WG_SIZE) {
        if visible(t, j) {
            partial += exp(probs[table + j] - row_max) / row_sum * dscores[table + j];
        }
    }
    let big_d = workgroup_sum(partial, lane);
    for (var j = lane.index; j < n; j += WG_SIZE) {
        var p = 0.0;
        var dz = 0.0;
        if visible(t, j) {
            let s = probs[table + j];
            p = exp(s - row_max) / row_sum;
            dz = p * (dscores[table + j] - big_d);
            if params.softcap > 0.0 {
                let c = s / params.softcap;
                dz *= 1.0 - c * c;
            }
        }
        probs[table + j] = p;
        dscores[table + j] = dz;
    }
}
#else
#ifdef DKV_SUM
@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG_SIZE;
    let kv_elems = params.n_tokens * params.n_kv_head * params.head_dim;
    if i >= kv_elems {
        return;
    }
    let n_chunks = chunks();
    var sum_k = 0.0;
    var sum_v = 0.0;
    for (var c = 0u; c < n_chunks; c++) {
        sum_k += parts[c * kv_elems + i];
        sum_v += parts[(n_chunks + c) * kv_elems + i];
    }
    dk[i] = params.scale * sum_k;
    dv[i] = sum_v;
}
#else
const TILE: u32 = 64u;
const QUADS: u32 = TILE / 4u;
const STEP: u32 = 16u;

// [inner element][output quad]: the inner loop reads one vec4 of each per element.
var<workgroup> a1: array<vec4<f32>, STEP * QUADS>;
var<workgroup> b1: array<vec4<f32>, STEP * QUADS>;
// acc[c][i]: output (4·qi + i, 4·qc + c) of the tile.
var<private> acc1: array<vec4<f32>, 4>;
#ifndef DQ
var<workgroup> a2: array<vec4<f32>, STEP * QUADS>;
var<workgroup> b2: array<vec4<f32>, STEP * QUADS>;
var<private> acc2: array<vec4<f32>, 4>;
#endif

// Query row r of kv head g's rows as a row of q, d_out, dq and the tables: t·n_head + h.
fn q_row(g: u32, r: u32) -> u32 {
    let gs = group_size();
    return (r / gs) * params.n_head + g * gs + r % gs;
}

fn kv_row(g: u32, j: u32) -> u32 {
    return j * params.n_kv_head + g;
}

// The step's products from the staged tiles (a barrier before and after, by the caller).
fn accumulate(qi: u32, qc: u32) {
    for (var e = 0u; e < STEP; e++) {
        let a = a1[e * QUADS + qi];
        let b = b1[e * QUADS + qc];
        acc1[0] += a * b.x;
        acc1[1] += a * b.y;
        acc1[2] += a * b.z;
        acc1[3] += a * b.w;
#ifndef DQ
        let a_2 = a2[e * QUADS + qi];
        let b_2 = b2[e * QUADS + qc];
        acc2[0] += a_2 * b_2.x;
        acc2[1] += a_2 * b_2.y;
        acc2[2] += a_2 * b_2.z;
        acc2[3] += a_2 * b_2.w;
#endif
    }
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let linear = wid.x + wid.y * nwg.x;
    let n = params.n_tokens;
    let hd = params.head_dim;
    let gs = group_size();
    let rows = n * gs;
    let row_tiles = (rows + TILE - 1u) / TILE;
    let key_tiles = (n + TILE - 1u) / TILE;
    let dim_tiles = (hd + TILE - 1u) / TILE;
    // Compute roles: outputs 4·qi.. of the tile's first index and 4·qc.. of its second. Loader roles: "along"
    // loads 4 consecutive inner elements of one of the 64 (element lid / 4), "across" 4 consecutive of the 64 at
    // one inner element (lid / 16).
    let qi = lid % QUADS;
    let qc = lid / QUADS;
    let along_x = lid / 4u;
    let along_e = 4u * (lid % 4u);
    let across_e = lid / QUADS;
    let across_x = 4u * (lid % QUADS);
#ifdef SCORES
    // Tile (rows r0.., keys j0..), the inner sum over the head's elements.
    let tc = linear % key_tiles;
    let ti = (linear / key_tiles) % row_tiles;
    let g = linear / (key_tiles * row_tiles);
    let r0 = ti * TILE;
    let j0 = tc * TILE;
    if g >= params.n_kv_head {
        return;
    }
    let t_first = r0 / gs;
    let t_last = (min(r0 + TILE, rows) - 1u) / gs;
    let j_last = min(j0 + TILE, n) - 1u;
    let past_window = params.window != 0u && t_first > j_last && t_first - j_last >= params.window;
    if j0 > t_last || past_window {
        return;
    }
    for (var d0 = 0u; d0 < hd; d0 += STEP) {
        let r = r0 + along_x;
        let j = j0 + along_x;
        for (var e = 0u; e < 4u; e++) {
            let d = d0 + along_e + e;
            var qv = 0.0;
            var dov = 0.0;
            var kv = 0.0;
            var vv = 0.0;
            if d < hd {
                if r < rows {
                    qv = q[q_row(g, r) * hd + d];
                    dov = d_out[q_row(g, r) * hd + d];
                }
                if j < n {
                    kv = k[kv_row(g, j) * hd + d];
                    vv = v[kv_row(g, j) * hd + d];
                }
            }
            let slot = (along_e + e) * QUADS + along_x / 4u;
            a1[slot][along_x % 4u] = qv;
            b1[slot][along_x % 4u] = kv;
            a2[slot][along_x % 4u] = dov;
            b2[slot][along_x % 4u] = vv;
        }
        workgroupBarrier();
        accumulate(qi, qc);
        workgroupBarrier();
    }
    for (var c = 0u; c < 4u; c++) {
        let j = j0 + 4u * qc + c;
        for (var i = 0u; i < 4u; i++) {
            let r = r0 + 4u * qi + i;
            if r < rows && j < n {
                let at = q_row(g, r) * n + j;
                probs[at] = params.scale * acc1[c][i];
                dscores[at] = acc2[c][i];
            }
        }
    }
#endif
#ifdef DQ
    // Tile (rows r0.., head elements d0..), the inner sum over the keys any of its rows sees.
    let tc = linear % dim_tiles;
    let ti = (linear / dim_tiles) % row_tiles;
    let g = linear / (dim_tiles * row_tiles);
    if g >= params.n_kv_head {
        return;
    }
    let r0 = ti * TILE;
    let d0 = tc * TILE;
    let t_first = r0 / gs;
    let j_end = (min(r0 + TILE, rows) - 1u) / gs + 1u;
    var j_begin = 0u;
    if params.window != 0u && t_first + 1u > params.window {
        j_begin = t_first + 1u - params.window;
    }
    for (var j0 = j_begin; j0 < j_end; j0 += STEP) {
        let r = r0 + along_x;
        for (var e = 0u; e < 4u; e++) {
            let j = j0 + along_e + e;
            var dz = 0.0;
            if r < rows && j < j_end {
                dz = dscores[q_row(g, r) * n + j];
            }
            a1[(along_e + e) * QUADS + along_x / 4u][along_x % 4u] = dz;
        }
        let j = j0 + across_e;
        var kv = vec4<f32>(0.0);
        for (var e = 0u; e < 4u; e++) {
            let d = d0 + across_x + e;
            if j < j_end && d < hd {
                kv[e] = k[kv_row(g, j) * hd + d];
            }
        }
        b1[across_e * QUADS + across_x / 4u] = kv;
        workgroupBarrier();
        accumulate(qi, qc);
        workgroupBarrier();
    }
    for (var c = 0u; c < 4u; c++) {
        let d = d0 + 4u * qc + c;
        for (var i = 0u; i < 4u; i++) {
            let r = r0 + 4u * qi + i;
            if r < rows && d < hd {
                dq[q_row(g, r) * hd + d] = params.scale * acc1[c][i];
            }
        }
    }
#endif
#ifdef DKV
    // Tile (keys j0.., head elements d0..), the inner sum over chunk c's rows that see any of its keys.
    let n_chunks = chunks();
    let tc = linear % dim_tiles;
    let c = (linear / dim_tiles) % n_chunks;
    let tj = (linear / (dim_tiles * n_chunks)) % key_tiles;
    let g = linear / (dim_tiles * n_chunks * key_tiles);
    if g >= params.n_kv_head {
        return;
    }
    let j0 = tj * TILE;
    let d0 = tc * TILE;
    let r_begin = max(j0 * gs, c * params.chunk_rows);
    var r_end = min(rows, (c + 1u) * params.chunk_rows);
    if params.window != 0u {
        r_end = min(r_end, (min(j0 + TILE, n) - 1u + params.window) * gs);
    }
    for (var rs = r_begin; rs < r_end; rs += STEP) {
        let r = rs + across_e;
        var dz = vec4<f32>(0.0);
        var p = vec4<f32>(0.0);
        var qv = vec4<f32>(0.0);
        var dov = vec4<f32>(0.0);
        if r < r_end {
            let table = q_row(g, r) * n;
            let row = q_row(g, r) * hd;
            for (var e = 0u; e < 4u; e++) {
                let j = j0 + across_x + e;
                if j < n {
                    dz[e] = dscores[table + j];
                    p[e] = probs[table + j];
                }
                let d = d0 + across_x + e;
                if d < hd {
                    qv[e] = q[row + d];
                    dov[e] = d_out[row + d];
                }
            }
        }
        let slot = across_e * QUADS + across_x / 4u;
        a1[slot] = dz;
        b1[slot] = qv;
        a2[slot] = p;
        b2[slot] = dov;
        workgroupBarrier();
        accumulate(qi, qc);
        workgroupBarrier();
    }
    let kv_elems = n * params.n_kv_head * hd;
    for (var cc = 0u; cc < 4u; cc++) {
        let d = d0 + 4u * qc + cc;
        for (var i = 0u; i < 4u; i++) {
            let j = j0 + 4u * qi + i;
            if j < n && d < hd {
                let at = kv_row(g, j) * hd + d;
                parts[c * kv_elems + at] = acc1[cc][i];
                parts[(n_chunks + c) * kv_elems + at] = acc2[cc][i];
            }
        }
    }
#endif
}
#endif
#endif
