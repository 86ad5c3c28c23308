//! Elementwise f32 unary ops in `shaders/unary.wgsl`: ggml `scale` (`y = x·s`), `softcap` (`y = cap·tanh(x/cap)`,
//! Gemma's final logit softcap), `gelu` (tanh approximation) and `mul_scalar` (`y = x·scalar[0]` with the scalar in a
//! 1-element GPU buffer: Gemma 4's per-layer `layer_output_scale`).
//!
//! `unary_back` is their input gradient for training (`shaders/unary_back.wgsl`).
//!
//! Each op has an out-of-place form (`dst` must be a different buffer from `src`) and an in-place form that
//! rewrites one buffer; the two have different binding layouts, hence the `INPLACE` const parameter of the keys.

use super::WG_SIZE;
use super::args::{check_buffer, check_distinct, checked_u32};
use crate::gpu::kernels::{Access, KernelKey, Requires, VariantSource, variants_of};
use crate::gpu::{Batch, GpuBuffer, Grid};
use crate::gpu::{GpuError, Result};

/// Ops whose operand, if any, is a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `y = x·value`.
    Scale,
    /// `y = value·tanh(x/value)`, `value` > 0.
    Softcap,
    /// `y = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    Gelu,
}

impl UnaryOp {
    pub fn ggml_name(self) -> &'static str {
        match self {
            UnaryOp::Scale => "scale",
            UnaryOp::Softcap => "softcap",
            UnaryOp::Gelu => "gelu",
        }
    }

    fn define(self) -> &'static str {
        match self {
            UnaryOp::Scale => "SCALE",
            UnaryOp::Softcap => "SOFTCAP",
            UnaryOp::Gelu => "GELU",
        }
    }
}

/// Binding numbers in the order unary.wgsl documents: src (unless in place), scalar (if any), dst, params.
fn binding_defines(inplace: bool, scalar: bool) -> Vec<(&'static str, String)> {
    let mut names = Vec::new();
    if !inplace {
        names.push("BINDING_SRC");
    }
    if scalar {
        names.push("BINDING_SCALAR");
    }
    names.extend(["BINDING_DST", "BINDING_PARAMS"]);
    let mut d: Vec<(&'static str, String)> = names.into_iter().enumerate().map(|(i, n)| (n, format!("{i}"))).collect();
    d.push(("WG_SIZE", format!("{WG_SIZE}u")));
    if inplace {
        d.push(("INPLACE", String::new()));
    }
    d
}

fn suffix(inplace: bool) -> &'static str {
    if inplace { "_inplace" } else { "" }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnaryKey<const INPLACE: bool> {
    pub op: UnaryOp,
}

impl<const INPLACE: bool> KernelKey for UnaryKey<INPLACE> {
    const FILE: &'static str = "unary.wgsl";
    fn bindings(&self) -> &'static [Access] {
        if INPLACE {
            &[Access::ReadWrite, Access::Uniform]
        } else {
            &[Access::Read, Access::ReadWrite, Access::Uniform]
        }
    }

    fn name(&self) -> String {
        format!("unary_{}_f32{}_wg{WG_SIZE}", self.op.ggml_name(), suffix(INPLACE))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        let mut d = binding_defines(INPLACE, false);
        d.push((self.op.define(), String::new()));
        d
    }

    fn requires(&self) -> Requires {
        Requires::default()
    }

    fn all_variants() -> Vec<Self> {
        [UnaryOp::Scale, UnaryOp::Softcap, UnaryOp::Gelu].into_iter().map(|op| UnaryKey { op }).collect()
    }
}

/// `y = x·scalar[0]` with the scalar read from a GPU buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MulScalarKey<const INPLACE: bool>;

impl<const INPLACE: bool> KernelKey for MulScalarKey<INPLACE> {
    const FILE: &'static str = "unary.wgsl";
    fn bindings(&self) -> &'static [Access] {
        if INPLACE {
            &[Access::Read, Access::ReadWrite, Access::Uniform]
        } else {
            &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
        }
    }

    fn name(&self) -> String {
        format!("unary_mul_scalar_f32{}_wg{WG_SIZE}", suffix(INPLACE))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        let mut d = binding_defines(INPLACE, true);
        d.push(("MUL_SCALAR", String::new()));
        d
    }

    fn requires(&self) -> Requires {
        Requires::default()
    }

    fn all_variants() -> Vec<Self> {
        vec![MulScalarKey]
    }
}

/// Matches `Params` in `unary.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct UnaryParams {
    n_elems: u32,
    value: f32,
    _pad: [u32; 2],
}
const _: () = assert!(size_of::<UnaryParams>() == 16);

fn check_value(op: UnaryOp, value: f32) -> Result<()> {
    let ok = match op {
        UnaryOp::Scale => value.is_finite(),
        UnaryOp::Softcap => value.is_finite() && value > 0.0,
        UnaryOp::Gelu => true,
    };
    if !ok {
        return Err(GpuError::Unsupported {
            op: op.ggml_name().into(),
            reason: format!("parameter {value} is out of range"),
        });
    }
    Ok(())
}

