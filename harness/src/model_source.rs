//! A model argument is a GGUF path or an Ollama name (`gemma4:e2b`, `library/gemma4:e2b`, `host/ns/model:tag`).

use ferrogem::gguf::GgufFile;
use ferrogem::ollama::{OllamaStore, ResolvedModel};
use ferrogem::source::{ByteSource, MemSource, MmapSource};
use std::path::{Path, PathBuf};

pub struct OpenedModel {
    /// What the user named, for messages.
    pub display: String,
    pub path: PathBuf,
    pub ollama: Option<ResolvedModel>,
    pub source: Box<dyn ByteSource>,
    pub gguf: GgufFile,
}

/// Opens `arg` as a file if one exists there, else resolves it in the Ollama store.
pub fn open(arg: &str) -> ferrogem::Result<OpenedModel> {
    let (path, ollama) = if Path::new(arg).exists() {
        (PathBuf::from(arg), None)
    } else {
        let resolved = OllamaStore::from_env()?.resolve(arg)?;
        (resolved.model_blob.clone(), Some(resolved))
    };
    let source = MmapSource::open(&path)?;
    let gguf = GgufFile::read(&source)?;
    Ok(OpenedModel { display: arg.to_owned(), path, ollama, source: Box::new(source), gguf })
}

/// The tiny Gemma 4 (HF transformers, converted by llama.cpp) that `ferrogem check` runs when no model is named;
/// compiled in so the main job needs no file beside the binary.
const BUILT_IN_GGUF: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../golden/fixtures/tiny-gemma4-f32.gguf"));
pub const BUILT_IN_NAME: &str = "built-in tiny-gemma4-f32";

pub fn open_built_in() -> ferrogem::Result<OpenedModel> {
    let source = MemSource::new(BUILT_IN_GGUF.to_vec());
    let gguf = GgufFile::read(&source)?;
    Ok(OpenedModel {
        display: BUILT_IN_NAME.to_owned(),
        path: PathBuf::from("golden/fixtures/tiny-gemma4-f32.gguf"),
        ollama: None,
        source: Box::new(source),
        gguf,
    })
}
