//! The one error type of the engine. Every message says what happened and what to do about it.

use crate::gpu::Phase;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no GPU adapter found{detail}. Install a Vulkan driver (on Debian: `apt-get install mesa-vulkan-drivers libvulkan1` \
         for the lavapipe software adapter), or unset FERROGEM_ADAPTER if it names an adapter that is not present"
    )]
    NoAdapter { detail: String },

    #[error("could not open a device on adapter `{adapter}`: {message}. Try --downlevel, which asks only for WebGPU defaults")]
    RequestDevice { adapter: String, message: String },

    #[error("the GPU device was lost ({reason}) during {phase:?}; every buffer on it is gone — recreate the context and reload the model")]
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

    #[error(
        "device profile `{profile}` asks for {what} = {requested}, but adapter `{adapter}` offers {available}; \
         pick a profile this adapter can serve (`webgpu-default` always can), or run on a device that has it"
    )]
    ProfileExceedsAdapter { profile: String, adapter: String, what: String, requested: String, available: String },

    /// The memory accountant refused an allocation that would cross the device profile's ceiling.
    #[error("{0}")]
    CeilingExceeded(Box<crate::gpu::CeilingBreach>),

    /// The memory plan of a model does not fit under the ceiling; nothing was allocated.
    #[error("{0}")]
    ModelDoesNotFit(Box<crate::models::plan::FitRefusal>),

    #[error("kernel `{kernel}` failed to {stage}: {message}")]
    Shader { kernel: String, stage: &'static str, message: String },

    #[error("GPU validation error in `{context}`: {message}")]
    Validation { context: String, message: String },

    #[error("could not map buffer `{label}` for reading: {message}")]
    BufferMap { label: String, message: String },

    #[error("bad model file: {0}")]
    BadModelFile(#[from] crate::gguf::GgufError),

    #[error(transparent)]
    Source(#[from] crate::source::SourceError),

    #[cfg(not(target_arch = "wasm32"))]
    #[error(transparent)]
    Store(#[from] crate::ollama::StoreError),

    #[error("could not {action} `{path}`: {message}")]
    Io { action: &'static str, path: String, message: String },

    #[error("{op} is not supported here: {reason}")]
    Unsupported { op: String, reason: String },

    #[error("cancelled")]
    Cancelled,

    #[error(
        "{what} needs {needed_tokens} tokens but the context holds {n_ctx}; shorten it, raise --ctx (up to the \
         model's context_length), or in chat use --context-shift to drop the oldest turns"
    )]
    ContextOverflow { what: String, needed_tokens: u64, n_ctx: u32 },

    #[error("cannot restore the session snapshot: {reason}")]
    BadSnapshot { reason: String },
}
