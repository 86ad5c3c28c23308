//! Bind groups cached by pipeline identity and the identities of the buffers bound, so a steady-state decode step
//! creates none. Each entry owns the uniform buffer its parameters live in.
//!
//! Why the key carries an occurrence index: uniform data is written with `queue.write_buffer`, and every such
//! write lands before the command buffer it precedes runs. If one batch used the same (pipeline, buffers) pair
//! twice with different parameters through one entry, both dispatches would see the second write. So within a
//! batch the n-th use of a pair gets its own entry; the next batch, recorded the same way, hits the same entries.

use super::buffer::BufferId;
use crate::gpu::Phase;
use crate::gpu::memory::{Accountant, Category, MemEventKind};
use serde::Serialize;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BindKey {
    pub pipeline_id: u64,
    pub buffers: Vec<BufferId>,
    pub occurrence: u32,
}

pub(crate) struct BindEntry {
    pub bind_group: wgpu::BindGroup,
    pub uniform: Option<wgpu::Buffer>,
    uniform_bytes: u64,
    /// The parameters last written, so unchanged parameters cost no write.
    last_params: Vec<u8>,
    last_used: u64,
}

impl BindEntry {
    pub(crate) fn new(bind_group: wgpu::BindGroup, uniform: Option<wgpu::Buffer>, uniform_bytes: u64) -> Self {
        BindEntry { bind_group, uniform, uniform_bytes, last_params: Vec::new(), last_used: 0 }
    }

    /// Writes `params` into the entry's uniform buffer unless it already holds exactly them.
    pub(crate) fn write_params(&mut self, queue: &wgpu::Queue, params: &[u8]) {
        if let Some(uniform) = &self.uniform
            && self.last_params != params
        {
            queue.write_buffer(uniform, 0, params);
            self.last_params.clear();
            self.last_params.extend_from_slice(params);
        }
    }
}

impl Drop for BindEntry {
    fn drop(&mut self) {
        if let Some(uniform) = &self.uniform {
            uniform.destroy();
        }
    }
}

/// Hits, misses and evictions during one phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PhaseCounters {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

impl PhaseCounters {
    pub fn hit_rate(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 { 0.0 } else { self.hits as f64 / lookups as f64 }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BindCacheStats {
    pub entries: usize,
    pub capacity: usize,
    pub by_phase: Vec<(Phase, PhaseCounters)>,
}

pub(crate) struct BindGroupCache {
    entries: HashMap<BindKey, BindEntry>,
    capacity: usize,
    counters: [PhaseCounters; Phase::ALL.len()],
    occurrences: HashMap<(u64, Vec<BufferId>), u32>,
    tick: u64,
}

/// Enough for every dispatch of a large model's decode and prefill graphs at once.
pub(crate) const DEFAULT_BIND_CACHE_CAPACITY: usize = 8192;

impl BindGroupCache {
    pub(crate) fn new(capacity: usize) -> Self {
        BindGroupCache {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            counters: Default::default(),
            occurrences: HashMap::new(),
            tick: 0,
        }
    }

    pub(crate) fn begin_batch(&mut self) {
        self.occurrences.clear();
    }

    /// The key for the next use of (pipeline, buffers) in the current batch.
    pub(crate) fn next_key(&mut self, pipeline_id: u64, buffers: Vec<BufferId>) -> BindKey {
        let count = self.occurrences.entry((pipeline_id, buffers.clone())).or_insert(0);
        let occurrence = *count;
        *count += 1;
        BindKey { pipeline_id, buffers, occurrence }
    }

    /// Looks the key up, counting a hit or a miss for `phase`.
    pub(crate) fn lookup(&mut self, key: &BindKey, phase: Phase) -> Option<&mut BindEntry> {
        self.tick += 1;
        let tick = self.tick;
        let counters = &mut self.counters[phase as usize];
        match self.entries.get_mut(key) {
            Some(entry) => {
                counters.hits += 1;
                entry.last_used = tick;
                Some(entry)
            }
            None => {
                counters.misses += 1;
                None
            }
        }
    }

    /// Inserts a new entry, evicting the least recently used one when full. Returns the evicted entries so the
    /// caller drops them outside any lock.
    pub(crate) fn insert(
        &mut self,
        key: BindKey,
        mut entry: BindEntry,
        phase: Phase,
        accountant: &mut Accountant,
        time_s: f64,
    ) -> (&mut BindEntry, Vec<BindEntry>) {
        let mut evicted = Vec::new();
        while self.entries.len() >= self.capacity {
            let Some(oldest) = self.entries.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some(e) = self.remove(&oldest, phase, accountant, time_s) {
                evicted.push(e);
            }
        }
        entry.last_used = self.tick;
        if entry.uniform_bytes > 0 {
            accountant.record(
                MemEventKind::Alloc,
                "bind-group uniform",
                Category::Other,
                entry.uniform_bytes,
                phase,
                time_s,
            );
        }
        let slot = self.entries.entry(key).insert_entry(entry).into_mut();
        (slot, evicted)
    }

    fn remove(&mut self, key: &BindKey, phase: Phase, accountant: &mut Accountant, time_s: f64) -> Option<BindEntry> {
        let entry = self.entries.remove(key)?;
        self.counters[phase as usize].evictions += 1;
        if entry.uniform_bytes > 0 {
            accountant.record(
                MemEventKind::Free,
                "bind-group uniform",
                Category::Other,
                entry.uniform_bytes,
                phase,
                time_s,
            );
        }
        Some(entry)
    }

    /// Removes every entry that binds `buffer`; called before the buffer is destroyed.
    pub(crate) fn evict_buffer(
        &mut self,
        buffer: BufferId,
        phase: Phase,
        accountant: &mut Accountant,
        time_s: f64,
    ) -> Vec<BindEntry> {
        let keys: Vec<BindKey> = self.entries.keys().filter(|k| k.buffers.contains(&buffer)).cloned().collect();
        keys.iter().filter_map(|k| self.remove(k, phase, accountant, time_s)).collect()
    }

    /// Removes every entry (e.g. before unloading a model).
    pub(crate) fn clear(&mut self, phase: Phase, accountant: &mut Accountant, time_s: f64) -> Vec<BindEntry> {
        let keys: Vec<BindKey> = self.entries.keys().cloned().collect();
        keys.iter().filter_map(|k| self.remove(k, phase, accountant, time_s)).collect()
    }

    pub(crate) fn stats(&self) -> BindCacheStats {
        BindCacheStats {
            entries: self.entries.len(),
            capacity: self.capacity,
            by_phase: Phase::ALL.iter().map(|&p| (p, self.counters[p as usize])).collect(),
        }
    }

    pub(crate) fn reset_counters(&mut self) {
        self.counters = Default::default();
    }
}
