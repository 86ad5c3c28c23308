//! A model file, opened: its bytes, its parsed header, and what the Ollama store says about it when it was named
//! that way. The one way the command line, the tests and the benches open a model (`ModelFile::open`); the browser
//! build, which has no files, starts from [`ModelFile::from_source`].

use super::gemma::{AppliedAdapter, Gemma, GemmaOptions, LoadProgress};
use crate::error::Result;
use crate::gguf::GgufFile;
use crate::gpu::Context;
use crate::source::ByteSource;
use std::path::PathBuf;
use std::sync::Arc;

pub struct ModelFile {
    /// What the user named, for messages.
    pub display: String,
    /// Where the file is, or for bytes in memory where they came from: goldens are looked up beside it.
    pub path: PathBuf,
    /// The store's view of a model opened by Ollama name: params, template, system prompt.
    #[cfg(not(target_arch = "wasm32"))]
    pub ollama: Option<crate::ollama::ResolvedModel>,
    pub source: Arc<dyn ByteSource>,
    pub gguf: GgufFile,
    /// LoRA adapters [`load`](Self::load) applies: the Ollama manifest's ADAPTER layers, then those the user adds.
    pub adapters: Vec<AppliedAdapter>,
}

impl ModelFile {
    /// Opens `arg` as a file if one exists there, else resolves it as an Ollama name (`gemma4:e2b`,
    /// `library/gemma4:e2b`, `host/ns/model:tag`) under `$OLLAMA_MODELS`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(arg: &str) -> Result<ModelFile> {
        let path = std::path::Path::new(arg);
        let io = |message: String| crate::Error::Io { action: "open the model file", path: arg.to_owned(), message };
        if let Ok(meta) = std::fs::metadata(path) {
            if !meta.is_file() {
                let what = if meta.is_dir() { "a directory" } else { "not a regular file" };
                return Err(io(format!("it is {what}; name a .gguf file or an Ollama model")));
            }
            let source = crate::source::MmapSource::open(arg)?;
            return Self::from_source(arg, PathBuf::from(arg), Arc::new(source));
        }
        // An Ollama name never looks like this; say "no such file" rather than how it fails as a name.
        if arg.ends_with(".gguf") || arg.starts_with(['/', '.', '~']) {
            return Err(io("no such file".into()));
        }
        Self::from_store(&crate::ollama::OllamaStore::from_env()?, arg)
    }

    /// The model `name` of an Ollama store, with the LoRA adapters of its manifest's ADAPTER layers (applied by
    /// [`load`](Self::load), as Ollama applies them).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_store(store: &crate::ollama::OllamaStore, name: &str) -> Result<ModelFile> {
        let resolved = store.resolve(name)?;
        let source = crate::source::MmapSource::open(&resolved.model_blob)?;
        let mut model = Self::from_source(name, resolved.model_blob.clone(), Arc::new(source))?;
        for (i, blob) in resolved.adapters.iter().enumerate() {
            let adapter = Arc::new(crate::lora::open_gguf(blob)?);
            model.adapters.push(AppliedAdapter { label: format!("{name} ADAPTER {}", i + 1), adapter, scale: 1.0 });
        }
        model.ollama = Some(resolved);
        Ok(model)
    }

    /// Reads the adapter at `path` (a PEFT directory or a llama.cpp LoRA GGUF) and adds it at `scale`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn add_adapter(&mut self, label: &str, path: &std::path::Path, scale: f32) -> Result<()> {
        let adapter = crate::lora::open(path)?;
        self.adapters.push(AppliedAdapter { label: label.to_owned(), adapter: Arc::new(adapter), scale });
        Ok(())
    }

    /// A model whose bytes are already at hand (in memory, or a source the caller made).
    pub fn from_source(display: &str, path: PathBuf, source: Arc<dyn ByteSource>) -> Result<ModelFile> {
        let gguf = GgufFile::read(source.as_ref())?;
        Ok(ModelFile {
            display: display.to_owned(),
            path,
            #[cfg(not(target_arch = "wasm32"))]
            ollama: None,
            source,
            gguf,
            adapters: Vec::new(),
        })
    }

    /// Uploads the model (see [`Gemma::load`]), calling `progress` after each tensor, and applies the adapters.
    pub fn load(&self, ctx: &Context, options: GemmaOptions, progress: &mut dyn FnMut(LoadProgress)) -> Result<Gemma> {
        let mut model = Gemma::load_with_progress(ctx, &self.gguf, Arc::clone(&self.source), options, progress)?;
        if !self.adapters.is_empty() {
            model.set_adapters(&self.adapters)?;
        }
        Ok(model)
    }
}
