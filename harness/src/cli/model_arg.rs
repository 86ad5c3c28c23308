//! A model argument (a GGUF path, an Ollama name, or none for the built-in tiny Gemma 4) and loading it with a
//! progress bar on stderr.

use ferrogem::gpu::Context;
use ferrogem::models::ModelFile;
use ferrogem::models::gemma::{Gemma, GemmaOptions};
use ferrogem::ops::attention::CacheType;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `--kv-cache`: how K and V are stored.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvCacheArg {
    /// f32: works everywhere; what the goldens are checked with.
    F32,
    /// f16: half the memory; needs SHADER_F16.
    F16,
}

impl From<KvCacheArg> for CacheType {
    fn from(arg: KvCacheArg) -> CacheType {
        match arg {
            KvCacheArg::F32 => CacheType::F32,
            KvCacheArg::F16 => CacheType::F16,
        }
    }
}

/// `arg` opened as a file or an Ollama name; `None` is the built-in model.
pub fn open(arg: Option<&str>) -> ferrogem::Result<ModelFile> {
    match arg {
        Some(arg) => ModelFile::open(arg),
        None => ferrogem_harness::golden::built_in_model(),
    }
}

/// [`ModelFile::load`] with a bar of the weight bytes uploaded so far.
pub fn load_with_progress(ctx: &Context, model: &ModelFile, options: GemmaOptions) -> ferrogem::Result<Gemma> {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("loading {msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec})") {
        bar.set_style(style);
    }
    bar.set_message(model.display.clone());
    let loaded = model.load(ctx, options, &mut |p| {
        bar.set_length(p.total_bytes);
        bar.set_position(p.uploaded_bytes.min(p.total_bytes));
    });
    bar.finish_and_clear();
    loaded
}
