//! `ferrogem generate` and `ferrogem chat`: what they share — opening and loading a model with a progress bar,
//! sampler settings (GGUF `general.sampling.*`, then the Ollama params layer, then the command line), Ctrl-C, and
//! the timing observer.

use crate::model_arg::{self, KvCacheArg};
use clap::Args;
use ferrogem::chat::ThinkingSplitter;
use ferrogem::gpu::{Context, ContextOptions};
use ferrogem::models::Arch;
use ferrogem::models::ModelFile;
use ferrogem::models::gemma::{Gemma, GemmaOptions};
use ferrogem::sampling::{SamplerConfig, ranges};
use ferrogem::session::{Observer, Prefill};
use ferrogem::tokenizer::Tokenizer;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// A GGUF path or an Ollama model name; default: the built-in tiny Gemma 4 (random weights: its text is noise).
    #[arg(long)]
    pub model: Option<String>,
    /// A LoRA adapter to apply: a PEFT directory or a llama.cpp LoRA GGUF, with an optional scale (default 1);
    /// repeatable, and adapters on the same projection add.
    #[arg(long = "adapter", value_name = "PATH[:SCALE]", value_parser = crate::model_arg::parse_adapter)]
    pub adapters: Vec<crate::model_arg::AdapterArg>,
    /// Context length in tokens (capped at the model's context_length).
    #[arg(long, default_value_t = 4096)]
    pub ctx: u32,
    /// KV cache storage; f16 halves its memory and needs SHADER_F16.
    #[arg(long, value_enum, default_value_t = KvCacheArg::F32)]
    pub kv_cache: KvCacheArg,
    /// Ask only for the WebGPU default limits and no f16/subgroups (what a browser grants).
    #[arg(long, env = "FERROGEM_DOWNLEVEL")]
    pub downlevel: bool,
}

#[derive(Args, Clone, Debug, Default)]
pub struct SamplingArgs {
    /// Temperature ≥ 0; 0 is greedy. Default: the Ollama params layer, else the GGUF's `general.sampling.temp`, else
    /// 0.8.
    #[arg(long, allow_negative_numbers = true, value_parser = setting(ranges::temperature))]
    pub temp: Option<f32>,
    /// Keep only the K most likely tokens (0: off).
    #[arg(long)]
    pub top_k: Option<u32>,
    /// Keep the smallest set of tokens whose probabilities add up to at least P, in [0, 1] (1: off).
    #[arg(long, allow_negative_numbers = true, value_parser = setting(ranges::top_p))]
    pub top_p: Option<f32>,
    /// Drop tokens less likely than P times the most likely one, P in [0, 1] (0: off).
    #[arg(long, allow_negative_numbers = true, value_parser = setting(ranges::min_p))]
    pub min_p: Option<f32>,
    /// Divide the logits of recently seen tokens by R > 0 (multiply the negative ones) (1: off).
    #[arg(long, allow_negative_numbers = true, value_parser = setting(ranges::repeat_penalty))]
    pub repeat_penalty: Option<f32>,
    /// Tokens the repetition penalty looks back over.
    #[arg(long)]
    pub repeat_last_n: Option<u32>,
    /// Same seed, same settings, same prompt → same text.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop when this text appears (repeatable); the Ollama params' stops are added.
    #[arg(long)]
    pub stop: Vec<String>,
}

/// A clap parser for a sampler setting: a number, then the library's range check ([`ranges`]), so the error names the
/// flag and the valid range.
fn setting(range: fn(f32) -> Result<f32, String>) -> impl Fn(&str) -> Result<f32, String> + Clone {
    move |text| text.parse::<f32>().map_err(|e| format!("`{text}` is not a number: {e}")).and_then(range)
}

impl SamplingArgs {
    /// The sampler settings and stop strings, layered: GGUF metadata, then Ollama's params layer, then the flags.
    pub fn resolve(&self, opened: &ModelFile) -> ferrogem::Result<(SamplerConfig, Vec<String>)> {
        let mut config = SamplerConfig::from_gguf(&opened.gguf);
        let mut stops = Vec::new();
        if let Some(params) = opened.ollama.as_ref().and_then(|o| o.params.clone()) {
            stops = config.apply_ollama_params(&serde_json::Value::Object(params))?;
        }
        let c = &mut config;
        let flags = [
            (self.temp, &mut c.temperature),
            (self.top_p, &mut c.top_p),
            (self.min_p, &mut c.min_p),
            (self.repeat_penalty, &mut c.repeat_penalty),
        ];
        for (flag, field) in flags {
            if let Some(v) = flag {
                *field = v;
            }
        }
        for (flag, field) in [(self.top_k, &mut c.top_k), (self.repeat_last_n, &mut c.repeat_last_n)] {
            if let Some(v) = flag {
                *field = v;
            }
        }
        if let Some(seed) = self.seed {
            c.seed = seed;
        }
        stops.extend(self.stop.iter().cloned());
        Ok((config, stops))
    }
}

