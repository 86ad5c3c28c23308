//! The GPU runtime on a real adapter (lavapipe in CI): the bind-group cache, the memory accountant against wgpu's
//! own counters, tensor splitting and typed errors. Kernel numerics are the op registry's job (`ferrogem check ops`).

mod common;

use common::{gpu, read_f32, seeded_f32};
use ferrogem::gpu::GpuError;
use ferrogem::gpu::{Category, Phase, SplitTensor};
use ferrogem::ops::binary::{BinaryOp, StorageType, binary};

fn upload_f32(ctx: &ferrogem::gpu::Context, label: &str, data: &[f32]) -> ferrogem::gpu::GpuBuffer {
    ctx.upload(label, Category::Scratch, bytemuck::cast_slice(data)).unwrap()
}

#[test]
fn adapter_is_reported() {
    let ctx = gpu(false);
    let caps = ctx.caps();
    println!("{}", caps.summary());
    assert!(!caps.adapter.name.is_empty());
    assert!(caps.max_storage_buffer_binding_bytes >= 128 << 20, "full mode asks for the adapter's own limits");
}

#[test]
fn downlevel_asks_for_webgpu_defaults_only() {
    let ctx = gpu(true);
    let caps = ctx.caps();
    assert!(caps.downlevel && !caps.f16 && !caps.subgroups);
    let defaults = wgpu::Limits::defaults();
    assert_eq!(caps.max_storage_buffer_binding_bytes, defaults.max_storage_buffer_binding_size);
    assert_eq!(caps.max_invocations_per_workgroup, defaults.max_compute_invocations_per_workgroup);
}

#[test]
fn bind_groups_hit_in_steady_state_and_die_with_their_buffers() {
    let ctx = gpu(false);
    let n = 64;
    let a = upload_f32(&ctx, "a", &seeded_f32("bind/a", n));
    let b = upload_f32(&ctx, "b", &seeded_f32("bind/b", n));
    let dst = ctx.alloc("dst", Category::Scratch, n as u64 * 4, None).unwrap();
    ctx.set_phase(Phase::Decode);
    for step in 0..10 {
        let mut batch = ctx.batch("step");
        // The same pair twice in one batch, with different parameters: two entries, never one.
        binary(&mut batch, BinaryOp::Add, StorageType::F32, &a, &b, &dst, n as u64).unwrap();
        binary(&mut batch, BinaryOp::Add, StorageType::F32, &a, &b, &dst, (n / 2) as u64).unwrap();
        batch.submit().unwrap();
        let decode = ctx.bind_cache_stats().by_phase.into_iter().find(|(p, _)| *p == Phase::Decode).unwrap().1;
        assert_eq!((decode.misses, decode.hits), (2, 2 * step), "step {step}");
    }
    // The second dispatch covered only half the elements, so the uniform of the first must have stayed n.
    let got = read_f32(&ctx, &dst);
    assert!(got.iter().all(|v| v.is_finite()));
    assert_eq!(ctx.bind_cache_stats().entries, 2);

    let before = ctx.memory();
    drop(b);
    let stats = ctx.bind_cache_stats();
    assert_eq!(stats.entries, 0, "every entry binding `b` is evicted before `b` is destroyed");
    let decode = stats.by_phase.iter().find(|(p, _)| *p == Phase::Decode).unwrap().1;
    assert_eq!(decode.evictions, 2);
    let after = ctx.memory();
    assert_eq!(after.live_buffers, before.live_buffers - 3, "b and the two entries' uniform buffers are freed");
}

#[test]
fn params_are_not_shared_between_uses_in_one_batch() {
    let ctx = gpu(false);
    let n = 300;
    let ones = upload_f32(&ctx, "ones", &vec![1.0; n]);
    let dst = upload_f32(&ctx, "dst", &vec![0.0; n]);
    for _ in 0..2 {
        let mut batch = ctx.batch("two sizes");
        binary(&mut batch, BinaryOp::Add, StorageType::F32, &ones, &ones, &dst, n as u64).unwrap();
        binary(&mut batch, BinaryOp::Mul, StorageType::F32, &ones, &ones, &dst, 10).unwrap();
        batch.submit().unwrap();
    }
    let got = read_f32(&ctx, &dst);
    assert!(got[..10].iter().all(|&v| v == 1.0) && got[10..].iter().all(|&v| v == 2.0), "{:?}", &got[..12]);
}

