//! Buffers created through the context's allocator. Dropping one evicts every cached bind group that references
//! it, records the free with the accountant, and destroys the wgpu buffer — in that order, so a cached bind group
//! can never outlive its buffer.

use super::Shared;
use crate::gpu::memory::{Category, MemEventKind};
use std::sync::Arc;

/// A stable identity for a buffer, assigned by the allocator; never reused within a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufferId(pub(crate) u64);

pub struct GpuBuffer {
    id: BufferId,
    raw: wgpu::Buffer,
    size_bytes: u64,
    label: String,
    category: Category,
    shared: Arc<Shared>,
}

impl GpuBuffer {
    pub(crate) fn new(
        id: BufferId,
        raw: wgpu::Buffer,
        size_bytes: u64,
        label: String,
        category: Category,
        shared: Arc<Shared>,
    ) -> Self {
        GpuBuffer { id, raw, size_bytes, label, category, shared }
    }

    pub fn id(&self) -> BufferId {
        self.id
    }

    pub fn raw(&self) -> &wgpu::Buffer {
        &self.raw
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn category(&self) -> Category {
        self.category
    }
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({:?}, `{}`, {} bytes, {:?})", self.id, self.label, self.size_bytes, self.category)
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        let evicted = {
            let mut state = self.shared.lock_state();
            let evicted = state.evict_bind_groups_of(self.id);
            let (phase, time_s) = (state.phase, self.shared.clock.elapsed_s());
            state.accountant.record(MemEventKind::Free, &self.label, self.category, self.size_bytes, phase, time_s);
            evicted
        };
        // The evicted entries' bind groups and uniform buffers are released here, outside the lock.
        drop(evicted);
        self.raw.destroy();
    }
}
