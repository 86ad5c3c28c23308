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
    let mut state = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

pub fn read_f32(ctx: &Context, buffer: &ferrogem::gpu::GpuBuffer) -> Vec<f32> {
    let bytes = pollster::block_on(ctx.read_bytes(buffer)).expect("readback");
    bytemuck::pod_collect_to_vec(&bytes)
}
