//! GPU runtime: one context per device, with the capabilities it was granted, a memory accountant that sees
//! every buffer, a bind-group cache, and the kernel registry that turns WGSL files into pipelines.

mod caps;
mod clock;
mod context;
mod device_profile;
mod dispatch;
mod error;
mod grid;
pub mod kernels;
mod memory;
pub mod preprocess;
mod split;

pub use caps::{AdapterReport, COOP_MATRIX_BY_DEFAULT, Capabilities, ContextOptions};
pub use context::bind_cache::{BindCacheStats, PhaseCounters};
pub use context::buffer::{BufferId, GpuBuffer};
pub use context::timing::{COPY_SPAN_NAME, GpuTimes, KernelTime, TimingMethod};
pub use context::{
    Context, FillTile, MAX_DRIVER_PADDING_PER_BUFFER_BYTES, UPLOAD_TILE_BYTES, counters_agree, upload_size_bytes,
};
pub use device_profile::{DeviceProfile, ProfileFeatures, ProfileLimits, WEBGPU_DEFAULT_PROFILE};
pub use dispatch::Batch;
pub use error::{GpuError, ProfileMismatch, Result};
pub use grid::Grid;
pub use memory::{Category, CeilingBreach, MemEvent, MemEventKind, MemorySnapshot, PhaseMark, human_bytes};
pub use split::{SplitPlan, SplitTensor};

/// What the engine is doing; allocations and bind-group cache counters are attributed to the current phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Idle,
    Load,
    Prefill,
    Decode,
    Train,
}

impl Phase {
    pub const ALL: [Phase; 5] = [Phase::Idle, Phase::Load, Phase::Prefill, Phase::Decode, Phase::Train];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Load => "load",
            Phase::Prefill => "prefill",
            Phase::Decode => "decode",
            Phase::Train => "train",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}
