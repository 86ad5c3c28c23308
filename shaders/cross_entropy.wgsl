// cross_entropy: per-row cross-entropy with integer targets (ggml's cross_entropy_loss takes soft labels and
// returns the mean), and with BACK its gradient, f32, over rows
// r < n_rows of n_elems logits x with a target id t = targets[r]:
//   loss[r] = log Σ_c exp(x[c]) − x[t]                           (forward)
//   dx[r][c] = d_loss[r] · (softmax(x)[c] − [c = t])              (BACK)
// A target ≥ n_elems marks a row that is not trained on (a prompt token, padding): its loss and gradient are 0.
// The mean over trained rows is the caller's: it scales d_loss.
// Bindings (group 0): 0 logits: array<f32> read, 1 targets: array<u32> read (n_rows ids); forward: 2 loss:
// array<f32> read_write (n_rows), 3 params uniform; BACK: 2 d_loss: array<f32> read (n_rows), 3 dx: array<f32>
// read_write, 4 params uniform. Outputs may not alias inputs.
// Dispatch: one workgroup of WG_SIZE invocations per row (Grid::for_items(n_rows, 1)); the row's maximum and
// Σ exp through include/row_max_sum.wgsl (subgroups when SUBGROUPS is defined).

#include "include/reduce.wgsl"
#include "include/reduce_max.wgsl"
#include "include/row_max_sum.wgsl"

struct Params {
    n_rows: u32,
    n_elems: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<u32>;
#ifdef BACK
@group(0) @binding(2) var<storage, read> d_loss: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
#else
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
#endif

fn value_at(row: u32, c: u32) -> f32 {
    return logits[row * params.n_elems + c];
}

#include "include/row_entry.wgsl"

fn row_main(wg: u32, lane: Lane) {
    let row = wg;
    if row >= params.n_rows {
        return;
    }
    let n = params.n_elems;
    let target_id = targets[row];
    // Every row reduces, trained or not: the barriers inside stay out of the target-dependent branches.
    let max_sum = row_max_sum(row, n, lane);
    let trained = target_id < n;
#ifdef BACK
    let base = row * n;
    var scale = 0.0;
    if trained {
        scale = d_loss[row] / max_sum.y;
    }
    for (var c = lane.index; c < n; c += WG_SIZE) {
        var g = exp(value_at(row, c) - max_sum.x) * scale;
        if trained && c == target_id {
            g -= d_loss[row];
        }
        dx[base + c] = g;
    }
#else
    if lane.index == 0u {
        var l = 0.0;
        if trained {
            l = log(max_sum.y) + max_sum.x - value_at(row, target_id);
        }
        loss[row] = l;
    }
#endif
}
