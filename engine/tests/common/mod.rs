//! Shared by the GPU test binaries: a context or a clear failure. A GPU test never skips: no adapter fails the
//! test with what to install.

#![allow(dead_code)] // each test binary uses a different subset

use ferrogem::gpu::{Context, ContextOptions};

pub fn gpu(downlevel: bool) -> Context {
    let options = ContextOptions { downlevel, ..ContextOptions::from_env() };
    match Context::new_blocking(options) {
        Ok(ctx) => ctx,
        Err(e) => panic!("GPU test needs an adapter and found none: {e}"),
    }
}

/// Deterministic inputs seeded from a name, so a failure reproduces exactly.
pub fn seeded_f32(name: &str, n: usize) -> Vec<f32> {
    let mut rng = ferrogem::sampling::SplitMix64::from_name(name);
    (0..n).map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0).collect()
}

pub fn read_f32(ctx: &Context, buffer: &ferrogem::gpu::GpuBuffer) -> Vec<f32> {
    let bytes = pollster::block_on(ctx.read_bytes(buffer)).expect("readback");
    bytemuck::pod_collect_to_vec(&bytes)
}
