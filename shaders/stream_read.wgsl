// stream_read: the memory-bandwidth probe. Reads every vec4 of src once and writes one f32 per workgroup, the sum of
// what its invocations read, so the reads cannot be optimized away and the result can be checked:
//   out[w] = Σ over invocations g of workgroup w, Σ over i ≡ g (mod n_threads), i < n_vec4: sum(src[i])
// with g = w·WG_SIZE + local index and n_threads = n_workgroups·WG_SIZE. This is what `bench` and
// `check ops --mode perf` divide by: the bytes per second a shader measurably reads, not a buffer copy.
// Each invocation strides over the buffer by n_threads (neighbouring invocations read neighbouring 16 bytes), four
// loads per loop step so they are in flight together, then the workgroup sums its partials (include/reduce.wgsl).
// Bindings (group 0): 0 src: array<vec4<f32>> read, 1 out: array<f32> read_write (n_workgroups), 2 params uniform.
// Dispatch: n_workgroups workgroups of WG_SIZE (Grid::for_items, row_entry's linear id).

#include "include/reduce.wgsl"

struct Params {
    n_vec4: u32,
    n_workgroups: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

#include "include/row_entry.wgsl"

fn row_main(wg: u32, lane: Lane) {
    if wg >= params.n_workgroups {
        return;
    }
    let n_threads = params.n_workgroups * WG_SIZE;
    let n = params.n_vec4;
    var acc = vec4<f32>(0.0);
    for (var i = wg * WG_SIZE + lane.index; i < n; i += 4u * n_threads) {
        let i1 = i + n_threads;
        let i2 = i1 + n_threads;
        let i3 = i2 + n_threads;
        acc += src[i];
        if i3 < n {
            acc += src[i1] + src[i2] + src[i3];
        } else {
            if i1 < n {
                acc += src[i1];
            }
            if i2 < n {
                acc += src[i2];
            }
        }
    }
    let total = workgroup_sum(acc.x + acc.y + acc.z + acc.w, lane);
    if lane.index == 0u {
        out[wg] = total;
    }
}
