//! Tensors larger than one storage binding (`max_storage_buffer_binding_size`: 128 MiB on lavapipe, where a
//! Gemma 4 E2B tied embedding is ~330 MB) live in several buffers, split on whole rows so every kernel that reads
//! a row finds it in one part.

use super::context::buffer::GpuBuffer;
use super::context::{Context, FillTile};
use super::memory::Category;
use super::{GpuError, Result};

/// Which rows go into which part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitPlan {
    pub row_bytes: u64,
    pub rows_per_part: u64,
    /// (first row, row count) of each part.
    pub parts: Vec<(u64, u64)>,
}

impl SplitPlan {
    /// Splits `n_rows` rows of `row_bytes` into parts of at most `max_part_bytes` (after padding to 4 bytes).
    pub fn new(n_rows: u64, row_bytes: u64, max_part_bytes: u64) -> Result<SplitPlan> {
        let usable = max_part_bytes - max_part_bytes % wgpu::COPY_BUFFER_ALIGNMENT;
        if row_bytes == 0 || row_bytes > usable {
            return Err(GpuError::LimitExceeded {
                what: "one tensor row".into(),
                requested: row_bytes,
                limit: usable,
                hint: "a single row must fit one storage binding; this tensor cannot run on this device",
            });
        }
        let rows_per_part = usable / row_bytes;
        let parts = (0..n_rows.div_ceil(rows_per_part))
            .map(|i| {
                let first = i * rows_per_part;
                (first, rows_per_part.min(n_rows - first))
            })
            .collect();
        Ok(SplitPlan { row_bytes, rows_per_part, parts })
    }
}

/// A row-major tensor uploaded as one or more buffers.
#[derive(Debug)]
pub struct SplitTensor {
    pub plan: SplitPlan,
    pub parts: Vec<GpuBuffer>,
}

impl SplitTensor {
    /// Uploads `data` (`n_rows * row_bytes` bytes) in as many parts as the device's binding limit requires.
    pub fn upload(ctx: &Context, label: &str, category: Category, data: &[u8], row_bytes: u64) -> Result<SplitTensor> {
        let max_part_bytes = ctx.caps().max_storage_buffer_binding_bytes.min(ctx.caps().max_buffer_bytes);
        Self::upload_with_limit(ctx, label, category, data, row_bytes, max_part_bytes)
    }

    /// `upload` with an explicit part size, so tests can force a split on any device.
    pub fn upload_with_limit(
        ctx: &Context,
        label: &str,
        category: Category,
        data: &[u8],
        row_bytes: u64,
        max_part_bytes: u64,
    ) -> Result<SplitTensor> {
        let mut copy = |offset: u64, tile: &mut [u8]| {
            tile.copy_from_slice(&data[offset as usize..offset as usize + tile.len()]);
            Ok::<(), GpuError>(())
        };
        Self::upload_parts(ctx, label, category, data.len() as u64, row_bytes, max_part_bytes, &mut copy)
    }

    /// `upload` of `len_bytes` that `fill(offset, tile)` writes a tile at a time ([`Context::upload_with`]): the
    /// loader reads each tile from the file into the mapped buffer, never holding the whole tensor.
    pub fn upload_from<E: From<GpuError>>(
        ctx: &Context,
        label: &str,
        category: Category,
        len_bytes: u64,
        row_bytes: u64,
        fill: &mut FillTile<'_, E>,
    ) -> std::result::Result<SplitTensor, E> {
        let max_part_bytes = ctx.caps().max_storage_buffer_binding_bytes.min(ctx.caps().max_buffer_bytes);
        Self::upload_parts(ctx, label, category, len_bytes, row_bytes, max_part_bytes, fill)
    }

    fn upload_parts<E: From<GpuError>>(
        ctx: &Context,
        label: &str,
        category: Category,
        len_bytes: u64,
        row_bytes: u64,
        max_part_bytes: u64,
        fill: &mut FillTile<'_, E>,
    ) -> std::result::Result<SplitTensor, E> {
        let n_rows = len_bytes.checked_div(row_bytes).unwrap_or(0);
        if row_bytes == 0 || n_rows * row_bytes != len_bytes {
            return Err(GpuError::Unsupported {
                op: format!("upload of `{label}`"),
                reason: format!("{len_bytes} bytes is not a whole number of {row_bytes}-byte rows"),
            }
            .into());
        }
        let plan = SplitPlan::new(n_rows, row_bytes, max_part_bytes)?;
        let multi = plan.parts.len() > 1;
        let mut parts = Vec::with_capacity(plan.parts.len());
        for (i, &(first, rows)) in plan.parts.iter().enumerate() {
            let part_label = if multi { format!("{label}[part {i}]") } else { label.to_owned() };
            let start = first * row_bytes;
            let mut fill_part = |offset: u64, tile: &mut [u8]| fill(start + offset, tile);
            parts.push(ctx.upload_with(&part_label, category, rows * row_bytes, &mut fill_part)?);
        }
        Ok(SplitTensor { plan, parts })
    }

    pub fn size_bytes(&self) -> u64 {
        self.parts.iter().map(GpuBuffer::size_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_never_straddle_parts() {
        let plan = SplitPlan::new(10, 18, 64).unwrap();
        assert_eq!(plan.rows_per_part, 3);
        assert_eq!(plan.parts, vec![(0, 3), (3, 3), (6, 3), (9, 1)]);
        // E2B's tied embedding under lavapipe's 128 MiB binding: 262144 rows of 1536 Q6_K values (1260 bytes).
        let e2b = SplitPlan::new(262_144, 1260, 128 << 20).unwrap();
        assert_eq!(e2b.parts.len(), 3);
        assert_eq!(e2b.parts.iter().map(|p| p.1).sum::<u64>(), 262_144);
        assert!(SplitPlan::new(1, 100, 64).is_err());
    }
}
