//! The gradients of `glu::geglu` for training: `d_gate = dy ⊙ up ⊙ gelu'(gate)`, `d_up = dy ⊙ gelu(gate)`, f32,
//! contiguous operands, gelu the tanh form (`shaders/include/activation.wgsl`, shared with the forward).

use super::WG_SIZE;
use super::args::{check_buffer, check_outputs, checked_u32};
use crate::gpu::Result;
use crate::gpu::kernels::{Access, KernelKey, Requires, VariantSource, defines_with, variants_of};
use crate::gpu::{Batch, GpuBuffer, Grid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GegluBackKey;

/// Matches `Params` in `glu_back.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GluBackParams {
    n_elems: u32,
    _pad: [u32; 3],
}
const _: () = assert!(size_of::<GluBackParams>() == 16);

impl KernelKey for GegluBackKey {
    const FILE: &'static str = "glu_back.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("glu_geglu_back_f32_wg{WG_SIZE}")
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        defines_with(WG_SIZE, &[])
    }

    fn requires(&self) -> Requires {
        Requires::default()
    }

    fn all_variants() -> Vec<Self> {
        vec![GegluBackKey]
    }
}

/// The two input gradients of `dst = gelu(gate) ⊙ up` given `dy`, `n_elems` f32 values each. `d_gate` and `d_up`
/// must differ from each other and from every input.
pub fn geglu_back(
    batch: &mut Batch,
    gate: &GpuBuffer,
    up: &GpuBuffer,
    dy: &GpuBuffer,
    d_gate: &GpuBuffer,
    d_up: &GpuBuffer,
    n_elems: u64,
) -> Result<()> {
    let op = "geglu_back";
    let n = checked_u32(op, "n_elems", n_elems)?;
    if n == 0 {
        return Ok(());
    }
    for (what, buffer) in [("gate", gate), ("up", up), ("dy", dy), ("d_gate", d_gate), ("d_up", d_up)] {
        check_buffer(op, what, buffer, n as u64 * 4)?;
    }
    check_outputs(op, &[gate, up, dy], &[d_gate, d_up])?;
    let params = GluBackParams { n_elems: n, _pad: [0; 3] };
    let grid = Grid::for_items(n as u64, WG_SIZE, batch.max_workgroups_per_dimension());
    batch.dispatch(&GegluBackKey, &[gate, up, dy, d_gate, d_up], &params, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<GegluBackKey>()
}
