//! The one GPU context: adapter selection, device request, the allocator every buffer goes through, and the
//! state shared by buffers, the bind-group cache and the pipeline cache.

pub(crate) mod bind_cache;
pub(crate) mod buffer;
mod pipelines;
pub(crate) mod timing;

use crate::gpu::Phase;
use crate::gpu::caps::{Capabilities, ContextOptions, device_request};
use crate::gpu::clock::Clock;
use crate::gpu::kernels::Pipeline;
use crate::gpu::memory::{Accountant, Category, CeilingBreach, MemEvent, MemEventKind, MemorySnapshot, PhaseMark};
use crate::gpu::{GpuError, Result};
use bind_cache::{BindCacheStats, BindEntry, BindGroupCache, DEFAULT_BIND_CACHE_CAPACITY};
use buffer::{BufferId, GpuBuffer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use timing::TimingState;

pub(crate) struct State {
    pub phase: Phase,
    pub accountant: Accountant,
    pub bind_cache: BindGroupCache,
    pub pipelines: HashMap<String, Arc<Pipeline>>,
    next_id: u64,
}

impl State {
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn evict_bind_groups_of(&mut self, buffer: BufferId) -> Vec<BindEntry> {
        // Time is not needed precisely for uniform frees; the caller records its own event right after.
        let phase = self.phase;
        let last_time = self.accountant.events().last().map_or(0.0, |e| e.time_s);
        self.bind_cache.evict_buffer(buffer, phase, &mut self.accountant, last_time)
    }
}

/// Errors the device reported outside any call that could return them (uncaptured errors, device loss).
#[derive(Default)]
struct DeviceHealth {
    lost: Option<String>,
    errors: Vec<DeviceError>,
}

/// A `wgpu::Error` reduced to what we report: its source is not `Send` on wasm32.
enum DeviceError {
    OutOfMemory,
    Validation(String),
    Internal(String),
}

impl From<wgpu::Error> for DeviceError {
    fn from(e: wgpu::Error) -> Self {
        match e {
            wgpu::Error::OutOfMemory { .. } => DeviceError::OutOfMemory,
            wgpu::Error::Validation { description, .. } => DeviceError::Validation(description),
            wgpu::Error::Internal { description, .. } => DeviceError::Internal(description),
        }
    }
}

pub(crate) struct Shared {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub caps: Capabilities,
    pub clock: Clock,
    pub timing: TimingState,
    /// Command buffers submitted through `Batch::submit`.
    pub submissions: AtomicU64,
    state: Mutex<State>,
    health: Arc<Mutex<DeviceHealth>>,
}

impl Shared {
    pub(crate) fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters that are still consistent enough to report.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A cheap handle (an `Arc`) to the device and everything attached to it.
#[derive(Clone)]
pub struct Context {
    pub(crate) shared: Arc<Shared>,
}

impl Context {
    /// Picks an adapter and opens a device with the adapter's own limits and the optional features ferrogem uses,
    /// or with exactly a device profile's limits and features (`--downlevel`: the `webgpu-default` profile), whose
    /// memory ceiling the allocator then enforces.
    pub async fn new(options: ContextOptions) -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = select_adapter(&instance, options.adapter_filter.as_deref()).await?;
        let info = adapter.get_info();
        let profile = options.effective_profile();
        let (features, limits) = device_request(&adapter, profile.as_ref(), options.coop_matrix)?;
        let experimental_features = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            // SAFETY: wgpu marks cooperative matrices experimental (its implementation may still have bugs). Only
            // the matrix-core kernels use them, each a registry case checked against the CPU on the device that
            // runs it, and they are asked for only as `ContextOptions::coop_matrix` says.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("ferrogem"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = adapter
            .request_device(&descriptor)
            .await
            .map_err(|e| GpuError::RequestDevice { adapter: info.name.clone(), message: e.to_string() })?;

        let health = Arc::new(Mutex::new(DeviceHealth::default()));
        let on_lost = Arc::clone(&health);
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut h) = on_lost.lock() {
                h.lost = Some(format!("{reason:?}: {message}"));
            }
        });
        let on_error = Arc::clone(&health);
        device.on_uncaptured_error(Arc::new(move |error| {
            if let Ok(mut h) = on_error.lock() {
                h.errors.push(error.into());
            }
        }));

        let caps = Capabilities::new(&info, device.features(), &device.limits(), profile.as_ref());
        let ceiling = profile.as_ref().and_then(|p| p.ceiling_bytes.map(|bytes| (bytes, p.name.clone())));
        let state = State {
            phase: Phase::Idle,
            accountant: Accountant::with_ceiling(ceiling),
            bind_cache: BindGroupCache::new(DEFAULT_BIND_CACHE_CAPACITY),
            pipelines: HashMap::new(),
            next_id: 0,
        };
        let shared = Shared {
            device,
            queue,
            caps,
            clock: Clock::start(),
            timing: TimingState::default(),
            submissions: AtomicU64::new(0),
            state: Mutex::new(state),
            health,
        };
        // On wasm32 wgpu's handles are neither Send nor Sync, so neither is `Shared`; the Arc is still right there (one
        // thread per worker, and the same code natively, where it is both).
        #[allow(clippy::arc_with_non_send_sync)]
        Ok(Context { shared: Arc::new(shared) })
    }

    /// `Context::new` for native callers that can block.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(options: ContextOptions) -> Result<Self> {
        pollster::block_on(Self::new(options))
    }

    pub fn caps(&self) -> &Capabilities {
        &self.shared.caps
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.shared.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.shared.queue
    }

    pub fn phase(&self) -> Phase {
        self.shared.lock_state().phase
    }

    /// Marks the phase that later allocations and bind-group lookups are attributed to.
    pub fn set_phase(&self, phase: Phase) {
        let mut state = self.shared.lock_state();
        state.phase = phase;
        state.accountant.enter_phase(phase, self.shared.clock.elapsed_s());
    }

    /// When each phase was entered, on the same clock as the trajectory's `time_s`.
    pub fn phase_marks(&self) -> Vec<PhaseMark> {
        self.shared.lock_state().accountant.phase_marks().to_vec()
    }

    /// Seconds since the context was created (the trajectory's clock).
    pub fn elapsed_s(&self) -> f64 {
        self.shared.clock.elapsed_s()
    }

    /// Command buffers submitted through [`Batch::submit`](super::Batch::submit) since the context was created.
    pub fn submissions(&self) -> u64 {
        self.shared.submissions.load(Ordering::Relaxed)
    }

    /// The first allocation that crossed the device profile's ceiling, if any did.
    pub fn ceiling_breach(&self) -> Option<CeilingBreach> {
        self.shared.lock_state().accountant.breach().cloned()
    }

    /// Creates a zeroed buffer. `STORAGE | COPY_SRC | COPY_DST` unless `usage` says otherwise.
    pub fn alloc(
        &self,
        label: &str,
        category: Category,
        size_bytes: u64,
        usage: Option<wgpu::BufferUsages>,
    ) -> Result<GpuBuffer> {
        self.create(label, category, size_bytes, usage, false)
    }

    /// Creates a buffer holding `data` (padded with zeros as [`upload_size_bytes`] says).
    pub fn upload(&self, label: &str, category: Category, data: &[u8]) -> Result<GpuBuffer> {
        self.upload_with(label, category, data.len() as u64, &mut |offset, tile| {
            tile.copy_from_slice(&data[offset as usize..offset as usize + tile.len()]);
            Ok::<(), GpuError>(())
        })
    }

    /// Creates a buffer of `len_bytes` (padded as [`upload_size_bytes`] says) that `fill(offset, tile)` writes a
    /// tile of at most [`UPLOAD_TILE_BYTES`] at a time, straight into the mapped buffer. In the browser a mapped
    /// range is a copy in wasm memory, so mapping tile by tile keeps a large tensor's upload to one tile of it.
    pub fn upload_with<E: From<GpuError>>(
        &self,
        label: &str,
        category: Category,
        len_bytes: u64,
        fill: &mut FillTile<'_, E>,
    ) -> std::result::Result<GpuBuffer, E> {
        let size_bytes = upload_size_bytes(len_bytes);
        let buffer = self.create(label, category, size_bytes, None, true)?;
        let map_error =
            |e: wgpu::MapRangeError| GpuError::BufferMap { label: label.to_owned(), message: e.to_string() };
        // Mapped ranges are write-only views, so each tile is filled here first, then copied in.
        let mut tile = vec![0u8; UPLOAD_TILE_BYTES.min(len_bytes) as usize];
        let mut offset = 0;
        while offset < len_bytes {
            // Tiles start at multiples of UPLOAD_TILE_BYTES and end at the padded size, as mapping requires.
            let end = (offset + UPLOAD_TILE_BYTES).min(size_bytes);
            let data = &mut tile[..(end.min(len_bytes) - offset) as usize];
            if let Err(e) = fill(offset, data) {
                buffer.raw().unmap();
                return Err(e);
            }
            let mut view = buffer.raw().get_mapped_range_mut(offset..end).map_err(map_error)?;
            view.slice(..data.len()).copy_from_slice(data);
            drop(view);
            offset = end;
        }
        buffer.raw().unmap();
        Ok(buffer)
    }

    fn create(
        &self,
        label: &str,
        category: Category,
        size_bytes: u64,
        usage: Option<wgpu::BufferUsages>,
        mapped_at_creation: bool,
    ) -> Result<GpuBuffer> {
        self.check_lost()?;
        let caps = &self.shared.caps;
        if size_bytes > caps.max_buffer_bytes {
            return Err(GpuError::LimitExceeded {
                what: format!("buffer `{label}`"),
                requested: size_bytes,
                limit: caps.max_buffer_bytes,
                hint: "split the tensor across buffers (SplitTensor) or use a device with a larger max_buffer_size",
            });
        }
        let usage =
            usage.unwrap_or(wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST);
        // Admission and the record happen under one lock, so concurrent allocations cannot pass the ceiling together.
        let mut state = self.shared.lock_state();
        let phase = state.phase;
        state
            .accountant
            .admit(label, category, size_bytes, phase)
            .map_err(|b| GpuError::CeilingExceeded(Box::new(b)))?;
        let raw = self.shared.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size_bytes,
            usage,
            mapped_at_creation,
        });
        let id = BufferId(state.next_id());
        let time_s = self.shared.clock.elapsed_s();
        state.accountant.record(MemEventKind::Alloc, label, category, size_bytes, phase, time_s);
        drop(state);
        Ok(GpuBuffer::new(id, raw, size_bytes, label.to_owned(), category, Arc::clone(&self.shared)))
    }

    /// Copies a buffer back to the host. Native callers may `pollster::block_on` this; the browser awaits it.
    pub async fn read_bytes(&self, buffer: &GpuBuffer) -> Result<Vec<u8>> {
        let staging = self.alloc(
            &format!("readback of {}", buffer.label()),
            Category::Staging,
            buffer.size_bytes(),
            Some(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
        )?;
        let mut encoder =
            self.shared.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        encoder.copy_buffer_to_buffer(buffer.raw(), 0, staging.raw(), 0, buffer.size_bytes());
        self.shared.queue.submit([encoder.finish()]);

        let (sender, receiver) = futures_channel::oneshot::channel();
        staging.raw().slice(..).map_async(wgpu::MapMode::Read, move |result| {
            let _ = sender.send(result);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.wait_idle()?;
        let map_error = |message: String| GpuError::BufferMap { label: buffer.label().to_owned(), message };
        receiver
            .await
            .map_err(|_| map_error("the map callback was dropped (device lost?)".into()))?
            .map_err(|e| map_error(e.to_string()))?;
        let bytes = staging.raw().slice(..).get_mapped_range().map_err(|e| map_error(e.to_string()))?.to_vec();
        staging.raw().unmap();
        self.check_errors()?;
        Ok(bytes)
    }

    /// Blocks until the queue is empty (native only: the browser has no blocking wait). The empty submission
    /// flushes uploads still pending in the queue, so their staging buffers are released too.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_idle(&self) -> Result<()> {
        self.shared.queue.submit([]);
        self.shared
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| GpuError::DeviceLost { reason: e.to_string(), phase: self.phase() })
    }

    fn check_lost(&self) -> Result<()> {
        let health = self.shared.health.lock().unwrap_or_else(|p| p.into_inner());
        match &health.lost {
            Some(reason) => Err(GpuError::DeviceLost { reason: reason.clone(), phase: self.phase() }),
            None => Ok(()),
        }
    }

    /// Turns the first error the device reported since the last call into a typed error.
    pub fn check_errors(&self) -> Result<()> {
        self.check_lost()?;
        let mut health = self.shared.health.lock().unwrap_or_else(|p| p.into_inner());
        let Some(first) = health.errors.drain(..).next() else { return Ok(()) };
        drop(health);
        Err(match first {
            DeviceError::OutOfMemory => {
                let live_bytes = self.memory().live_bytes;
                GpuError::OutOfMemory { label: "(reported asynchronously by the device)".into(), bytes: 0, live_bytes }
            }
            DeviceError::Validation(message) => GpuError::Validation { context: "device".into(), message },
            DeviceError::Internal(message) => GpuError::Validation { context: "device (internal)".into(), message },
        })
    }

    pub fn memory(&self) -> MemorySnapshot {
        self.shared.lock_state().accountant.snapshot()
    }

    pub fn memory_events(&self) -> Vec<MemEvent> {
        self.shared.lock_state().accountant.events().to_vec()
    }

    /// Writes the alloc/free trajectory as CSV.
    pub fn write_trajectory_csv<W: std::io::Write>(&self, out: W) -> Result<()> {
        self.shared
            .lock_state()
            .accountant
            .write_csv(out)
            .map_err(|e| GpuError::Unsupported { op: "trajectory export".into(), reason: e.to_string() })
    }

    pub fn bind_cache_stats(&self) -> BindCacheStats {
        self.shared.lock_state().bind_cache.stats()
    }

    pub fn reset_bind_cache_counters(&self) {
        self.shared.lock_state().bind_cache.reset_counters();
    }

    /// Drops every cached bind group (and its uniform buffer).
    pub fn clear_bind_cache(&self) {
        let evicted = {
            let mut state = self.shared.lock_state();
            let (phase, time_s) = (state.phase, self.shared.clock.elapsed_s());
            let State { bind_cache, accountant, .. } = &mut *state;
            bind_cache.clear(phase, accountant, time_s)
        };
        drop(evicted);
    }

    /// wgpu's own count of live buffers and their bytes (feature `counters`), to check the accountant against.
    pub fn wgpu_buffer_counters(&self) -> (i64, i64) {
        let counters = self.shared.device.get_internal_counters();
        (counters.hal.buffers.read() as i64, counters.hal.buffer_memory.read() as i64)
    }
}

