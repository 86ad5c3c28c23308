//! A model argument (a GGUF path, an Ollama name, or none for the built-in tiny Gemma 4) and loading it with a
//! progress bar on stderr.

use ferrogem::gpu::Context;
use ferrogem::models::ModelFile;
use ferrogem::models::gemma::{Gemma, GemmaOptions};
use ferrogem::ops::attention::CacheType;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;

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

/// `--adapter PATH[:SCALE]`: a LoRA adapter (a PEFT directory or a llama.cpp LoRA GGUF) and its scale.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterArg {
    pub path: PathBuf,
    pub scale: f32,
}

/// `PATH[:SCALE]`, SCALE a finite number (default 1); a path with a colon and no scale is taken whole.
pub fn parse_adapter(arg: &str) -> Result<AdapterArg, String> {
    let (path, scale) = match arg.rsplit_once(':').map(|(p, s)| (p, s.parse::<f32>())) {
        Some((path, Ok(scale))) if scale.is_finite() => (path, scale),
        Some((_, Ok(scale))) => return Err(format!("the scale {scale} is not a finite number")),
        _ => (arg, 1.0),
    };
    if path.is_empty() {
        return Err("the adapter path is empty; give PATH or PATH:SCALE".into());
    }
    Ok(AdapterArg { path: PathBuf::from(path), scale })
}

/// `arg` opened as a file or an Ollama name (`None` is the built-in model), with `adapters` added.
pub fn open(arg: Option<&str>, adapters: &[AdapterArg]) -> ferrogem::Result<ModelFile> {
    let mut model = match arg {
        Some(arg) => ModelFile::open(arg)?,
        None => ferrogem_harness::golden::built_in_model()?,
    };
    for a in adapters {
        model.add_adapter(&a.path.display().to_string(), &a.path, a.scale)?;
    }
    Ok(model)
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
