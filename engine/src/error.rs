//! The engine's error: what the layers above the GPU report (files, sources, the Ollama store, models, sessions),
//! wrapping the GPU runtime's [`GpuError`]. Every message says what happened and what to do about it.

use crate::gpu::GpuError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The GPU runtime or a kernel failed (no adapter, out of memory, a limit, a device lost, …).
    #[error(transparent)]
    Gpu(#[from] GpuError),

    /// The memory plan of a model does not fit under the ceiling; nothing was allocated.
    /// The payload is the memory plan's refusal (`FitRefusal`, beside the model it plans), boxed so that this
    /// error, which every layer above the GPU uses, does not depend on the models; `downcast_ref` reads it.
    #[error("{0}")]
    ModelDoesNotFit(Box<dyn std::error::Error + Send + Sync>),

    #[error(transparent)]
    Lora(#[from] crate::lora::LoraError),

    /// LoRA adapters would take the GPU memory past the profile's ceiling; nothing was allocated.
    #[error(
        "the adapters do not fit device profile `{profile}`: they need {needed_bytes} bytes, and {live_bytes} of the \
         {ceiling_bytes}-byte ceiling are already live. To fit: {advice}"
    )]
    AdaptersDoNotFit { profile: String, needed_bytes: u64, live_bytes: u64, ceiling_bytes: u64, advice: String },

    /// A buffer the plan would allocate and bind whole exceeds the device's binding or buffer limit.
    #[error("the memory plan needs a buffer larger than the device binds: {0}")]
    PlanExceedsBinding(String),

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
