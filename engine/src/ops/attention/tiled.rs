//! The one-pass attention of prompt chunks, in blocks of query rows that share a kv head
//! (`shaders/attention_tiled.wgsl`): each key is loaded once per block and each value once per group of rows that
//! share an accumulator column, instead of both once per row. The
//! row kernel (`attention.wgsl`) stays for the shapes this does not take: few rows per kv head (decoding, which
//! splits positions instead), and head dims other than the compiled ones.

use super::{AttentionShape, CacheType};
use crate::gpu::Grid;
use crate::gpu::kernels::{Access, KernelKey, Requires, defines_with, key_variants};
use crate::ops::WG_SIZE;

/// Query rows per workgroup; the kernel lays its invocations out as 16 per row (`WG_SIZE` = 16 · 16).
const BLOCK_ROWS: u32 = 16;
const _: () = assert!(WG_SIZE == BLOCK_ROWS * 16);

/// The head dims the kernel is compiled for: each a multiple of its 64-element chunk whose vec4 columns divide
/// the workgroup, with at most 8 accumulators per invocation.
const HEAD_DIMS: [u32; 4] = [64, 128, 256, 512];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct AttentionTiledKey {
    cache_type: CacheType,
    head_dim: u32,
}

impl AttentionTiledKey {
    /// The kernel for `shape` when it has at least a block of rows per kv head and a compiled head dim.
    pub(super) fn for_shape(shape: &AttentionShape) -> Option<AttentionTiledKey> {
        let group_rows = shape.n_tokens as u64 * (shape.n_head / shape.n_kv_head) as u64;
        (group_rows >= BLOCK_ROWS as u64 && HEAD_DIMS.contains(&shape.head_dim))
            .then_some(AttentionTiledKey { cache_type: shape.cache_type, head_dim: shape.head_dim })
    }

    /// One workgroup per block of rows of each kv head.
    pub(super) fn grid(&self, shape: &AttentionShape, max_per_dim: u32) -> Grid {
        let group_rows = shape.n_tokens as u64 * (shape.n_head / shape.n_kv_head) as u64;
        Grid::for_items(shape.n_kv_head as u64 * group_rows.div_ceil(BLOCK_ROWS as u64), 1, max_per_dim)
    }
}

impl KernelKey for AttentionTiledKey {
    const FILE: &'static str = "attention_tiled.wgsl";
    fn bindings(&self) -> &'static [Access] {
        &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::Uniform]
    }

    fn name(&self) -> String {
        format!("attention_tiled_kv{}_hd{}_wg{WG_SIZE}", self.cache_type.name(), self.head_dim)
    }

    fn defines(&self) -> Vec<(&'static str, String)> {
        let mut d = defines_with(WG_SIZE, &[]);
        d.push(("HEAD_DIM", format!("{}u", self.head_dim)));
        d
    }

    fn requires(&self) -> Requires {
        Requires { f16: self.cache_type == CacheType::F16, subgroups: false, coop_matrix: false }
    }

    fn all_variants() -> Vec<Self> {
        key_variants!(AttentionTiledKey { cache_type in [CacheType::F32, CacheType::F16], head_dim in HEAD_DIMS })
    }
}
