//! The memory-bandwidth probe (`shaders/stream_read.wgsl`): every vec4 of a buffer read once, one f32 sum per
//! workgroup written. What a shader measurably reads per second is the honest basis of a bandwidth roofline; a
//! buffer copy (the DMA engines, or the driver's own kernel) is not what the model's kernels do.

use super::WG_SIZE;
use super::args::{check_buffer, checked_u32};
use crate::gpu::kernels::{
    Access, BOOLS, KernelKey, Requires, VariantSource, defines_with, key_variants, reduction_name, variants_of,
};
use crate::gpu::{Batch, GpuBuffer, GpuError, Grid, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamReadKey {
    pub subgroups: bool,
}

impl KernelKey for StreamReadKey {
    const FILE: &'static str = "stream_read.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("stream_read_f32_{}_wg{WG_SIZE}", reduction_name(self.subgroups))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        defines_with(WG_SIZE, &[("SUBGROUPS", self.subgroups)])
    }

    fn requires(&self) -> Requires {
        Requires { f16: false, subgroups: self.subgroups, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        key_variants!(StreamReadKey { subgroups in BOOLS })
    }
}

/// Matches `Params` in `stream_read.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct StreamReadParams {
    n_vec4: u32,
    n_workgroups: u32,
    _pad: [u32; 2],
}

/// Invocations per workgroup of [`stream_read`], for callers that size `out` or work out which element a
/// workgroup reads.
pub const STREAM_READ_WG_SIZE: u32 = WG_SIZE;

/// Reads the first `n_vec4` 16-byte elements of `src` with `n_workgroups` workgroups; `out[w]` (f32) gets the sum
/// of what workgroup `w` read (element `i` is read by invocation `i mod (n_workgroups · WG_SIZE)`).
pub fn stream_read(batch: &mut Batch, src: &GpuBuffer, n_vec4: u64, out: &GpuBuffer, n_workgroups: u32) -> Result<()> {
    let op = "stream_read";
    let n_vec4 = checked_u32(op, "n_vec4", n_vec4)?;
    check_buffer(op, "src", src, n_vec4 as u64 * 16)?;
    check_buffer(op, "out", out, n_workgroups as u64 * 4)?;
    if src.id() == out.id() {
        return Err(GpuError::Unsupported { op: op.into(), reason: "out is also the source".into() });
    }
    checked_u32(op, "invocations", n_workgroups as u64 * WG_SIZE as u64)?;
    if n_workgroups == 0 {
        return Ok(());
    }
    let params = StreamReadParams { n_vec4, n_workgroups, _pad: [0; 2] };
    let grid = Grid::for_items(n_workgroups as u64, 1, batch.max_workgroups_per_dimension());
    batch.dispatch(&StreamReadKey { subgroups: batch.caps().subgroups }, &[src, out], &params, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<StreamReadKey>()
}
