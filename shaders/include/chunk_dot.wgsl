// The activation side of the mat-vec's chunk dot products (include/quant_chunks.wgsl's Chunk times 32 values of
// x): the including kernel declares `x: array<vec4<f32>>` (token rows of k values) and `params.k`.

// 16 values of x from vec4 index `v`; with DENSE_TAIL the ones at or past the row's end (k4 vec4s from `row`) are 0.
fn x_run(row: u32, v: u32) -> mat4x4<f32> {
#ifdef DENSE_TAIL
    let k4 = params.k / 4u;
    let i = vec4<u32>(v - row) + vec4<u32>(0u, 1u, 2u, 3u);
    let c = vec4<u32>(row) + min(i, vec4<u32>(k4 - 1u));
    let z = vec4<f32>(0.0);
    return mat4x4<f32>(
        select(z, x[c.x], i.x < k4),
        select(z, x[c.y], i.y < k4),
        select(z, x[c.z], i.z < k4),
        select(z, x[c.w], i.w < k4),
    );
#else
    return mat4x4<f32>(x[v], x[v + 1u], x[v + 2u], x[v + 3u]);
#endif
}

fn run_dot(q: mat4x4<f32>, xs: mat4x4<f32>) -> f32 {
    return dot(q[0], xs[0]) + dot(q[1], xs[1]) + dot(q[2], xs[2]) + dot(q[3], xs[3]);
}

fn run_sum(xs: mat4x4<f32>) -> f32 {
    return dot(xs[0] + xs[1] + xs[2] + xs[3], vec4<f32>(1.0));
}

// The x runs of one chunk and their sums (the offset terms need them).
struct XChunk {
    lo: mat4x4<f32>,
    hi: mat4x4<f32>,
    sums: vec2<f32>,
}

fn x_chunk(row: u32, runs: vec2<u32>) -> XChunk {
    let lo = x_run(row, row + runs.x / 4u);
    let hi = x_run(row, row + runs.y / 4u);
    return XChunk(lo, hi, vec2<f32>(run_sum(lo), run_sum(hi)));
}

fn chunk_dot(ch: Chunk, xc: XChunk) -> f32 {
    return ch.scale.x * run_dot(ch.lo, xc.lo) + ch.scale.y * run_dot(ch.hi, xc.hi) - dot(ch.offset, xc.sums);
}
