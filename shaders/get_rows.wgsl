// get_rows: dst[i][:] = dequantized row ids[i] of a table in any weight type of include/quant_blocks.wgsl (the
// embedding lookup), in f32. The table may be one part of a tensor split on rows: it holds global rows
// first_row .. first_row + n_table_rows. An id outside them writes zeros when zero_outside is set (whole table:
// out-of-range ids read nothing and yield a zero row) and leaves dst untouched otherwise (so one dispatch per part
// of a split table fills each row exactly once).
// Bindings (group 0): 0 weights: array<u32> read (the table, [n_table_rows][row_elems] in ggml blocks),
// 1 ids: array<u32> read ([n_ids]), 2 dst: array<vec4<f32>> read_write ([n_ids][row_elems]), 3 params uniform.
// Dispatch: one invocation per group of 8 output elements (two runs of 4, see quant_blocks.wgsl):
// Grid::for_items(n_ids · row_elems / 8, WG_SIZE).

#include "include/quant_blocks.wgsl"

struct Params {
    row_elems: u32,
    n_table_rows: u32,
    n_ids: u32,
    row_bytes: u32,
    first_row: u32,
    zero_outside: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let groups_per_row = params.row_elems / 8u;
    let item = (wid.x + wid.y * nwg.x) * WG_SIZE + lid;
    if item >= params.n_ids * groups_per_row {
        return;
    }
    let i = item / groups_per_row;
    let g = item % groups_per_row;
    let block = g / GROUPS_PER_BLOCK;
    let gb = g % GROUPS_PER_BLOCK;
    let out = vec2<u32>((i * params.row_elems + block * BLOCK_ELEMS) / 4u) + group_runs(gb) / 4u;
    // Wraps for ids below first_row, so one comparison covers both ends.
    let row = ids[i] - params.first_row;
    if row < params.n_table_rows {
        let w = dequant8(row * params.row_bytes + block * BLOCK_BYTES, gb);
        dst[out.x] = w.lo;
        dst[out.y] = w.hi;
    } else if params.zero_outside != 0u {
        dst[out.x] = vec4<f32>(0.0);
        dst[out.y] = vec4<f32>(0.0);
    }
}
