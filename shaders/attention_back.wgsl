// attention_back: the gradients of attention.wgsl's forward for a training chunk that starts at position 0 and
// attends to its own keys (K and V are [n_tokens][n_kv_head][head_dim], key j at position j), all f32. For query row
// (t, h), kv head g = h / (n_head / n_kv_head), visible keys j ≤ t with t − j < window (window 0 = none):
//   z_j = scale·q·k_j,  s_j = softcap? c·tanh(z_j / c) : z_j,  p = softmax(s),  out = Σ_j p_j·v_j,
//   dp_j = dO·v_j,  D = Σ_j p_j·dp_j,  dz_j = p_j·(dp_j − D)·(softcap? 1 − (s_j / c)² : 1)
//   dq = scale·Σ_j dz_j·k_j,  dk_j = scale·Σ_{rows of g} dz_j·q,  dv_j = Σ_{rows of g} p_j·dO
// Default pass (ROWS): one workgroup per row r = t·n_head + h; it writes probs[r][j] = p_j and dscores[r][j] = dz_j
// (0 where j is not visible) and dq. KEYS pass: one workgroup per (key j, kv head g) sums dk_j and dv_j over the
// group's rows from those two [n_rows][n_tokens] scratch tables. Each lane owns keys j ≡ lane (mod WG_SIZE) in the
// row pass, so only the dq phase reads what other lanes wrote (after a storage barrier).
// Bindings (group 0): ROWS: 0 q, 1 k, 2 v, 3 d_out: array<f32> read; 4 dq, 5 probs, 6 dscores: array<f32>
// read_write; 7 params uniform. KEYS: 0 q, 1 d_out, 2 probs, 3 dscores: array<f32> read; 4 dk, 5 dv:
// array<f32> read_write; 6 params uniform.
// Dispatch: ROWS: Grid::for_items(n_tokens · n_head, 1); KEYS: Grid::for_items(n_tokens · n_kv_head, 1).

#include "include/reduce.wgsl"
#include "include/reduce_max.wgsl"

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
    _pad0: u32,
}

#ifdef KEYS
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> d_out: array<f32>;
@group(0) @binding(2) var<storage, read> probs: array<f32>;
@group(0) @binding(3) var<storage, read> dscores: array<f32>;
@group(0) @binding(4) var<storage, read_write> dk: array<f32>;
@group(0) @binding(5) var<storage, read_write> dv: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;
#else
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> d_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> dq: array<f32>;
@group(0) @binding(5) var<storage, read_write> probs: array<f32>;
@group(0) @binding(6) var<storage, read_write> dscores: array<f32>;
@group(0) @binding(7) var<uniform> params: Params;
#endif

// Stands in for −inf as the starting maximum (WGSL constants may not be infinite).
const NO_MAX: f32 = -3.0e38;

fn visible(t: u32, j: u32) -> bool {
    return j <= t && (params.window == 0u || t - j < params.window);
}

#include "include/row_entry.wgsl"

#ifdef KEYS
fn row_main(wg: u32, lane: Lane) {
    if wg >= params.n_tokens * params.n_kv_head {
        return;
    }
    let j = wg / params.n_kv_head;
    let g = wg % params.n_kv_head;
    let hd = params.head_dim;
    let group = params.n_head / params.n_kv_head;
    let n = params.n_tokens;
    for (var d = lane.index; d < hd; d += WG_SIZE) {
        var dk_d = 0.0;
        var dv_d = 0.0;
        for (var t = j; t < n; t++) {
            for (var h = g * group; h < (g + 1u) * group; h++) {
                let row = t * params.n_head + h;
                let elem = row * hd + d;
                dk_d += dscores[row * n + j] * q[elem];
                dv_d += probs[row * n + j] * d_out[elem];
            }
        }
        let out = (j * params.n_kv_head + g) * hd + d;
        dk[out] = params.scale * dk_d;
        dv[out] = dv_d;
    }
}
#else
fn dot_rows(a_base: u32, b_base: u32, from_q: bool) -> f32 {
    var sum = 0.0;
    for (var d = 0u; d < params.head_dim; d++) {
        if from_q {
            sum += q[a_base + d] * k[b_base + d];
        } else {
            sum += d_out[a_base + d] * v[b_base + d];
        }
    }
    return sum;
}

fn row_main(wg: u32, lane: Lane) {
    if wg >= params.n_tokens * params.n_head {
        return;
    }
    let row = wg;
    let t = row / params.n_head;
    let h = row % params.n_head;
    let g = h / (params.n_head / params.n_kv_head);
    let hd = params.head_dim;
    let n = params.n_tokens;
    let row_base = row * hd;
    let table = row * n;
    // 1. Scores (kept in dscores for now) and the row's max and normalizer.
    var local_max = NO_MAX;
    var local_sum = 0.0;
    for (var j = lane.index; j < n; j += WG_SIZE) {
        var s = 0.0;
        if visible(t, j) {
            s = params.scale * dot_rows(row_base, (j * params.n_kv_head + g) * hd, true);
            if params.softcap > 0.0 {
                s = params.softcap * tanh(clamp(s / params.softcap, -10.0, 10.0));
            }
            if s > local_max {
                local_sum = local_sum * exp(local_max - s) + 1.0;
                local_max = s;
            } else {
                local_sum += exp(s - local_max);
            }
        }
        dscores[table + j] = s;
    }
    let row_max = workgroup_max(local_max, lane);
    let row_sum = workgroup_sum(local_sum * exp(local_max - row_max), lane);
    // 2. Probabilities and D = Σ p·(dO·v).
    var partial = 0.0;
    for (var j = lane.index; j < n; j += WG_SIZE) {
        var p = 0.0;
        if visible(t, j) {
            p = exp(dscores[table + j] - row_max) / row_sum;
            partial += p * dot_rows(row_base, (j * params.n_kv_head + g) * hd, false);
        }
        probs[table + j] = p;
    }
    let big_d = workgroup_sum(partial, lane);
    // 3. dz per key (0 where not visible).
    for (var j = lane.index; j < n; j += WG_SIZE) {
        var dz = 0.0;
        if visible(t, j) {
            let dp = dot_rows(row_base, (j * params.n_kv_head + g) * hd, false);
            dz = probs[table + j] * (dp - big_d);
            if params.softcap > 0.0 {
                let c = dscores[table + j] / params.softcap;
                dz *= 1.0 - c * c;
            }
        }
        dscores[table + j] = dz;
    }
    storageBarrier();
    workgroupBarrier();
    // 4. dq = scale·Σ dz_j·k_j, lanes over the head's elements.
    for (var d = lane.index; d < hd; d += WG_SIZE) {
        var sum = 0.0;
        for (var j = 0u; j < n; j++) {
            sum += dscores[table + j] * k[(j * params.n_kv_head + g) * hd + d];
        }
        dq[row_base + d] = params.scale * sum;
    }
}
#endif
