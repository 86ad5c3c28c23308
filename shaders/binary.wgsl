// binary: dst[i] = a[i] OP b[i] for i < n_elems, OP = + (ADD) or * (MUL); arithmetic in f32.
// Storage type T: f32, or f16 when F16 is defined (needs SHADER_F16).
// Bindings (group 0): 0 a: array<T> read, 1 b: array<T> read, 2 dst: array<T> read_write, 3 params uniform.
// Dispatch: one invocation per element, WG_SIZE per workgroup, workgroups spread over x and y (Grid::for_items);
// the linear id is bounds-checked.

#ifdef F16
alias T = f16;
#else
alias T = f32;
#endif

struct Params {
    n_elems: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> a: array<T>;
@group(0) @binding(1) var<storage, read> b: array<T>;
@group(0) @binding(2) var<storage, read_write> dst: array<T>;
@group(0) @binding(3) var<uniform> params: Params;

#include "include/element_entry.wgsl"

fn element_main(i: u32) {
    let x = f32(a[i]);
    let y = f32(b[i]);
#ifdef MUL
    dst[i] = T(x * y);
#else
    dst[i] = T(x + y);
#endif
}