#[test]
fn accountant_agrees_with_wgpu_counters() {
    let ctx = gpu(false);
    ctx.wait_idle().unwrap();
    let (buffers0, bytes0) = ctx.wgpu_buffer_counters();
    let mem0 = ctx.memory();
    ctx.set_phase(Phase::Load);
    let sizes = [4u64, 1024, 65_536, 1 << 20, 3 << 20];
    let buffers: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| ctx.alloc(&format!("w{i}"), Category::Weights, s, None).unwrap())
        .collect();
    let kv = ctx.alloc("kv", Category::Kv, 12_288, None).unwrap();
    ctx.wait_idle().unwrap();
    let (buffers1, bytes1) = ctx.wgpu_buffer_counters();
    assert!(
        buffers1 > buffers0 && bytes1 > bytes0,
        "wgpu counters are live (feature `counters`): {buffers0}/{bytes0} -> {buffers1}/{bytes1}"
    );
    let mem1 = ctx.memory();
    assert_eq!(buffers1 - buffers0, (mem1.live_buffers - mem0.live_buffers) as i64, "live buffer count");
    assert_eq!(bytes1 - bytes0, (mem1.live_bytes - mem0.live_bytes) as i64, "live bytes");
    assert_eq!(mem1.live_bytes - mem0.live_bytes, sizes.iter().sum::<u64>() + 12_288);
    let weights = mem1.by_category.iter().find(|(c, _, _)| *c == Category::Weights).unwrap();
    assert_eq!(weights.1, sizes.iter().sum::<u64>());

    drop(buffers);
    drop(kv);
    ctx.wait_idle().unwrap();
    let (buffers2, bytes2) = ctx.wgpu_buffer_counters();
    assert_eq!((buffers2, bytes2), (buffers0, bytes0), "wgpu sees every buffer gone");
    assert_eq!(ctx.memory().live_bytes, mem0.live_bytes, "the accountant too");
    assert_eq!(ctx.memory().peak_bytes, mem1.live_bytes);

    let mut csv = Vec::new();
    ctx.write_trajectory_csv(&mut csv).unwrap();
    let text = String::from_utf8(csv).unwrap();
    assert_eq!(text.lines().next().unwrap(), "event,time_s,kind,label,category,bytes,total_bytes,phase");
    assert_eq!(text.lines().filter(|l| l.contains(",alloc,w") && l.ends_with(",load")).count(), sizes.len());
    assert_eq!(text.lines().filter(|l| l.contains(",free,")).count(), sizes.len() + 1);
}

#[test]
fn everything_is_released_when_the_context_goes() {
    let ctx = gpu(false);
    let a = upload_f32(&ctx, "a", &[1.0; 16]);
    let dst = ctx.alloc("dst", Category::Scratch, 64, None).unwrap();
    let mut batch = ctx.batch("one");
    binary(&mut batch, BinaryOp::Add, StorageType::F32, &a, &a, &dst, 16).unwrap();
    batch.submit().unwrap();
    assert!(ctx.memory().live_bytes > 128, "two buffers plus a cached uniform");
    drop((a, dst));
    ctx.clear_bind_cache();
    assert_eq!(ctx.memory().live_bytes, 0, "tracked bytes return to 0 after unload");
    assert_eq!(ctx.memory().live_buffers, 0);
}

#[test]
fn tensors_larger_than_a_binding_are_split_on_rows() {
    let ctx = gpu(false);
    let row_bytes = 18u64; // one Q4_0 block: rows need not be a multiple of 4 bytes
    let rows = 1001u64;
    let data: Vec<u8> = (0..rows * row_bytes).map(|i| (i * 31 % 251) as u8).collect();
    let t = SplitTensor::upload_with_limit(&ctx, "embd", Category::Weights, &data, row_bytes, 4096).unwrap();
    assert_eq!(t.parts.len(), rows.div_ceil(4096 / row_bytes) as usize);
    let mut back = Vec::new();
    for (part, &(first, n)) in t.parts.iter().zip(&t.plan.parts) {
        assert!(part.size_bytes() <= 4096);
        let bytes = pollster::block_on(ctx.read_bytes(part)).unwrap();
        assert_eq!(first * row_bytes, back.len() as u64);
        back.extend_from_slice(&bytes[..(n * row_bytes) as usize]);
    }
    assert_eq!(back, data);
    let whole = SplitTensor::upload(&ctx, "small", Category::Weights, &data, row_bytes).unwrap();
    assert_eq!(whole.parts.len(), 1);
}

#[test]
fn limits_are_typed_errors_not_panics() {
    let ctx = gpu(true);
    let too_big = ctx.caps().max_buffer_bytes + 1;
    match ctx.alloc("huge", Category::Kv, too_big, None) {
        Err(GpuError::LimitExceeded { requested, .. }) => assert_eq!(requested, too_big),
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    let a = upload_f32(&ctx, "a", &[0.0; 4]);
    let mut batch = ctx.batch("short");
    match binary(&mut batch, BinaryOp::Add, StorageType::F32, &a, &a, &a, 5) {
        Err(GpuError::Unsupported { reason, .. }) => assert!(reason.contains("5 elements"), "{reason}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    match binary(&mut batch, BinaryOp::Add, StorageType::F16, &a, &a, &a, 4) {
        Err(GpuError::Unsupported { reason, .. }) => assert!(reason.contains("f16"), "{reason}"),
        other => panic!("a downlevel device has no f16: expected Unsupported, got {other:?}"),
    }
    assert_eq!(ctx.memory().live_buffers, 1, "failed calls leak nothing");
}

#[test]
fn an_adapter_filter_that_matches_nothing_names_the_adapters() {
    let options =
        ferrogem::gpu::ContextOptions { adapter_filter: Some("no-such-adapter-xyz".into()), ..Default::default() };
    match ferrogem::gpu::Context::new_blocking(options) {
        Err(e @ GpuError::NoAdapter { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("present:") && msg.contains("FERROGEM_ADAPTER"), "{msg}");
        }
        Err(other) => panic!("expected NoAdapter, got {other}"),
        Ok(_) => panic!("expected NoAdapter, got a context"),
    }
}
