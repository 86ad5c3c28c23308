//! Model definitions (Gemma 4, Gemma 3) built from GGUF metadata.

pub mod config;
pub mod gemma;
mod model_file;

pub use config::{Arch, LayerSpec, TextConfig};
pub use model_file::ModelFile;

/// Why a text model leaves a tensor unloaded, or `None` if it loads it. Ollama's Gemma 4 blobs carry the vision
/// (`v.`) and audio (`a.`) towers and the multimodal projector (`mm.`) in the same file as the text weights.
pub fn skipped_by_text_model(tensor_name: &str) -> Option<&'static str> {
    if tensor_name.starts_with("v.") {
        Some("vision tower")
    } else if tensor_name.starts_with("a.") {
        Some("audio tower")
    } else if tensor_name.starts_with("mm.") {
        Some("multimodal projector")
    } else {
        None
    }
}
