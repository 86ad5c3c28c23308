//! GPU time per kernel from timestamp queries. Off by default, and then it costs one atomic load per batch.
//!
//! When on, every dispatch is bracketed by a pair of timestamps: inside the batch's one compute pass where the
//! device granted `TIMESTAMP_QUERY_INSIDE_PASSES`, else as the begin/end writes of a pass of its own (pass
//! boundaries are not free, so that mode measures a slightly different program). Buffer copies are bracketed too
//! where `TIMESTAMP_QUERY_INSIDE_ENCODERS` was granted. After a timed batch is submitted, its timestamps are
//! resolved, read back (a blocking wait, so native only) and added to the totals of (batch label, kernel variant
//! name) — the variant name is the pipeline label, the same string as in `check ops` rows.
//!
//! What a pair measures: Vulkan writes both timestamps bottom-of-pipe, i.e. once everything recorded before them
//! has finished. A pair therefore measures how much later the GPU finished because of its dispatch; when two
//! dispatches overlap, the overlap goes to the one that finishes later, and the totals add up to the GPU's busy
//! time across the batch.
//!
//! Query sets and their resolve and readback buffers are created when timing starts (more only when a batch
//! records more dispatches than any before it) and reused by every batch after: timing a decode step creates no
//! buffer. Without `TIMESTAMP_QUERY` there are no numbers, and [`Context::start_gpu_timing`] says why.

use super::Context;
use crate::gpu::kernels::Pipeline;
use crate::gpu::memory::{Category, MemEventKind};
use crate::gpu::{GpuError, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The name copies are attributed to.
pub const COPY_SPAN_NAME: &str = "copy_buffer_to_buffer";
const QUERIES_PER_SET: u32 = wgpu::QUERY_SET_MAX_QUERIES;
const PAIRS_PER_SET: u32 = QUERIES_PER_SET / 2;
const SLAB_BUFFER_BYTES: u64 = QUERIES_PER_SET as u64 * wgpu::QUERY_SIZE as u64;

/// How timestamps are written around a dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimingMethod {
    /// `write_timestamp` before and after each dispatch inside the batch's one compute pass.
    InsidePass,
    /// Each dispatch in a compute pass of its own, timed by the pass's begin and end writes.
    PassPerDispatch,
}

/// Dispatches and GPU time attributed to one kernel variant within batches of one label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelTime {
    /// The batch's label (`decode`, `prefill`, `logits`, …).
    pub batch: String,
    /// The variant name (the pipeline's label), or [`COPY_SPAN_NAME`].
    pub kernel: String,
    pub dispatches: u64,
    pub gpu_ns: f64,
}

/// What timing collected since it started or since the last [`Context::take_gpu_times`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct GpuTimes {
    /// Largest GPU time first.
    pub kernels: Vec<KernelTime>,
    pub timed_batches: u64,
    /// Pairs whose end came before their begin: counted here, never added to a kernel.
    pub invalid_pairs: u64,
}

impl GpuTimes {
    pub fn total_gpu_ns(&self) -> f64 {
        self.kernels.iter().map(|k| k.gpu_ns).sum()
    }

    /// Adds `other`'s totals to these (e.g. the same phase over several reps).
    pub fn absorb(&mut self, other: GpuTimes) {
        for k in other.kernels {
            match self.kernels.iter_mut().find(|m| m.batch == k.batch && m.kernel == k.kernel) {
                Some(m) => {
                    m.dispatches += k.dispatches;
                    m.gpu_ns += k.gpu_ns;
                }
                None => self.kernels.push(k),
            }
        }
        self.kernels.sort_by(|a, b| b.gpu_ns.total_cmp(&a.gpu_ns).then_with(|| a.kernel.cmp(&b.kernel)));
        self.timed_batches += other.timed_batches;
        self.invalid_pairs += other.invalid_pairs;
    }
}

/// One query set with the buffer it resolves into and the mappable buffer that copy lands in.
struct QuerySlab {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
}

impl QuerySlab {
    /// Made on the raw device (infallible here; errors surface at submit) and recorded with the accountant.
    fn new(ctx: &Context) -> QuerySlab {
        let device = ctx.device();
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("gpu timing"),
            ty: wgpu::QueryType::Timestamp,
            count: QUERIES_PER_SET,
        });
        let buffer = |label: &str, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: SLAB_BUFFER_BYTES,
                usage,
                mapped_at_creation: false,
            })
        };
        let resolve = buffer("gpu timing resolve", wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
        let readback = buffer("gpu timing readback", wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        record_slabs(ctx, MemEventKind::Alloc, 1);
        QuerySlab { set, resolve, readback }
    }
}

fn record_slabs(ctx: &Context, kind: MemEventKind, count: usize) {
    let mut state = ctx.shared.lock_state();
    let (phase, time_s) = (state.phase, ctx.shared.clock.elapsed_s());
    for _ in 0..count {
        state.accountant.record(kind, "gpu timing queries", Category::Staging, 2 * SLAB_BUFFER_BYTES, phase, time_s);
    }
}

