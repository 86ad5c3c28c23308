//! GPU timing from timestamp queries on a real adapter (lavapipe in CI, which grants TIMESTAMP_QUERY inside
//! passes and encoders): both ways of writing timestamps attribute every dispatch to its kernel with GPU time and
//! leave results unchanged, a batch longer than one query set is fully timed, and timing off collects nothing
//! and gives its buffers back.

mod common;

use common::{gpu, read_f32, seeded_f32};
use ferrogem::gpu::{COPY_SPAN_NAME, Category, Context, GpuBuffer, GpuTimes, TimingMethod};
use ferrogem::ops::unary::{UnaryOp, unary_inplace};

const SCALE_KERNEL: &str = "unary_scale_f32_inplace_wg256";

fn timed_context() -> Context {
    let ctx = gpu(false);
    if let Err(reason) = ctx.gpu_timing_method() {
        panic!("these tests need TIMESTAMP_QUERY (lavapipe grants it): {reason}");
    }
    ctx
}

/// `dispatches` in-place ×2 scalings of `x`, then a copy of it into `y`, as one batch.
fn scale_and_copy(ctx: &Context, x: &GpuBuffer, y: &GpuBuffer, dispatches: usize) {
    let elems = x.size_bytes() / 4;
    let mut batch = ctx.batch("timed");
    for _ in 0..dispatches {
        unary_inplace(&mut batch, UnaryOp::Scale, 2.0, x, elems).unwrap();
    }
    batch.copy(x, 0, y, 0, x.size_bytes());
    batch.submit().unwrap();
}

fn kernel<'a>(times: &'a GpuTimes, name: &str) -> Option<&'a ferrogem::gpu::KernelTime> {
    times.kernels.iter().find(|k| k.kernel == name)
}

#[test]
fn both_methods_time_every_dispatch_and_keep_results() {
    let ctx = timed_context();
    let input = seeded_f32("timing/methods", 1000);
    let copies = ctx.device().features().contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);
    let mut methods = vec![TimingMethod::PassPerDispatch];
    if ctx.caps().timestamps_inside_passes {
        methods.push(TimingMethod::InsidePass);
    }
    for method in methods {
        let x = ctx.upload("x", Category::Scratch, bytemuck::cast_slice(&input)).unwrap();
        let y = ctx.alloc("y", Category::Scratch, x.size_bytes(), None).unwrap();
        ctx.start_gpu_timing_with(method).unwrap();
        scale_and_copy(&ctx, &x, &y, 5);
        let times = ctx.take_gpu_times();
        ctx.stop_gpu_timing();

        let want: Vec<f32> = input.iter().map(|v| v * 32.0).collect();
        assert_eq!(read_f32(&ctx, &y), want, "{method:?}: timing changed the results");
        let scale =
            kernel(&times, SCALE_KERNEL).unwrap_or_else(|| panic!("{method:?}: no {SCALE_KERNEL} in {times:?}"));
        assert_eq!((scale.batch.as_str(), scale.dispatches), ("timed", 5), "{method:?}");
        assert!(scale.gpu_ns > 0.0, "{method:?}: no GPU time");
        assert_eq!(kernel(&times, COPY_SPAN_NAME).map(|k| k.dispatches), copies.then_some(1), "{method:?}");
        assert_eq!((times.timed_batches, times.invalid_pairs), (1, 0), "{method:?}");
    }
}

#[test]
fn a_batch_longer_than_one_query_set_is_fully_timed() {
    let ctx = timed_context();
    let x = ctx.upload("x", Category::Scratch, bytemuck::cast_slice(&[1.0f32; 64])).unwrap();
    let y = ctx.alloc("y", Category::Scratch, x.size_bytes(), None).unwrap();
    // One query set holds 2048 pairs.
    let dispatches = wgpu::QUERY_SET_MAX_QUERIES as usize / 2 + 100;
    ctx.start_gpu_timing().unwrap();
    scale_and_copy(&ctx, &x, &y, dispatches);
    let times = ctx.take_gpu_times();
    ctx.stop_gpu_timing();
    assert_eq!(kernel(&times, SCALE_KERNEL).map(|k| k.dispatches), Some(dispatches as u64), "{times:?}");
    assert_eq!(times.invalid_pairs, 0);
}

#[test]
fn timing_off_collects_nothing_and_gives_its_buffers_back() {
    let ctx = timed_context();
    let x = ctx.upload("x", Category::Scratch, bytemuck::cast_slice(&[1.0f32; 64])).unwrap();
    let y = ctx.alloc("y", Category::Scratch, x.size_bytes(), None).unwrap();
    scale_and_copy(&ctx, &x, &y, 3); // bind groups and their uniforms exist before the baseline
    let live_before = ctx.memory().live_bytes;
    ctx.start_gpu_timing().unwrap();
    scale_and_copy(&ctx, &x, &y, 3);
    assert!(ctx.memory().live_bytes > live_before, "the query buffers go through the accountant");
    ctx.stop_gpu_timing();
    assert_eq!(ctx.memory().live_bytes, live_before, "stopping released the query buffers");
    assert_eq!(ctx.take_gpu_times().timed_batches, 1, "what was collected stays until taken");
    scale_and_copy(&ctx, &x, &y, 3);
    let after = ctx.take_gpu_times();
    assert!(after.kernels.is_empty() && after.timed_batches == 0, "{after:?}");
}
