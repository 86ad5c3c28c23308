//! `ferrogem bench`: how fast a model prefills and decodes on this device, where the decode time goes (GPU time per
//! kernel from timestamp queries), what a token costs in dispatches and submissions, and how close decode comes to
//! the bandwidth roofline (bytes a step must read ÷ what a shader measurably reads per second, `stream_read`).
//! Prints the tables, optionally writes the whole result as JSON, and appends one row to a CSV history that
//! `ferrogem report` plots.
//!
//! The protocol follows llama-bench's pp/tg: a warm-up, then per rep the prompt as one forward call from position
//! 0 (prefill), then `--gen` single-token calls after it (decode), on fixed pseudo-random ids with no sampling.

mod bytes;
pub mod history;
mod measure;
pub mod print;

use crate::args::io_error;
use crate::model_arg;
use bytes::DecodeBytes;
use clap::{Args, ValueEnum};
use ferrogem::atomic_file::write_atomic;
use ferrogem::gpu::{Context, ContextOptions};
use ferrogem::models::ModelFile;
use ferrogem::models::gemma::GemmaOptions;
use ferrogem::ops::attention::CacheType;
use ferrogem_harness::cases::runner::measure_read_bandwidth;
use ferrogem_harness::results::Environment;
use history::col;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use measure::{Counts, Plan, Timing, median_min_max};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--kv-cache` of bench: a storage type, or what llama.cpp would pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KvArg {
    /// f16 where the device grants SHADER_F16 (as llama.cpp's default cache), else f32.
    Auto,
    /// Half the memory; needs SHADER_F16.
    F16,
    /// Works everywhere.
    F32,
}

#[derive(Args)]
pub struct BenchArgs {
    /// A GGUF path or an Ollama model name.
    #[arg(long)]
    pub model: String,
    /// A LoRA adapter to apply: a PEFT directory or a llama.cpp LoRA GGUF, with an optional scale (default 1);
    /// repeatable, and adapters on the same projection add.
    #[arg(long = "adapter", value_name = "PATH[:SCALE]", value_parser = crate::model_arg::parse_adapter)]
    pub adapters: Vec<crate::model_arg::AdapterArg>,
    /// Prompt tokens, prefilled in one forward call.
    #[arg(long = "prompt", default_value_t = 512)]
    pub prompt_tokens: u32,
    /// Tokens decoded one at a time after the prompt.
    #[arg(long = "gen", default_value_t = 128)]
    pub gen_tokens: u32,
    /// Measured repetitions (after one warm-up).
    #[arg(long, default_value_t = 5)]
    pub reps: u32,
    /// Positions the KV cache holds; default: prompt + gen.
    #[arg(long = "ctx")]
    pub n_ctx: Option<u32>,
    /// Tokens per forward chunk (at least 1); default: the whole prompt in one.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_chunk: Option<u32>,
    #[arg(long, value_enum, default_value_t = KvArg::Auto)]
    pub kv_cache: KvArg,
    /// Append one row to this CSV history (created with a header if missing).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write the whole result as JSON to this file (`-` or no value: stdout, and the tables go to stderr).
    #[arg(long, num_args = 0..=1, default_missing_value = "-")]
    pub json: Option<PathBuf>,
    /// Ask only for the WebGPU default limits and no f16/subgroups (what a browser grants).
    #[arg(long, env = "FERROGEM_DOWNLEVEL")]
    pub downlevel: bool,
}

/// Tokens per second over the reps.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub per_rep: Vec<f64>,
}

impl Rate {
    fn new(tokens: u32, seconds: &[f64]) -> Rate {
        let per_rep: Vec<f64> = seconds.iter().map(|s| tokens as f64 / s).collect();
        let (median, min, max) = median_min_max(&per_rep);
        Rate { median, min, max, per_rep }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// The file name (or Ollama name): the history groups runs by it.
    pub name: String,
    pub arch: String,
    pub layers: usize,
    /// The most common type of the layer matrices, by bytes.
    pub quant: String,
    /// `general.file_type` (llama.cpp's `llama_ftype`), when the file has it.
    pub file_type: Option<u32>,
    pub kv_cache: &'static str,
    pub n_ctx: u32,
    pub max_chunk: u32,
    /// The LoRA adapters applied (`--adapter`): `label ×scale: N projections, rank r` each; empty without.
    pub lora: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub environment: Environment,
    pub date: String,
    pub model: ModelInfo,
    pub prompt_tokens: u32,
    pub gen_tokens: u32,
    pub reps: u32,
    pub prefill_tok_s: Rate,
    pub decode_tok_s: Rate,
    /// Per prompt.
    pub prefill: Counts,
    /// Per decoded token.
    pub decode: Counts,
    pub decode_dispatches_per_layer: f64,
    pub decode_bytes: DecodeBytes,
    pub read_gb_per_s: f64,
    /// Decode bytes per token × median decode tok/s.
    pub achieved_gb_per_s: f64,
    /// Copy bandwidth ÷ bytes per token: the decode speed if only reading the bytes took time.
    pub roofline_tok_s: f64,
    pub roofline_fraction: f64,
    pub memory_peak_bytes: u64,
    pub bind_hit_rate_prefill: f64,
    pub bind_hit_rate_decode: f64,
    pub gpu_timing: Timing,
    /// How much slower decode ran with GPU timing on: 1 − timed tok/s ÷ untimed median.
    pub timing_cost_fraction: Option<f64>,
}

impl BenchReport {
    /// Decoded tokens the summed decode kernel times cover (every timed rep).
    pub fn timed_tokens(&self) -> f64 {
        self.reps as f64 * self.gen_tokens as f64
    }
}

fn unsupported(reason: String) -> ferrogem::Error {
    ferrogem::Error::Unsupported { op: "bench".into(), reason }
}

pub fn run(args: BenchArgs) -> ferrogem::Result<ExitCode> {
    if args.prompt_tokens == 0 || args.gen_tokens == 0 || args.reps == 0 {
        return Err(unsupported("--prompt, --gen and --reps must each be at least 1".into()));
    }
    let needed_tokens = args.prompt_tokens as u64 + args.gen_tokens as u64;
    let n_ctx = args.n_ctx.unwrap_or(needed_tokens.min(u32::MAX as u64) as u32);
    if (n_ctx as u64) < needed_tokens {
        return Err(ferrogem::Error::ContextOverflow { what: "bench (--prompt + --gen)".into(), needed_tokens, n_ctx });
    }
    let opened = model_arg::open(Some(&args.model), &args.adapters)?;
    let ctx = Context::new_blocking(ContextOptions { downlevel: args.downlevel, ..ContextOptions::from_env() })?;
    eprintln!("adapter: {}", ctx.caps().summary());
    let kv_cache = match args.kv_cache {
        KvArg::F32 => CacheType::F32,
        KvArg::F16 => CacheType::F16,
        KvArg::Auto if ctx.caps().f16 => CacheType::F16,
        KvArg::Auto => CacheType::F32,
    };
    let max_chunk = args.max_chunk.unwrap_or(args.prompt_tokens);
    let options = GemmaOptions { max_chunk, n_ctx, kv_cache, ..GemmaOptions::default() };
    eprintln!("loading {}", opened.display);
    let mut model = model_arg::load_with_progress(&ctx, &opened, options)?;
    let plan = Plan::new(model.config.vocab, args.prompt_tokens, args.gen_tokens, args.reps);
    let bar = ProgressBar::with_draw_target(Some(plan.total_calls()), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} forward calls, {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let measured = measure::run(&ctx, &mut model, &plan, &bar)?;
    bar.set_message("read bandwidth");
    let read_gb_per_s = measure_read_bandwidth(&ctx)?;
    bar.finish_and_clear();

    let decode_bytes = bytes::per_decoded_token(&model, args.prompt_tokens, args.gen_tokens);
    let decode_tok_s = Rate::new(args.gen_tokens, &measured.decode_s);
    let roofline_tok_s = read_gb_per_s * 1e9 / decode_bytes.total_bytes;
    let timing_cost_fraction = match &measured.timing {
        Timing::Measured { decode_s, .. } => {
            Some(1.0 - Rate::new(args.gen_tokens, decode_s).median / decode_tok_s.median)
        }
        Timing::Unavailable { .. } => None,
    };
    let report = BenchReport {
        environment: Environment::new(ctx.caps()),
        date: history::utc_now_iso(),
        model: ModelInfo {
            name: model_name(&opened),
            arch: format!("{:?}", model.config.arch).to_lowercase(),
            layers: model.config.n_layers(),
            quant: dominant_layer_type(&opened),
            file_type: opened.gguf.get_u32("general.file_type").ok(),
            kv_cache: kv_cache.name(),
            n_ctx,
            max_chunk: model.scratch.max_chunk,
            lora: lora_summary(&opened),
        },
        prompt_tokens: args.prompt_tokens,
        gen_tokens: args.gen_tokens,
        reps: args.reps,
        prefill_tok_s: Rate::new(args.prompt_tokens, &measured.prefill_s),
        achieved_gb_per_s: decode_bytes.total_bytes * decode_tok_s.median / 1e9,
        roofline_fraction: decode_tok_s.median / roofline_tok_s,
        decode_tok_s,
        decode_dispatches_per_layer: measured.decode_counts.dispatches / model.config.n_layers().max(1) as f64,
        prefill: measured.prefill_counts,
        decode: measured.decode_counts,
        decode_bytes,
        read_gb_per_s,
        roofline_tok_s,
        memory_peak_bytes: measured.memory_peak_bytes,
        bind_hit_rate_prefill: measured.bind_hit_rate_prefill,
        bind_hit_rate_decode: measured.bind_hit_rate_decode,
        timing_cost_fraction,
        gpu_timing: measured.timing,
    };
    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    let text = print::tables(&report);
    if json_to_stdout {
        eprint!("{text}")
    } else {
        print!("{text}")
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| unsupported(e.to_string()))?;
        if json_to_stdout {
            println!("{json}");
        } else {
            write_atomic(path, json.as_bytes())?;
        }
    }
    if let Some(path) = &args.csv {
        history::append(path, &history_row(&report)).map_err(|e| io_error("write", path, e))?;
        eprintln!("appended a row to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn model_name(opened: &ModelFile) -> String {
    match (&opened.ollama, opened.path.file_name()) {
        (None, Some(file)) => file.to_string_lossy().into_owned(),
        _ => opened.display.clone(),
    }
}

/// The type holding most bytes among the layers' matrices (`blk.*`, two or more dims).
fn dominant_layer_type(opened: &ModelFile) -> String {
    let mut bytes_by_type: Vec<(String, u64)> = Vec::new();
    for t in opened.gguf.tensors().iter().filter(|t| t.name().starts_with("blk.") && t.dims().len() >= 2) {
        let name = t.dtype().to_string();
        match bytes_by_type.iter_mut().find(|(n, _)| *n == name) {
            Some((_, b)) => *b += t.size_bytes(),
            None => bytes_by_type.push((name, t.size_bytes())),
        }
    }
    bytes_by_type.into_iter().max_by_key(|(_, b)| *b).map_or_else(|| "unknown".into(), |(n, _)| n)
}

/// The history row: identity first, then the numbers; `report` finds the columns by name.
fn history_row(r: &BenchReport) -> Vec<(&'static str, String)> {
    let f = |x: f64, decimals: usize| format!("{x:.decimals$}");
    let (gpu_timing, decode_gpu_us, top_kernel) = match &r.gpu_timing {
        Timing::Unavailable { .. } => ("unavailable".to_owned(), String::new(), String::new()),
        Timing::Measured { method, decode, .. } => {
            let per_token_us = decode.total_gpu_ns() / r.timed_tokens() / 1e3;
            let top = print::by_kernel(decode).first().map(|k| k.name.clone()).unwrap_or_default();
            (format!("{method:?}"), f(per_token_us, 1), top)
        }
    };
    let env = &r.environment;
    vec![
        (col::COMMIT, env.commit.to_owned()),
        (col::DATE, r.date.clone()),
        (col::ADAPTER, env.adapter.clone()),
        ("backend", env.backend.clone()),
        ("driver", format!("{} {}", env.driver, env.driver_info).trim().to_owned()),
        (col::MODEL, r.model.name.clone()),
        ("quant", r.model.quant.clone()),
        ("file_type", r.model.file_type.map(|t| t.to_string()).unwrap_or_default()),
        ("kv_cache", r.model.kv_cache.to_owned()),
        ("lora", r.model.lora.clone()),
        ("prompt_tokens", r.prompt_tokens.to_string()),
        ("gen_tokens", r.gen_tokens.to_string()),
        ("reps", r.reps.to_string()),
        (col::PREFILL_TOK_S, f(r.prefill_tok_s.median, 2)),
        ("prefill_tok_s_min", f(r.prefill_tok_s.min, 2)),
        ("prefill_tok_s_max", f(r.prefill_tok_s.max, 2)),
        (col::DECODE_TOK_S, f(r.decode_tok_s.median, 2)),
        ("decode_tok_s_min", f(r.decode_tok_s.min, 2)),
        ("decode_tok_s_max", f(r.decode_tok_s.max, 2)),
        ("dispatches_per_token", f(r.decode.dispatches, 1)),
        ("dispatches_per_layer", f(r.decode_dispatches_per_layer, 2)),
        ("submissions_per_token", f(r.decode.submissions, 2)),
        ("bytes_per_token", f(r.decode_bytes.total_bytes, 0)),
        ("read_gb_per_s", f(r.read_gb_per_s, 2)),
        ("achieved_gb_per_s", f(r.achieved_gb_per_s, 3)),
        // Renamed from `roofline_pct` when its basis changed from a buffer copy to `stream_read`: old rows stay apart.
        ("read_roofline_pct", f(100.0 * r.roofline_fraction, 2)),
        (col::MEMORY_PEAK_BYTES, r.memory_peak_bytes.to_string()),
        ("bind_hit_rate_prefill", f(r.bind_hit_rate_prefill, 4)),
        (col::BIND_HIT_RATE_DECODE, f(r.bind_hit_rate_decode, 4)),
        ("gpu_timing", gpu_timing),
        ("decode_gpu_us_per_token", decode_gpu_us),
        ("timing_cost_pct", r.timing_cost_fraction.map(|c| f(100.0 * c, 1)).unwrap_or_default()),
        ("top_kernel", top_kernel),
    ]
}

/// What `ModelInfo::lora` says about the applied adapters.
fn lora_summary(model: &ModelFile) -> String {
    let describe = |a: &ferrogem::models::gemma::AppliedAdapter| {
        let (lo, hi) = a.adapter.rank_range();
        let rank = if lo == hi { lo.to_string() } else { format!("{lo}..{hi}") };
        format!("{} ×{}: {} projections, rank {rank}", a.label, a.scale, a.adapter.updates.len())
    };
    model.adapters.iter().map(describe).collect::<Vec<_>>().join("; ")
}