/// Per-context timing state. Never held together with the context's state lock.
#[derive(Default)]
pub(crate) struct TimingState {
    enabled: AtomicBool,
    inner: Mutex<TimingInner>,
}

#[derive(Default)]
struct TimingInner {
    method: Option<TimingMethod>,
    copies: bool,
    /// Slab lists returned by finished batches, for the next ones.
    free: Vec<Vec<QuerySlab>>,
    totals: HashMap<(String, String), (u64, f64)>,
    timed_batches: u64,
    invalid_pairs: u64,
}

impl TimingState {
    fn lock(&self) -> MutexGuard<'_, TimingInner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A timer for a new batch, or `None` (the common case) when timing is off.
    pub(crate) fn begin_batch(&self, ctx: &Context, label: &str) -> Option<BatchTimer> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let mut inner = self.lock();
        let method = inner.method?;
        let slabs = inner.free.pop().unwrap_or_default();
        Some(BatchTimer {
            ctx: ctx.clone(),
            label: label.to_owned(),
            method,
            copies: inner.copies,
            slabs,
            spans: Vec::new(),
        })
    }
}

/// What a pair of timestamps brackets.
pub(crate) enum Span {
    Kernel(Arc<Pipeline>),
    Copy,
}

/// The timestamps of one batch.
pub(crate) struct BatchTimer {
    ctx: Context,
    label: String,
    method: TimingMethod,
    copies: bool,
    slabs: Vec<QuerySlab>,
    spans: Vec<Span>,
}

impl BatchTimer {
    pub(crate) fn method(&self) -> TimingMethod {
        self.method
    }

    /// Whether copies can be bracketed (`TIMESTAMP_QUERY_INSIDE_ENCODERS`).
    pub(crate) fn times_copies(&self) -> bool {
        self.copies
    }

    /// The query set and index of the begin timestamp of `span` (the end one follows it).
    pub(crate) fn next_pair(&mut self, span: Span) -> (wgpu::QuerySet, u32) {
        let i = self.spans.len() as u32;
        let slab = (i / PAIRS_PER_SET) as usize;
        if slab == self.slabs.len() {
            self.slabs.push(QuerySlab::new(&self.ctx));
        }
        self.spans.push(span);
        (self.slabs[slab].set.clone(), 2 * (i % PAIRS_PER_SET))
    }

    /// Queries written into each slab this batch used, in slab order.
    fn used_queries(&self) -> impl Iterator<Item = (&QuerySlab, u32)> {
        let pairs = self.spans.len() as u32;
        self.slabs
            .iter()
            .enumerate()
            .map(move |(s, slab)| (slab, 2 * pairs.saturating_sub(s as u32 * PAIRS_PER_SET).min(PAIRS_PER_SET)))
            .take_while(|(_, n)| *n > 0)
    }

    /// Records the resolve of every written query and its copy into the mappable buffers.
    pub(crate) fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        for (slab, queries) in self.used_queries() {
            encoder.resolve_query_set(&slab.set, 0..queries, &slab.resolve, 0);
            encoder.copy_buffer_to_buffer(
                &slab.resolve,
                0,
                &slab.readback,
                0,
                queries as u64 * wgpu::QUERY_SIZE as u64,
            );
        }
    }

    /// After the submit: waits for the timestamps and adds each span's GPU time to the totals.
    pub(crate) fn collect(self) -> Result<()> {
        let ticks = self.read_ticks()?;
        let period_ns = self.ctx.queue().get_timestamp_period() as f64;
        // Summed per pipeline first, so the string-keyed totals are touched once per kernel, not per dispatch.
        let mut by_kernel: HashMap<u64, (&str, u64, f64)> = HashMap::new();
        let mut invalid_pairs = 0;
        for (span, pair) in self.spans.iter().zip(ticks.chunks_exact(2)) {
            let (id, name) = match span {
                Span::Kernel(p) => (p.id, p.name.as_str()),
                Span::Copy => (u64::MAX, COPY_SPAN_NAME),
            };
            let Some(elapsed_ticks) = pair[1].checked_sub(pair[0]) else {
                invalid_pairs += 1;
                continue;
            };
            let entry = by_kernel.entry(id).or_insert((name, 0, 0.0));
            entry.1 += 1;
            entry.2 += elapsed_ticks as f64 * period_ns;
        }
        let mut inner = self.ctx.shared.timing.lock();
        for (name, dispatches, ns) in by_kernel.into_values() {
            let total = inner.totals.entry((self.label.clone(), name.to_owned())).or_insert((0, 0.0));
            total.0 += dispatches;
            total.1 += ns;
        }
        inner.timed_batches += 1;
        inner.invalid_pairs += invalid_pairs;
        Ok(())
    }

    /// The raw timestamps of every span, begin then end. The wait is `device.poll`, which blocks natively; the
    /// browser build never gets here ([`Context::start_gpu_timing`] refuses there).
    fn read_ticks(&self) -> Result<Vec<u64>> {
        let map_error = |message: String| GpuError::BufferMap { label: "gpu timing readback".into(), message };
        let mut receivers = Vec::new();
        for (slab, queries) in self.used_queries() {
            let (sender, receiver) = futures_channel::oneshot::channel();
            let bytes = queries as u64 * wgpu::QUERY_SIZE as u64;
            slab.readback.slice(..bytes).map_async(wgpu::MapMode::Read, move |result| {
                let _ = sender.send(result);
            });
            receivers.push((slab, bytes, receiver));
        }
        self.ctx
            .device()
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::DeviceLost { reason: e.to_string(), phase: self.ctx.phase() })?;
        let mut ticks = Vec::with_capacity(2 * self.spans.len());
        for (slab, bytes, mut receiver) in receivers {
            match receiver.try_recv() {
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(e))) => return Err(map_error(e.to_string())),
                _ => return Err(map_error("the map did not complete after waiting for the device".into())),
            }
            let view = slab.readback.slice(..bytes).get_mapped_range().map_err(|e| map_error(e.to_string()))?;
            ticks.extend(bytemuck::pod_collect_to_vec::<u8, u64>(&view));
            drop(view);
            slab.readback.unmap();
        }
        Ok(ticks)
    }
}