/// The most a driver rounds one buffer's memory above its requested size. wgpu's counters count what the driver
/// asks memory for (Vulkan's memory requirements: NVIDIA pads small and uniform buffers; lavapipe does not), the
/// accountant the requested size.
pub const MAX_DRIVER_PADDING_PER_BUFFER_BYTES: u64 = 256;

/// Whether wgpu's counters (buffers, bytes; relative to a baseline) count the same buffers as the accountant
/// (buffers, bytes): equal counts, and wgpu's bytes above the accountant's by at most the drivers' rounding.
pub fn counters_agree(accountant: (u64, u64), wgpu: (i64, i64)) -> bool {
    let (buffers, bytes) = (accountant.0 as i64, accountant.1 as i64);
    let padding = wgpu.1 - bytes;
    wgpu.0 == buffers && (0..=buffers * MAX_DRIVER_PADDING_PER_BUFFER_BYTES as i64).contains(&padding)
}

/// Writes the bytes at `offset` of an upload into the tile it is given ([`Context::upload_with`]).
pub type FillTile<'a, E> = dyn FnMut(u64, &mut [u8]) -> std::result::Result<(), E> + 'a;

/// The most bytes [`Context::upload_with`] maps at once: a multiple of wgpu's map alignment, and in the browser the
/// wasm memory an upload of any size needs.
pub const UPLOAD_TILE_BYTES: u64 = 8 << 20;