fn params(op: &str, n_elems: u64, value: f32) -> Result<(UnaryParams, u64)> {
    let n = checked_u32(op, "n_elems", n_elems)?;
    Ok((UnaryParams { n_elems: n, value, _pad: [0; 2] }, n_elems * 4))
}

/// `dst[i] = op(src[i])` for `i < n_elems`; `value` is the scale (Scale) or the cap (Softcap), ignored by Gelu.
pub fn unary(batch: &mut Batch, op: UnaryOp, value: f32, src: &GpuBuffer, dst: &GpuBuffer, n_elems: u64) -> Result<()> {
    let name = op.ggml_name();
    check_value(op, value)?;
    let (p, bytes) = params(name, n_elems, value)?;
    check_buffer(name, "src", src, bytes)?;
    check_buffer(name, "dst", dst, bytes)?;
    check_distinct(name, src, dst)?;
    let grid = Grid::for_items(n_elems, WG_SIZE, batch.max_workgroups_per_dimension());
    batch.dispatch(&UnaryKey::<false> { op }, &[src, dst], &p, grid)
}

/// `x[i] = op(x[i])` for `i < n_elems`, in place.
pub fn unary_inplace(batch: &mut Batch, op: UnaryOp, value: f32, x: &GpuBuffer, n_elems: u64) -> Result<()> {
    let name = op.ggml_name();
    check_value(op, value)?;
    let (p, bytes) = params(name, n_elems, value)?;
    check_buffer(name, "x", x, bytes)?;
    let grid = Grid::for_items(n_elems, WG_SIZE, batch.max_workgroups_per_dimension());
    batch.dispatch(&UnaryKey::<true> { op }, &[x], &p, grid)
}

/// `dst[i] = src[i]·scalar[0]` for `i < n_elems`; `scalar` is an f32 buffer (e.g. `layer_output_scale.weight`).
pub fn mul_scalar(batch: &mut Batch, src: &GpuBuffer, scalar: &GpuBuffer, dst: &GpuBuffer, n_elems: u64) -> Result<()> {
    let op = "mul_scalar";
    let (p, bytes) = params(op, n_elems, 0.0)?;
    check_buffer(op, "src", src, bytes)?;
    check_buffer(op, "scalar", scalar, 4)?;
    check_buffer(op, "dst", dst, bytes)?;
    check_distinct(op, src, dst)?;
    check_distinct(op, scalar, dst)?;
    let grid = Grid::for_items(n_elems, WG_SIZE, batch.max_workgroups_per_dimension());
    batch.dispatch(&MulScalarKey::<false>, &[src, scalar, dst], &p, grid)
}

/// `x[i] = x[i]·scalar[0]` for `i < n_elems`, in place.
pub fn mul_scalar_inplace(batch: &mut Batch, scalar: &GpuBuffer, x: &GpuBuffer, n_elems: u64) -> Result<()> {
    let op = "mul_scalar";
    let (p, bytes) = params(op, n_elems, 0.0)?;
    check_buffer(op, "scalar", scalar, 4)?;
    check_buffer(op, "x", x, bytes)?;
    check_distinct(op, scalar, x)?;
    let grid = Grid::for_items(n_elems, WG_SIZE, batch.max_workgroups_per_dimension());
    batch.dispatch(&MulScalarKey::<true>, &[scalar, x], &p, grid)
}

/// The input gradient of a [`UnaryOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnaryBackKey {
    pub op: UnaryOp,
}

impl KernelKey for UnaryBackKey {
    const FILE: &'static str = "unary_back.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("unary_{}_back_f32_wg{WG_SIZE}", self.op.ggml_name())
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        vec![("WG_SIZE", format!("{WG_SIZE}u")), (self.op.define(), String::new())]
    }

    fn requires(&self) -> Requires {
        Requires::default()
    }

    fn all_variants() -> Vec<Self> {
        [UnaryOp::Scale, UnaryOp::Softcap, UnaryOp::Gelu].into_iter().map(|op| UnaryBackKey { op }).collect()
    }
}

/// `dx[i] = dy[i]·op'(x[i])` for `i < n_elems`, `x` the forward's input and `value` its parameter.
pub fn unary_back(
    batch: &mut Batch,
    op: UnaryOp,
    value: f32,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    dx: &GpuBuffer,
    n_elems: u64,
) -> Result<()> {
    let name = format!("{}_back", op.ggml_name());
    check_value(op, value)?;
    let (p, bytes) = params(&name, n_elems, value)?;
    for (what, buffer) in [("x", x), ("dy", dy), ("dx", dx)] {
        check_buffer(&name, what, buffer, bytes)?;
    }
    check_distinct(&name, x, dx)?;
    check_distinct(&name, dy, dx)?;
    let grid = Grid::for_items(n_elems, WG_SIZE, batch.max_workgroups_per_dimension());
    batch.dispatch(&UnaryBackKey { op }, &[x, dy, dx], &p, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    let mut v = variants_of::<UnaryBackKey>()?;
    v.extend(variants_of::<UnaryKey<false>>()?);
    v.extend(variants_of::<UnaryKey<true>>()?);
    v.extend(variants_of::<MulScalarKey<false>>()?);
    v.extend(variants_of::<MulScalarKey<true>>()?);
    Ok(v)
}