impl Drop for BatchTimer {
    /// The slabs go back for the next batch, or are released if timing stopped meanwhile.
    fn drop(&mut self) {
        let slabs = std::mem::take(&mut self.slabs);
        let mut inner = self.ctx.shared.timing.lock();
        if self.ctx.shared.timing.enabled.load(Ordering::Relaxed) {
            inner.free.push(slabs);
            return;
        }
        drop(inner);
        record_slabs(&self.ctx, MemEventKind::Free, slabs.len());
    }
}

impl Context {
    /// How this device can time dispatches, or why it cannot.
    pub fn gpu_timing_method(&self) -> std::result::Result<TimingMethod, String> {
        let caps = self.caps();
        if cfg!(target_arch = "wasm32") {
            Err("reading timestamps back needs a blocking wait, which the browser build never does".into())
        } else if !caps.timestamps {
            Err(format!("the device did not grant TIMESTAMP_QUERY ({})", caps.adapter.name))
        } else if caps.timestamps_inside_passes {
            Ok(TimingMethod::InsidePass)
        } else {
            Ok(TimingMethod::PassPerDispatch)
        }
    }

    /// Starts timing every batch recorded from now on with the best method the device has (see the module docs);
    /// totals start from zero.
    pub fn start_gpu_timing(&self) -> Result<TimingMethod> {
        let method =
            self.gpu_timing_method().map_err(|reason| GpuError::Unsupported { op: "GPU timing".into(), reason })?;
        self.start_gpu_timing_with(method)?;
        Ok(method)
    }

    /// [`start_gpu_timing`](Self::start_gpu_timing) with a chosen method: `PassPerDispatch` works wherever
    /// timing does, so tests can run the fallback on devices that would never pick it.
    pub fn start_gpu_timing_with(&self, method: TimingMethod) -> Result<()> {
        let best =
            self.gpu_timing_method().map_err(|reason| GpuError::Unsupported { op: "GPU timing".into(), reason })?;
        if method == TimingMethod::InsidePass && best != TimingMethod::InsidePass {
            return Err(GpuError::Unsupported {
                op: "GPU timing inside passes".into(),
                reason: "the device did not grant TIMESTAMP_QUERY_INSIDE_PASSES".into(),
            });
        }
        self.stop_gpu_timing();
        let copies = self.device().features().contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);
        let first_slab = QuerySlab::new(self);
        let timing = &self.shared.timing;
        let mut inner = timing.lock();
        *inner = TimingInner { method: Some(method), copies, free: vec![vec![first_slab]], ..TimingInner::default() };
        timing.enabled.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Stops timing and releases its query sets; what was collected stays until taken.
    pub fn stop_gpu_timing(&self) {
        let timing = &self.shared.timing;
        let released: Vec<Vec<QuerySlab>> = {
            let mut inner = timing.lock();
            timing.enabled.store(false, Ordering::Relaxed);
            inner.method = None;
            std::mem::take(&mut inner.free)
        };
        record_slabs(self, MemEventKind::Free, released.iter().map(Vec::len).sum());
    }

    /// Takes the totals collected so far (largest first) and starts new ones.
    pub fn take_gpu_times(&self) -> GpuTimes {
        let mut inner = self.shared.timing.lock();
        let kernels: Vec<KernelTime> = std::mem::take(&mut inner.totals)
            .into_iter()
            .map(|((batch, kernel), (dispatches, gpu_ns))| KernelTime { batch, kernel, dispatches, gpu_ns })
            .collect();
        let taken = GpuTimes { kernels, timed_batches: inner.timed_batches, invalid_pairs: inner.invalid_pairs };
        inner.timed_batches = 0;
        inner.invalid_pairs = 0;
        drop(inner);
        let mut times = GpuTimes::default();
        times.absorb(taken);
        times
    }
}
