//! ggml `glu` in its GEGLU form with separate operands: `dst = gelu(gate) ⊙ up`, f32, gelu the tanh approximation
//! (Gemma 4's MLP and PLE gate), on contiguous or strided operands. The plain activation is
//! `unary::UnaryOp::Gelu`; both share `shaders/include/activation.wgsl`. The decode path fuses GeGLU into the
//! gate/up product instead (`mul_mat::mul_mat_vec_geglu`).

use super::WG_SIZE;
use super::args::{check_buffer, check_distinct, checked_u32};
use crate::gpu::Result;
use crate::gpu::kernels::{Access, KernelKey, Requires, VariantSource, defines_with, variants_of};
use crate::gpu::{Batch, GpuBuffer, Grid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GegluKey;

/// Matches `Params` in `glu.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GluParams {
    n_elems: u32,
    n_cols: u32,
    gate_offset: u32,
    gate_stride: u32,
    up_offset: u32,
    up_stride: u32,
    _pad: [u32; 2],
}
const _: () = assert!(size_of::<GluParams>() == 32);

impl KernelKey for GegluKey {
    const FILE: &'static str = "glu.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("glu_geglu_f32_wg{WG_SIZE}")
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        defines_with(WG_SIZE, &[])
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
    let n = checked_u32("geglu", "n_elems", n_elems)?;
    geglu_rows(batch, GluOperand::contiguous(gate, n), GluOperand::contiguous(up, n), dst, 1, n)
}

/// One operand of [`geglu_rows`]: element (r, c) is `buffer[offset_elems + r·row_stride_elems + c]`.
#[derive(Debug, Clone, Copy)]
pub struct GluOperand<'a> {
    pub buffer: &'a GpuBuffer,
    pub offset_elems: u32,
    pub row_stride_elems: u32,
}

impl<'a> GluOperand<'a> {
    /// Rows of `n_cols` back to back from the start of `buffer`.
    pub fn contiguous(buffer: &'a GpuBuffer, n_cols: u32) -> Self {
        GluOperand { buffer, offset_elems: 0, row_stride_elems: n_cols }
    }
}

/// `dst[r][c] = gelu(gate(r, c))·up(r, c)` for an `[n_rows][n_cols]` contiguous `dst`, the operands read through
/// their strides (e.g. the two halves of a stacked `[gate | up]` product, or one layer's slice of PLE inputs).
/// `dst` must differ from both operands' buffers.
pub fn geglu_rows(
    batch: &mut Batch,
    gate: GluOperand,
    up: GluOperand,
    dst: &GpuBuffer,
    n_rows: u32,
    n_cols: u32,
) -> Result<()> {
    let op = "geglu";
    let n = checked_u32(op, "n_rows × n_cols", n_rows as u64 * n_cols as u64)?;
    if n == 0 {
        return Ok(());
    }
    for (what, a) in [("gate", &gate), ("up", &up)] {
        let last = a.offset_elems as u64 + (n_rows as u64 - 1) * a.row_stride_elems as u64 + n_cols as u64;
        checked_u32(op, what, last)?;
        check_buffer(op, what, a.buffer, last * 4)?;
        check_distinct(op, a.buffer, dst)?;
    }
    check_buffer(op, "dst", dst, n as u64 * 4)?;
    let params = GluParams {
        n_elems: n,
        n_cols,
        gate_offset: gate.offset_elems,
        gate_stride: gate.row_stride_elems,
        up_offset: up.offset_elems,
        up_stride: up.row_stride_elems,
        _pad: [0; 2],
    };
    let grid = Grid::for_items(n as u64, WG_SIZE, batch.max_workgroups_per_dimension());
    batch.dispatch(&GegluKey, &[gate.buffer, up.buffer, dst], &params, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<GegluKey>()
}