pub struct Loaded {
    pub opened: ModelFile,
    pub ctx: Context,
    pub model: Gemma,
    pub tokenizer: Tokenizer,
    pub load_s: f64,
}

/// Opens the model, reads its tokenizer, and uploads the weights with a progress bar on stderr (its total is the
/// memory plan's weight bytes).
pub fn load(args: &ModelArgs) -> ferrogem::Result<Loaded> {
    let started = Instant::now();
    let opened = model_arg::open(args.model.as_deref(), &args.adapters)?;
    let tokenizer = Tokenizer::from_gguf(&opened.gguf)?;
    let mut options = ContextOptions::from_env();
    options.downlevel |= args.downlevel;
    let ctx = Context::new_blocking(options)?;
    let gemma_options = GemmaOptions { n_ctx: args.ctx, kv_cache: args.kv_cache.into(), ..GemmaOptions::default() };
    let model = model_arg::load_with_progress(&ctx, &opened, gemma_options)?;
    Ok(Loaded { opened, ctx, model, tokenizer, load_s: started.elapsed().as_secs_f64() })
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// While false, Ctrl-C exits at once (nothing is running on the GPU); while true it only raises INTERRUPTED.
static GENERATING: AtomicBool = AtomicBool::new(false);

/// Ctrl-C stops a generation between two tokens (the partial output is kept); outside a generation, or pressed a
/// second time, it exits.
pub fn install_interrupt_handler() {
    let installed = ctrlc::set_handler(|| {
        // A second Ctrl-C while the first is still waiting for the GPU (a long prefill) exits at once.
        if !GENERATING.load(Ordering::SeqCst) || INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(EXIT_INTERRUPTED as i32);
        }
    });
    if let Err(e) = installed {
        eprintln!("warning: Ctrl-C will not stop generation cleanly: {e}");
    }
}

/// Streams the answer to stdout and the thinking (Gemma 4's thought channel) to stderr, unless quiet, and times
/// the prefill and the decode.
pub struct Streamer {
    quiet: bool,
    splitter: Option<ThinkingSplitter>,
    started: Instant,
    prefill_done: Option<Instant>,
    /// (reused, computed) prompt tokens.
    pub prefill: Option<(u32, u32)>,
    pub thinking: String,
    pub answer: String,
}

/// The generation's timing and its text split into thinking and answer.
pub struct Streamed {
    pub prefill_s: f64,
    pub decode_s: f64,
    pub thinking: String,
    pub answer: String,
}

impl Streamer {
    pub fn start(quiet: bool, arch: Arch) -> Self {
        INTERRUPTED.store(false, Ordering::SeqCst);
        GENERATING.store(true, Ordering::SeqCst);
        let splitter = (arch == Arch::Gemma4).then(ThinkingSplitter::new);
        let (thinking, answer) = (String::new(), String::new());
        Streamer { quiet, splitter, started: Instant::now(), prefill_done: None, prefill: None, thinking, answer }
    }

    pub fn finish(mut self) -> Streamed {
        GENERATING.store(false, Ordering::SeqCst);
        let prefill_end = self.prefill_done.unwrap_or_else(Instant::now);
        let (prefill_s, decode_s) =
            (prefill_end.duration_since(self.started).as_secs_f64(), prefill_end.elapsed().as_secs_f64());
        if let Some(splitter) = self.splitter.take() {
            let rest = splitter.finish();
            self.show(&rest.thinking, &rest.answer);
        }
        if !self.quiet && !self.answer.ends_with('\n') {
            println!();
        }
        Streamed { prefill_s, decode_s, thinking: self.thinking, answer: self.answer }
    }

    fn show(&mut self, thinking: &str, answer: &str) {
        self.thinking.push_str(thinking);
        self.answer.push_str(answer);
        if self.quiet {
            return;
        }
        if !thinking.is_empty() {
            let _ = std::io::stderr().lock().write_all(thinking.as_bytes());
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(answer.as_bytes());
        let _ = out.flush();
    }
}

impl Observer for Streamer {
    fn prefilled(&mut self, prefill: &Prefill) {
        self.prefill_done = Some(Instant::now());
        self.prefill = Some((prefill.reused_tokens, prefill.computed_tokens));
    }

    fn text(&mut self, text: &str) {
        match self.splitter.as_mut().map(|s| s.push(text)) {
            Some(split) => self.show(&split.thinking, &split.answer),
            None => self.show("", text),
        }
    }

    fn cancelled(&mut self) -> bool {
        INTERRUPTED.load(Ordering::SeqCst)
    }
}

/// Tokens per second, or 0 when nothing was timed.
pub fn rate(tokens: u32, seconds: f64) -> f64 {
    if seconds > 0.0 { tokens as f64 / seconds } else { 0.0 }
}
