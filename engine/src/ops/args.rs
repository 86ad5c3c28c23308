//! Argument checks every dispatcher shares: buffer sizes, binding limits, aliasing and the u32 index range. Below
//! every op module and above only the GPU runtime.

use crate::gpu::{GpuBuffer, GpuError, Result};

/// `buf` must hold at least `needed_bytes`.
pub(crate) fn check_buffer(op: &str, what: &str, buf: &GpuBuffer, needed_bytes: u64) -> Result<()> {
    if buf.size_bytes() < needed_bytes {
        return Err(GpuError::Unsupported {
            op: op.into(),
            reason: format!(
                "{what} `{}` holds {} bytes, the shape needs {needed_bytes}",
                buf.label(),
                buf.size_bytes()
            ),
        });
    }
    Ok(())
}

/// An output may not be an input of the same dispatch: wgpu rejects a buffer bound read-only and writable at once.
pub(crate) fn check_distinct(op: &str, input: &GpuBuffer, output: &GpuBuffer) -> Result<()> {
    if input.id() == output.id() {
        return Err(GpuError::Unsupported {
            op: op.into(),
            reason: format!(
                "`{}` is both an input and the output; use the in-place form or another buffer",
                output.label()
            ),
        });
    }
    Ok(())
}

/// Each of `outputs` differs from every input and from every other output.
pub(crate) fn check_outputs(op: &str, inputs: &[&GpuBuffer], outputs: &[&GpuBuffer]) -> Result<()> {
    for (i, output) in outputs.iter().enumerate() {
        for other in inputs.iter().chain(&outputs[i + 1..]) {
            check_distinct(op, other, output)?;
        }
    }
    Ok(())
}

/// Element counts and indices are u32 in the kernels.
pub(crate) fn checked_u32(op: &str, what: &str, n: u64) -> Result<u32> {
    u32::try_from(n).map_err(|_| GpuError::Unsupported {
        op: op.into(),
        reason: format!("{what} = {n} exceeds the 2^32 index range"),
    })
}

/// Errors unless `buffer` holds `need_bytes` and every byte offset the kernel computes fits in u32.
pub(crate) fn check_binding(
    op: &str,
    what: &str,
    buffer: &GpuBuffer,
    need_bytes: u64,
    max_binding_bytes: u64,
) -> Result<()> {
    if buffer.size_bytes() > max_binding_bytes {
        return Err(GpuError::LimitExceeded {
            what: format!("{what} binding `{}` of {op}", buffer.label()),
            requested: buffer.size_bytes(),
            limit: max_binding_bytes,
            hint: "split the tensor on rows (SplitTensor) and dispatch once per part",
        });
    }
    if need_bytes > u32::MAX as u64 {
        return Err(GpuError::LimitExceeded {
            what: format!("{what} of {op} (byte offsets are 32-bit in WGSL)"),
            requested: need_bytes,
            limit: u32::MAX as u64,
            hint: "split the tensor on rows (SplitTensor) and dispatch once per part",
        });
    }
    if buffer.size_bytes() < need_bytes {
        return Err(GpuError::Unsupported {
            op: op.to_owned(),
            reason: format!("{what} needs {need_bytes} bytes, `{}` has {}", buffer.label(), buffer.size_bytes()),
        });
    }
    Ok(())
}

/// A path forced onto cooperative matrices needs a device that granted them (`Capabilities::coop_matrix`).
pub(crate) fn check_coop_matrix(op: &str, coop_matrix: bool) -> Result<()> {
    if !coop_matrix {
        return Err(GpuError::Unsupported {
            op: op.into(),
            reason: "the coop path needs cooperative matrices (16 × 16 × 16 f16 → f32, subgroups of 32)".into(),
        });
    }
    Ok(())
}

/// An RMS norm's epsilon: finite and ≥ 0.
pub(crate) fn check_eps(op: &str, eps: f32) -> Result<()> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(GpuError::Unsupported {
            op: op.into(), reason: format!("eps must be finite and ≥ 0, got {eps}")
        });
    }
    Ok(())
}

/// The row shape shared by the rms_norm family: `n_rows × n_elems` within the u32 range, rows of at least one
/// element, a valid `eps`. `None` when there are no rows (nothing to dispatch), else the element count.
pub(crate) fn norm_rows(op: &str, n_rows: u32, n_elems: u32, eps: f32) -> Result<Option<u64>> {
    let total_elems = n_rows as u64 * n_elems as u64;
    checked_u32(op, "n_rows × n_elems", total_elems)?;
    if n_rows == 0 {
        return Ok(None);
    }
    if n_elems == 0 {
        return Err(GpuError::Unsupported { op: op.into(), reason: "rows of zero elements have no mean".into() });
    }
    check_eps(op, eps)?;
    Ok(Some(total_elems))
}
