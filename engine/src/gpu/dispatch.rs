//! A batch records dispatches into one command encoder and one compute pass, and is submitted once, or in parts
//! (`submit_early`) so the GPU starts before the host has recorded all of it. Bind groups
//! come from the cache; parameters are written into the cached entry's uniform buffer. While GPU timing is on
//! (`timing.rs`), each dispatch and copy is bracketed by timestamps, read back right after the submit.

use super::context::bind_cache::{BindEntry, BindKey};
use super::context::buffer::GpuBuffer;
use super::context::timing::{BatchTimer, Span, TimingMethod};
use super::context::{Context, State};
use super::grid::Grid;
use super::kernels::{Access, KernelKey, Pipeline};
use super::{GpuError, Result};
use std::sync::Arc;

pub struct Batch {
    ctx: Context,
    encoder: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
    label: String,
    dispatches: u32,
    /// Dispatches recorded since the last submit.
    unsubmitted: u32,
    /// `Some` only while GPU timing is on.
    timer: Option<BatchTimer>,
}

impl Context {
    /// Starts recording. Each batch restarts the bind-group cache's occurrence count (see `bind_cache`).
    pub fn batch(&self, label: &str) -> Batch {
        self.shared.lock_state().bind_cache.begin_batch();
        let timer = self.shared.timing.begin_batch(self, label);
        let encoder = self.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        Batch { ctx: self.clone(), encoder, pass: None, label: label.to_owned(), dispatches: 0, unsubmitted: 0, timer }
    }
}

