//! ggml `glu` in its GEGLU form with separate operands: `dst = gelu(gate) ⊙ up`, f32, gelu the tanh approximation
//! (Gemma 4's MLP and PLE gate). The plain activation is `unary::UnaryOp::Gelu`; both share
//! `shaders/include/activation.wgsl`.

use super::WG_SIZE;
use super::unary::{check_buffer, check_distinct, checked_u32};
use crate::error::Result;
use crate::gpu::kernels::{Access, KernelKey, Requires, VariantSource, variants_of};
use crate::gpu::{Batch, GpuBuffer, Grid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GegluKey;

/// Matches `Params` in `glu.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GluParams {
    n_elems: u32,
    _pad: [u32; 3],
}
const _: () = assert!(size_of::<GluParams>() == 16);

impl KernelKey for GegluKey {
    const FILE: &'static str = "glu.wgsl";
    const BINDINGS: &'static [Access] = &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform];

    fn name(&self) -> String {
        format!("glu_geglu_f32_wg{WG_SIZE}")
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        vec![("WG_SIZE", format!("{WG_SIZE}u"))]
    }

    fn requires(&self) -> Requires {
        Requires::default()
    }

    fn all_variants() -> Vec<Self> {
        vec![GegluKey]
    }
}

/// `dst[i] = gelu(gate[i])·up[i]` for `i < n_elems`. `gate` and `up` may be the same buffer; `dst` must differ
/// from both.
pub fn geglu(batch: &mut Batch, gate: &GpuBuffer, up: &GpuBuffer, dst: &GpuBuffer, n_elems: u64) -> Result<()> {
    let op = "geglu";
    let n = checked_u32(op, "n_elems", n_elems)?;
    for (what, buf) in [("gate", gate), ("up", up), ("dst", dst)] {
        check_buffer(op, what, buf, n_elems * 4)?;
    }
    check_distinct(op, gate, dst)?;
    check_distinct(op, up, dst)?;
    let grid = Grid::for_items(n_elems, WG_SIZE, batch.max_workgroups_per_dimension());
    batch.dispatch(&GegluKey, &[gate, up, dst], &GluParams { n_elems: n, _pad: [0; 3] }, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<GegluKey>()
}
