//! `ferrogem logits`: the logits of every position of a token list, from the GPU engine or the CPU reference, in
//! one chunk (prefill) or one token at a time through the KV cache (decode), written as an `[n_tokens, vocab]`
//! f32 `.npy` — the shape of the goldens' `*_logits.npy`.

use crate::model_arg;
use clap::{Args, ValueEnum};
use ferrogem::gpu::{Context, ContextOptions};
use ferrogem::models::gemma::{GemmaOptions, LogitRows};
use ferrogem_harness::model_check::parse_ids;
use ferrogem_harness::npy;
use ferrogem_harness::reference::Reference;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Gpu,
    Cpu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunMode {
    /// All tokens in one forward call (chunks of up to --max-chunk).
    Prefill,
    /// One token per call through the KV cache.
    Decode,
}

#[derive(Args)]
pub struct LogitsArgs {
    /// A GGUF path or an Ollama model name.
    #[arg(long)]
    pub model: String,
    /// A LoRA adapter to apply: a PEFT directory or a llama.cpp LoRA GGUF, with an optional scale (default 1);
    /// repeatable, and adapters on the same projection add.
    #[arg(long = "adapter", value_name = "PATH[:SCALE]", value_parser = crate::model_arg::parse_adapter)]
    pub adapters: Vec<crate::model_arg::AdapterArg>,
    /// Token ids, comma-separated (e.g. 2,818,5279).
    #[arg(long)]
    pub tokens: String,
    /// Where to write the [n_tokens, vocab] f32 .npy.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = Backend::Gpu)]
    pub backend: Backend,
    #[arg(long, value_enum, default_value_t = RunMode::Prefill)]
    pub mode: RunMode,
    /// Tokens per GPU chunk (at least 1).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_chunk: u32,
    /// Ask only for the WebGPU default limits and no f16/subgroups (what a browser grants).
    #[arg(long, env = "FERROGEM_DOWNLEVEL")]
    pub downlevel: bool,
}

pub fn run(args: LogitsArgs) -> ferrogem::Result<ExitCode> {
    let unsupported = |reason: String| ferrogem::Error::Unsupported { op: "logits".into(), reason };
    let tokens = parse_ids(&args.tokens).map_err(unsupported)?;
    if tokens.is_empty() {
        return Err(unsupported("--tokens is empty".into()));
    }
    let model = model_arg::open(Some(&args.model), &args.adapters)?;
    let source = model.source.as_ref();
    let t0 = Instant::now();
    let (vocab, values) = match args.backend {
        Backend::Gpu => {
            let ctx =
                Context::new_blocking(ContextOptions { downlevel: args.downlevel, ..ContextOptions::from_env() })?;
            eprintln!("adapter: {}", ctx.caps().summary());
            let n_ctx = (tokens.len() as u32).max(1);
            let options = GemmaOptions { max_chunk: args.max_chunk, n_ctx, ..GemmaOptions::default() };
            let mut gemma = model_arg::load_with_progress(&ctx, &model, options)?;
            let values = match args.mode {
                RunMode::Prefill => gemma.forward_blocking(&tokens, 0, LogitRows::All)?.values,
                RunMode::Decode => {
                    let mut all = Vec::new();
                    for (i, &t) in tokens.iter().enumerate() {
                        all.extend(gemma.forward_blocking(&[t], i as u32, LogitRows::Last)?.values);
                    }
                    all
                }
            };
            (gemma.config.vocab as usize, values)
        }
        Backend::Cpu => {
            let cpu_error = |e: candle_core::Error| unsupported(format!("CPU reference: {e}"));
            let mut reference = Reference::from_gguf(&model.gguf, source).map_err(cpu_error)?;
            reference.merge_adapters(&model.adapters).map_err(cpu_error)?;
            let flat =
                |f: ferrogem_harness::reference::Forward| f.logits.flatten_all().and_then(|t| t.to_vec1::<f32>());
            let values = match args.mode {
                RunMode::Prefill => flat(reference.forward(&tokens).map_err(cpu_error)?).map_err(cpu_error)?,
                RunMode::Decode => {
                    let mut cache = reference.new_cache();
                    let mut all = Vec::new();
                    for &t in &tokens {
                        all.extend(
                            flat(reference.forward_incremental(&[t], &mut cache).map_err(cpu_error)?)
                                .map_err(cpu_error)?,
                        );
                    }
                    all
                }
            };
            (reference.config.vocab as usize, values)
        }
    };
    npy::write_f32(&args.out, &[tokens.len(), vocab], &values).map_err(unsupported)?;
    eprintln!(
        "{} logits of {} tokens ({:?}, {:?}) in {:.2?} -> {}",
        model.display,
        tokens.len(),
        args.backend,
        args.mode,
        t0.elapsed(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
