//! What can be wrong with an adapter file, or with an adapter for a model; each message names the field or tensor.

use crate::gguf::GgufError;

#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    #[error("could not read the adapter `{path}`: {message}")]
    Io { path: String, message: String },

    #[error("adapter_config.json: `{field}` {problem}")]
    Config { field: String, problem: String },

    #[error("the adapter uses {what} (`{field}`), which ferrogem does not apply; {advice}")]
    Unsupported { field: String, what: String, advice: &'static str },

    #[error("adapter_model.safetensors: {0}")]
    Safetensors(String),

    #[error("bad adapter file: {0}")]
    Gguf(#[from] GgufError),

    #[error("not a LoRA adapter: {reason}")]
    NotAnAdapter { reason: String },

    #[error("adapter tensor `{tensor}` {problem}")]
    Tensor { tensor: String, problem: String },

    #[error("the adapter updates {update} twice")]
    Duplicate { update: String },

    #[error("the adapter has no LoRA tensors")]
    Empty,

    #[error(
        "the adapter does not fit this model: `{tensor}` is {adapter_shape} in the adapter but the model's \
         projection is {model_shape} (an adapter made for another model?)"
    )]
    ShapeMismatch { tensor: String, adapter_shape: String, model_shape: String },

    #[error("the adapter updates `{tensor}`, which this model does not have ({reason})")]
    NoSuchTarget { tensor: String, reason: String },

    #[error("the adapter was made for a {adapter} model, and this one is {model}")]
    WrongArchitecture { adapter: String, model: String },

    #[error("adapter scale {scale} is not a finite number")]
    BadScale { scale: f32 },
}
