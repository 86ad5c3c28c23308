//! The error of the GPU runtime and the kernels (`gpu/` and `ops/`). It knows no model: the engine's
//! [`Error`](crate::Error) wraps it. Every message says what happened and what to do about it.

use super::{CeilingBreach, Phase};

/// What a device profile asks for beyond an adapter.
#[derive(Debug, thiserror::Error)]
#[error(
    "device profile `{profile}` asks for {what} = {requested}, but adapter `{adapter}` offers {available}; \
     pick a profile this adapter can serve (`webgpu-default` always can), or run on a device that has it"
)]
pub struct ProfileMismatch {
    pub profile: String,
    pub adapter: String,
    pub what: String,
    pub requested: String,
    pub available: String,
}

pub type Result<T, E = GpuError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found{detail}. Install a Vulkan driver (on Debian: `apt-get install mesa-vulkan-drivers libvulkan1` \
         for the lavapipe software adapter), or unset FERROGEM_ADAPTER if it names an adapter that is not present"
    )]
    NoAdapter { detail: String },

    #[error(
        "could not open a device on adapter `{adapter}`: {message}. Try --downlevel, which asks only for WebGPU defaults"
    )]
    RequestDevice { adapter: String, message: String },

    #[error(
        "the GPU device was lost ({reason}) during {phase:?}; every buffer on it is gone — recreate the context and reload the model"
    )]
    DeviceLost { reason: String, phase: Phase },

    #[error(
        "out of GPU memory allocating {bytes} bytes for `{label}` ({live_bytes} bytes already live); \
         use a shorter context, a smaller quant, or a device with more memory"
    )]
    OutOfMemory { label: String, bytes: u64, live_bytes: u64 },

    #[error("{what} needs {requested}, but the device allows at most {limit}; {hint}")]
    LimitExceeded { what: String, requested: u64, limit: u64, hint: &'static str },

    #[error("device profile `{origin}` is not valid: {message}")]
    BadProfile { origin: String, message: String },

    /// Boxed: five strings would make every result of the runtime carry them.
    #[error("{0}")]
    ProfileExceedsAdapter(Box<ProfileMismatch>),

    /// The memory accountant refused an allocation that would cross the device profile's ceiling.
    #[error("{0}")]
    CeilingExceeded(Box<CeilingBreach>),

    #[error("kernel `{kernel}` failed to {stage}: {message}")]
    Shader { kernel: String, stage: &'static str, message: String },

    #[error("GPU validation error in `{context}`: {message}")]
    Validation { context: String, message: String },

    #[error("could not map buffer `{label}` for reading: {message}")]
    BufferMap { label: String, message: String },

    /// An op or runtime feature that these arguments, this device or this build cannot serve.
    #[error("{op} is not supported here: {reason}")]
    Unsupported { op: String, reason: String },
}
