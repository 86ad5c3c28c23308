// set_rows (ggml `set_rows`, the KV-cache write): dst[ids[i]][c] = src[i][c] for i < n_ids, c < row_elems.
// src is f32; dst is f32, or f16 when F16 is defined (the f16 cache, needs SHADER_F16; the store rounds to
// nearest). An id ≥ n_dst_rows is never written (that source row is dropped). Two equal ids race: which row
// lands is unspecified, as in ggml. The caller computes ring slots (pos mod capacity) into ids.
// Bindings (group 0): 0 src: array<f32> read, 1 ids: array<u32> read, 2 dst: array<T> read_write,
// 3 params uniform.
// Dispatch: one invocation per source element (n_ids · row_elems), WG_SIZE per workgroup, spread over x and y
// (Grid::for_items); the linear id is bounds-checked.

#ifdef F16
alias T = f16;
#else
alias T = f32;
#endif

struct Params {
    n_elems: u32,
    row_elems: u32,
    n_dst_rows: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<T>;
@group(0) @binding(3) var<uniform> params: Params;

#include "include/element_entry.wgsl"

fn element_main(i: u32) {
    let row = i / params.row_elems;
    let c = i % params.row_elems;
    let dst_row = ids[row];
    if dst_row >= params.n_dst_rows {
        return;
    }
    dst[dst_row * params.row_elems + c] = T(src[i]);
}