impl Batch {
    /// Records one dispatch of `key` over `grid`, binding `buffers` in order and `params` as the uniform.
    pub fn dispatch<K: KernelKey, P: bytemuck::Pod>(
        &mut self,
        key: &K,
        buffers: &[&GpuBuffer],
        params: &P,
        grid: Grid,
    ) -> Result<()> {
        let pipeline = self.ctx.pipeline(key)?;
        let storage_bindings = key.bindings().iter().filter(|a| **a != Access::Uniform).count();
        if buffers.len() != storage_bindings {
            return Err(GpuError::Unsupported {
                op: pipeline.name.clone(),
                reason: format!("takes {storage_bindings} buffers, {} were given", buffers.len()),
            });
        }
        let max_binding = self.ctx.caps().max_storage_buffer_binding_bytes;
        if let Some(big) = buffers.iter().find(|b| b.size_bytes() > max_binding) {
            return Err(GpuError::LimitExceeded {
                what: format!("binding `{}` of {}", big.label(), pipeline.name),
                requested: big.size_bytes(),
                limit: max_binding,
                hint: "split the tensor across buffers (SplitTensor) and dispatch per part",
            });
        }
        if grid.is_empty() {
            return Ok(());
        }
        let params = bytemuck::bytes_of(params);
        let bind_group = self.bind_group(&pipeline, buffers, params)?;
        let timed = self.timer.as_mut().map(|t| (t.method(), t.next_pair(Span::Kernel(Arc::clone(&pipeline)))));
        if let Some((TimingMethod::PassPerDispatch, (query_set, begin))) = &timed {
            let timestamp_writes = wgpu::ComputePassTimestampWrites {
                query_set,
                beginning_of_pass_write_index: Some(*begin),
                end_of_pass_write_index: Some(begin + 1),
            };
            let descriptor =
                wgpu::ComputePassDescriptor { label: Some(&pipeline.name), timestamp_writes: Some(timestamp_writes) };
            self.pass = Some(self.encoder.begin_compute_pass(&descriptor).forget_lifetime());
        }
        let pass = self.pass.get_or_insert_with(|| {
            self.encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("ferrogem"), timestamp_writes: None })
                .forget_lifetime()
        });
        if let Some((TimingMethod::InsidePass, (query_set, begin))) = &timed {
            pass.write_timestamp(query_set, *begin);
        }
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(grid.x, grid.y, 1);
        match &timed {
            Some((TimingMethod::InsidePass, (query_set, begin))) => pass.write_timestamp(query_set, begin + 1),
            Some((TimingMethod::PassPerDispatch, _)) => self.pass = None,
            None => {}
        }
        self.dispatches += 1;
        self.unsubmitted += 1;
        Ok(())
    }

    fn bind_group(&self, pipeline: &Arc<Pipeline>, buffers: &[&GpuBuffer], params: &[u8]) -> Result<wgpu::BindGroup> {
        let shared = &self.ctx.shared;
        let mut state = shared.lock_state();
        let phase = state.phase;
        let key: BindKey = state.bind_cache.next_key(pipeline.id, buffers.iter().map(|b| b.id()).collect());
        if let Some(entry) = state.bind_cache.lookup(&key, phase) {
            entry.write_params(&shared.queue, params);
            return Ok(entry.bind_group.clone());
        }
        let has_uniform = pipeline.bindings.last() == Some(&Access::Uniform);
        let uniform_bytes = if has_uniform { (params.len() as u64).next_multiple_of(16).max(16) } else { 0 };
        let uniform = has_uniform.then(|| {
            shared.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&pipeline.name),
                size: uniform_bytes,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let mut entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.raw().as_entire_binding() })
            .collect();
        if let Some(u) = &uniform {
            entries.push(wgpu::BindGroupEntry { binding: buffers.len() as u32, resource: u.as_entire_binding() });
        }
        let bind_group = shared.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&pipeline.name),
            layout: &pipeline.layout,
            entries: &entries,
        });
        let time_s = shared.clock.elapsed_s();
        let State { bind_cache, accountant, .. } = &mut *state;
        let (entry, evicted) =
            bind_cache.insert(key, BindEntry::new(bind_group, uniform, uniform_bytes), phase, accountant, time_s);
        entry.write_params(&shared.queue, params);
        let bind_group = entry.bind_group.clone();
        drop(state);
        drop(evicted);
        Ok(bind_group)
    }

    /// Records a buffer-to-buffer copy (ends the current compute pass).
    pub fn copy(
        &mut self,
        src: &GpuBuffer,
        src_offset_bytes: u64,
        dst: &GpuBuffer,
        dst_offset_bytes: u64,
        size_bytes: u64,
    ) {
        self.pass = None;
        let timed = self.timer.as_mut().filter(|t| t.times_copies()).map(|t| t.next_pair(Span::Copy));
        if let Some((query_set, begin)) = &timed {
            self.encoder.write_timestamp(query_set, *begin);
        }
        self.encoder.copy_buffer_to_buffer(src.raw(), src_offset_bytes, dst.raw(), dst_offset_bytes, size_bytes);
        if let Some((query_set, begin)) = &timed {
            self.encoder.write_timestamp(query_set, begin + 1);
        }
    }

    pub fn dispatches(&self) -> u32 {
        self.dispatches
    }

    /// Submits what is recorded so far once at least `min_dispatches` of it wait, so that the GPU starts on them
    /// while the host records the rest, which goes on in a fresh encoder. While GPU timing is on this does
    /// nothing: the batch's timestamps are resolved and read back in one submit.
    pub fn submit_early(&mut self, min_dispatches: u32) -> Result<()> {
        if self.timer.is_some() || self.unsubmitted < min_dispatches {
            return Ok(());
        }
        self.pass = None;
        let descriptor = wgpu::CommandEncoderDescriptor { label: Some(&self.label) };
        let recorded = std::mem::replace(&mut self.encoder, self.ctx.device().create_command_encoder(&descriptor));
        self.ctx.queue().submit([recorded.finish()]);
        self.ctx.shared.submissions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.unsubmitted = 0;
        self.ctx.check_errors()
    }

    /// Submits everything recorded since the last submit as one command buffer; with GPU timing on, also waits
    /// for its timestamps.
    pub fn submit(mut self) -> Result<wgpu::SubmissionIndex> {
        self.pass = None;
        if let Some(timer) = &self.timer {
            timer.resolve(&mut self.encoder);
        }
        let index = self.ctx.queue().submit([self.encoder.finish()]);
        self.ctx.shared.submissions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.ctx.check_errors()?;
        if let Some(timer) = self.timer.take() {
            timer.collect()?;
        }
        Ok(index)
    }
}

impl Batch {
    pub fn caps(&self) -> &super::Capabilities {
        self.ctx.caps()
    }

    pub fn max_workgroups_per_dimension(&self) -> u32 {
        self.ctx.caps().max_workgroups_per_dimension
    }
}
