//! ferrogem: Gemma 4 and Gemma 3 inference on hand-written WGSL kernels through wgpu, with LoRA adapters applied on
//! the GPU; LoRA training is being built (its kernels, optimizer and schedules exist, the training step does not).
//!
//! The crate compiles natively and for `wasm32-unknown-unknown`. Code the browser build uses never blocks and
//! never touches the filesystem; memory mapping and the Ollama store are native-only.

#[cfg(not(target_arch = "wasm32"))]
pub mod atomic_file;
pub mod chat;
pub mod error;
pub mod gguf;
pub mod gpu;
pub mod lora;
pub mod models;
pub mod ops;
pub mod quant;
pub mod sampling;
pub mod session;
pub mod source;
pub mod tokenizer;
pub mod training;

#[cfg(not(target_arch = "wasm32"))]
pub mod ollama;

pub use error::{Error, Result};