/// The size of the buffer [`Context::upload`] makes for `data_bytes` bytes: rounded up to the copy alignment (4),
/// and never 0. Memory plans size uploads with it.
pub fn upload_size_bytes(data_bytes: u64) -> u64 {
    data_bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT).max(wgpu::COPY_BUFFER_ALIGNMENT)
}

/// The adapter named by `filter` (case-insensitive substring), or else the most capable one present.
async fn select_adapter(instance: &wgpu::Instance, filter: Option<&str>) -> Result<wgpu::Adapter> {
    let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
    let names: Vec<String> = adapters
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?})", i.name, i.backend)
        })
        .collect();
    let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let mut candidates: Vec<wgpu::Adapter> = match filter {
        Some(f) => {
            let f = f.to_lowercase();
            adapters.into_iter().filter(|a| a.get_info().name.to_lowercase().contains(&f)).collect()
        }
        None => adapters,
    };
    candidates.sort_by_key(rank);
    match candidates.into_iter().next() {
        Some(adapter) => Ok(adapter),
        None if !names.is_empty() => Err(GpuError::NoAdapter {
            detail: format!(" matching FERROGEM_ADAPTER={:?}; present: {}", filter.unwrap_or(""), names.join(", ")),
        }),
        None => {
            // enumerate_adapters is empty on some backends (the browser); ask the instance directly.
            instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    force_fallback_adapter: false,
                    compatible_surface: None,
                    apply_limit_buckets: false,
                })
                .await
                .map_err(|e| GpuError::NoAdapter { detail: format!(" ({e})") })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_agree_up_to_the_drivers_rounding_only() {
        assert!(counters_agree((2, 1000), (2, 1000)));
        assert!(counters_agree((2, 1000), (2, 1000 + 2 * MAX_DRIVER_PADDING_PER_BUFFER_BYTES as i64)));
        assert!(!counters_agree((2, 1000), (2, 1001 + 2 * MAX_DRIVER_PADDING_PER_BUFFER_BYTES as i64)));
        assert!(!counters_agree((2, 1000), (2, 999)), "wgpu never counts less than was asked for");
        assert!(!counters_agree((2, 1000), (3, 1000)), "buffer counts must match exactly");
    }
}
