// attention, COMBINE pass: merges the SPLIT pass's partial results of each row (t · n_head + h) into
//   out[row] = Σ_s e^(m_s − M) · acc_s / Σ_s e^(m_s − M) · l_s,  M = max_s m_s,
// the log-sum-exp merge of flash decoding. Included by attention.wgsl, which defines Params and NEG_BIG;
// MAX_SPLITS bounds n_splits.
// LORA_DOWN also makes each head's share of the LoRA down-projection of the o projection's group, which reads
// the heads: u_part[t][h][j] = Σ_d A[j][h · head_dim + d] · out[t][h][d] for j < rank_total, so a decode step
// needs no lora_down dispatch for o (the o mat-vec's epilogue sums the n_head parts). A `[rank_total][n_head ·
// head_dim]` and the parts `[n_tokens][n_head][rank_total]` (from element lora_u_offset) share one buffer.
// Bindings (group 0): 0 partials: array<vec4<f32>> read, per (row, split) head_dim/4 vec4s of acc_s then
// vec4(m_s, l_s, 0, 0); 1 out: array<vec4<f32>> read_write [n_tokens][n_head][head_dim]; then LORA_DOWN: 2
// lora_au: array<f32> read_write (A, then the parts); params uniform last.
// Dispatch: one workgroup of WG_SIZE invocations per row (Grid::for_items(n_tokens · n_head, 1)). The
// workgroup first gathers every split's (m_s, l_s) in parallel; then invocation i produces vec4 column i
// (head_dim/4 ≤ WG_SIZE) and, without LORA_DOWN, the rest exit. LORA_DOWN's ranks go U_LANES lanes to a rank,
// WG_SIZE / U_LANES ranks per round, each rank's lanes summed by a tree in workgroup memory.

@group(0) @binding(0) var<storage, read> partials: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
#ifdef LORA_DOWN
@group(0) @binding(2) var<storage, read_write> lora_au: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const U_LANES: u32 = 16u;
// The row's merged output, for the down-projection.
var<workgroup> head_out: array<vec4<f32>, WG_SIZE>;
var<workgroup> u_sums: array<f32, WG_SIZE>;
#else
@group(0) @binding(2) var<uniform> params: Params;
#endif

var<workgroup> split_max: array<f32, MAX_SPLITS>;
var<workgroup> split_sum: array<f32, MAX_SPLITS>;

// The weight of split s, or 0 past the last one.
fn split_weight(s: u32, max_score: f32) -> f32 {
    return select(0.0, exp(split_max[min(s, MAX_SPLITS - 1u)] - max_score), s < params.n_splits);
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // Uniform across the workgroup, so the early exit cannot split the barrier.
    let row = wid.x + wid.y * nwg.x;
    if row >= params.n_tokens * params.n_head {
        return;
    }
    let head_dim4 = params.head_dim / 4u;
    let stride = head_dim4 + 1u;
    let first = row * params.n_splits * stride;
    for (var s = lid; s < params.n_splits; s += WG_SIZE) {
        let stats = partials[first + s * stride + head_dim4];
        split_max[s] = stats.x;
        split_sum[s] = stats.y;
    }
    workgroupBarrier();
#ifdef LORA_DOWN
    var merged = vec4<f32>(0.0);
    if lid < head_dim4 {
        merged = merge_splits(row, lid);
        out[row * head_dim4 + lid] = merged;
    }
    head_out[lid] = merged;
    workgroupBarrier();
    heads_lora_down(row, lid);
#else
    if lid < head_dim4 {
        out[row * head_dim4 + lid] = merge_splits(row, lid);
    }
#endif
}

// Vec4 column `lid` of the row's output, from every split's partial result.
fn merge_splits(row: u32, lid: u32) -> vec4<f32> {
    let head_dim4 = params.head_dim / 4u;
    let stride = head_dim4 + 1u;
    let first = row * params.n_splits * stride;
    var max_score = NEG_BIG;
    for (var s = 0u; s < params.n_splits; s++) {
        max_score = max(max_score, split_max[s]);
    }
    // Empty splits carry m = NEG_BIG and l = 0, so they weigh nothing. Four splits' loads are issued together
    // (clamped, weighted 0 past the end) to keep requests in flight, as in the main pass.
    let last = params.n_splits - 1u;
    var total = vec4<f32>(0.0);
    var norm = 0.0;
    for (var s = 0u; s < params.n_splits; s += 4u) {
        let a0 = partials[first + s * stride + lid];
        let a1 = partials[first + min(s + 1u, last) * stride + lid];
        let a2 = partials[first + min(s + 2u, last) * stride + lid];
        let a3 = partials[first + min(s + 3u, last) * stride + lid];
        let w0 = split_weight(s, max_score);
        let w1 = split_weight(s + 1u, max_score);
        let w2 = split_weight(s + 2u, max_score);
        let w3 = split_weight(s + 3u, max_score);
        total += w0 * a0 + w1 * a1 + w2 * a2 + w3 * a3;
        norm += w0 * split_sum[s] + w1 * split_sum[min(s + 1u, last)] + w2 * split_sum[min(s + 2u, last)]
            + w3 * split_sum[min(s + 3u, last)];
    }
    return total / norm;
}

#ifdef LORA_DOWN
// This head's part of u for every rank j: lanes j · U_LANES + 0..U_LANES (per round) each dot a strided slice of
// A's row j with head_out, then sum their slices.
fn heads_lora_down(row: u32, lid: u32) {
    let head_dim4 = params.head_dim / 4u;
    let h = row % params.n_head;
    let rank_total = params.lora_rank_total;
    let a_row_elems = params.n_head * params.head_dim;
    let slice = lid % U_LANES;
    for (var j0 = 0u; j0 < rank_total; j0 += WG_SIZE / U_LANES) {
        let j = j0 + lid / U_LANES;
        var s = 0.0;
        if j < rank_total {
            let a0 = j * a_row_elems + h * params.head_dim;
            for (var i = slice; i < head_dim4; i += U_LANES) {
                let ai = a0 + 4u * i;
                s += dot(vec4<f32>(lora_au[ai], lora_au[ai + 1u], lora_au[ai + 2u], lora_au[ai + 3u]), head_out[i]);
            }
        }
        u_sums[lid] = s;
        workgroupBarrier();
        for (var half = U_LANES / 2u; half > 0u; half /= 2u) {
            if slice < half {
                u_sums[lid] += u_sums[lid + half];
            }
            workgroupBarrier();
        }
        if slice == 0u && j < rank_total {
            lora_au[params.lora_u_offset + row * rank_total + j] = u_sums[lid];
        }
    }
}
#endif
