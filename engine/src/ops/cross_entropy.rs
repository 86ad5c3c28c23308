//! Cross-entropy per row with integer targets and its backward, for training (ggml's `cross_entropy_loss` takes
//! soft labels and returns the mean; this keeps rows apart): `loss[r] = logsumexp(x[r]) − x[r][t]` and
//! `dx[r] = d_loss[r]·(softmax(x[r]) − onehot(t))`, f32 logits and u32 target ids (`shaders/cross_entropy.wgsl`).
//! A target id ≥ the row length ([`IGNORED_TARGET`]) leaves its row out: loss and gradient 0. Averaging over the
//! trained rows is the caller's, through `d_loss`.

use super::WG_SIZE;
use super::args::{check_buffer, check_distinct, checked_u32};
use crate::gpu::kernels::{
    Access, BOOLS, KernelKey, Requires, VariantSource, defines_with, key_variants, reduction_name, variants_of,
};
use crate::gpu::{Batch, GpuBuffer, GpuError, Grid, Result};

/// A target id for rows that are not trained on (prompt tokens under a chat mask, padding).
pub const IGNORED_TARGET: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CrossEntropyKey {
    /// The backward: `dx` from `d_loss` instead of the loss.
    pub back: bool,
    pub subgroups: bool,
}

/// Matches `Params` in `cross_entropy.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CrossEntropyParams {
    n_rows: u32,
    n_elems: u32,
    _pad: [u32; 2],
}
const _: () = assert!(size_of::<CrossEntropyParams>() == 16);

impl KernelKey for CrossEntropyKey {
    const FILE: &'static str = "cross_entropy.wgsl";
    fn bindings(&self) -> &'static [Access] {
        if self.back {
            &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
        } else {
            &[Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
        }
    }

    fn name(&self) -> String {
        let back = if self.back { "_back" } else { "" };
        format!("cross_entropy{back}_f32_{}_wg{WG_SIZE}", reduction_name(self.subgroups))
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        defines_with(WG_SIZE, &[("BACK", self.back), ("SUBGROUPS", self.subgroups)])
    }

    fn requires(&self) -> Requires {
        Requires { f16: false, subgroups: self.subgroups, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        key_variants!(CrossEntropyKey { back in BOOLS, subgroups in BOOLS })
    }
}

/// The logits and targets both directions read: `[n_rows][n_elems]` f32 and `n_rows` u32 ids.
#[derive(Clone, Copy)]
pub struct CrossEntropyInput<'a> {
    pub logits: &'a GpuBuffer,
    pub targets: &'a GpuBuffer,
    pub n_rows: u32,
    pub n_elems: u32,
}

impl CrossEntropyInput<'_> {
    fn check(&self, op: &str, output: &GpuBuffer, output_elems: u64) -> Result<CrossEntropyParams> {
        let total = checked_u32(op, "n_rows × n_elems", self.n_rows as u64 * self.n_elems as u64)?;
        if self.n_elems == 0 {
            return Err(GpuError::Unsupported { op: op.into(), reason: "rows of zero logits have no loss".into() });
        }
        check_buffer(op, "logits", self.logits, total as u64 * 4)?;
        check_buffer(op, "targets", self.targets, self.n_rows as u64 * 4)?;
        check_buffer(op, "output", output, output_elems * 4)?;
        check_distinct(op, self.logits, output)?;
        check_distinct(op, self.targets, output)?;
        Ok(CrossEntropyParams { n_rows: self.n_rows, n_elems: self.n_elems, _pad: [0; 2] })
    }
}

/// `loss[r]` for each of the input's rows (`n_rows` f32 values).
pub fn cross_entropy(batch: &mut Batch, input: CrossEntropyInput, loss: &GpuBuffer) -> Result<()> {
    let params = input.check("cross_entropy", loss, input.n_rows as u64)?;
    if input.n_rows == 0 {
        return Ok(());
    }
    let key = CrossEntropyKey { back: false, subgroups: batch.caps().subgroups };
    let grid = Grid::for_items(input.n_rows as u64, 1, batch.max_workgroups_per_dimension());
    batch.dispatch(&key, &[input.logits, input.targets, loss], &params, grid)
}

/// `dx` (`[n_rows][n_elems]`), the logits' gradient given each row's upstream `d_loss` (`n_rows` f32 values).
pub fn cross_entropy_back(
    batch: &mut Batch,
    input: CrossEntropyInput,
    d_loss: &GpuBuffer,
    dx: &GpuBuffer,
) -> Result<()> {
    let op = "cross_entropy_back";
    let params = input.check(op, dx, input.n_rows as u64 * input.n_elems as u64)?;
    check_buffer(op, "d_loss", d_loss, input.n_rows as u64 * 4)?;
    check_distinct(op, d_loss, dx)?;
    if input.n_rows == 0 {
        return Ok(());
    }
    let key = CrossEntropyKey { back: true, subgroups: batch.caps().subgroups };
    let grid = Grid::for_items(input.n_rows as u64, 1, batch.max_workgroups_per_dimension());
    batch.dispatch(&key, &[input.logits, input.targets, d_loss, dx], &params, grid)
}

/// Every variant of this family's kernels.
pub fn variants() -> Result<Vec<VariantSource>> {
    variants_of::<CrossEntropyKey>()
}
