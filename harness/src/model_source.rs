//! A model argument is a GGUF path or an Ollama name (`gemma4:e2b`, `library/gemma4:e2b`, `host/ns/model:tag`).

use ferrogem::gguf::GgufFile;
use ferrogem::gpu::{Category, Context};
use ferrogem::models::gemma::{Gemma, GemmaOptions};
use ferrogem::ollama::{OllamaStore, ResolvedModel};
use ferrogem::source::{ByteSource, MemSource, MmapSource};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
const BUILT_IN_GGUF: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../golden/fixtures/tiny-gemma4-f32.gguf"));
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

/// `Gemma::load` with a progress bar on stderr fed by a watcher of the accountant's live weight bytes.
pub fn load_with_progress(
    ctx: &Context,
    model: &OpenedModel,
    options: GemmaOptions,
    weight_bytes: u64,
) -> ferrogem::Result<Gemma> {
    let bar = ProgressBar::with_draw_target(Some(weight_bytes), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("loading {msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec})") {
        bar.set_style(style);
    }
    bar.set_message(model.display.clone());
    let done = AtomicBool::new(false);
    let loaded = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let weights =
                    ctx.memory().by_category.iter().find(|(c, _, _)| *c == Category::Weights).map_or(0, |c| c.1);
                bar.set_position(weights.min(weight_bytes));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let loaded = Gemma::load(ctx, &model.gguf, model.source.as_ref(), options);
        done.store(true, Ordering::Relaxed);
        loaded
    });
    bar.finish_and_clear();
    loaded
}
