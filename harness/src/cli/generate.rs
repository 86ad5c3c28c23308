//! `ferrogem generate`: one prompt in, streamed text out, prefill and decode tok/s at the end. Ctrl-C stops between
//! two tokens, keeps the partial output, releases the GPU memory and exits with 130.

use crate::text_session::{EXIT_INTERRUPTED, ModelArgs, SamplingArgs, Streamer, rate};
use clap::Args;
use ferrogem::chat::{ChatTemplate, Message};
use ferrogem::sampling::Sampler;
use ferrogem::session::{GenerateParams, Session, StopReason, snapshot};
use serde::Serialize;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt text. Special-token text (`<start_of_turn>`, `<|turn>` …) becomes its token.
    #[arg(long, short)]
    pub prompt: String,
    /// Tokens to generate at most.
    #[arg(short = 'n', long, default_value_t = 128)]
    pub max_tokens: u32,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Wrap the prompt as one user turn of the model's chat template (as Ollama renders it).
    #[arg(long)]
    pub chat: bool,
    /// With --chat on Gemma 4: turn thinking on.
    #[arg(long, requires = "chat")]
    pub think: bool,
    /// Print one JSON object at the end instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Report {
    model: String,
    adapter: String,
    prompt_tokens: u32,
    tokens: Vec<u32>,
    text: String,
    thinking: String,
    answer: String,
    stop: &'static str,
    load_s: f64,
    prefill_s: f64,
    prefill_tok_s: f64,
    decode_s: f64,
    decode_tok_s: f64,
    /// Tracked GPU bytes before the prompt and after the generation (equal unless the bind-group cache grew).
    live_bytes_before: u64,
    live_bytes_after: u64,
    live_bytes_after_unload: u64,
}

pub fn run(args: GenerateArgs) -> ferrogem::Result<ExitCode> {
    crate::text_session::install_interrupt_handler();
    let loaded = crate::text_session::load(&args.model)?;
    let (config, mut stops) = args.sampling.resolve(&loaded.opened)?;
    let text = if args.chat {
        let template = ChatTemplate::for_model(&loaded.opened.gguf)?;
        stops.extend(template.stop_strings());
        template.render(&[Message::user(&args.prompt)], &[], args.think)?
    } else {
        args.prompt.clone()
    };
    let ids = loaded.tokenizer.encode_prompt(&text);
    let arch = loaded.model.config.arch;
    let adapter = loaded.ctx.caps().adapter.name.clone();
    let live_bytes_before = loaded.ctx.memory().live_bytes;
    let fingerprint = snapshot::fingerprint(&loaded.opened.gguf, &loaded.opened.adapters);
    let mut session = Session::new(loaded.model, loaded.tokenizer, fingerprint);
    let mut sampler = Sampler::new(config)?;
    let params = GenerateParams { max_tokens: args.max_tokens, stop_strings: stops, stop_tokens: Vec::new() };
    let mut streamer = Streamer::start(args.json, arch);
    let generation = pollster::block_on(session.generate(&ids, &mut sampler, &params, &mut streamer));
    let prefill = streamer.prefill;
    let streamed = streamer.finish();
    let generation = generation?;
    let live_bytes_after = loaded.ctx.memory().live_bytes;
    drop(session);
    loaded.ctx.wait_idle()?;
    let live_bytes_after_unload = loaded.ctx.memory().live_bytes;
    let computed = prefill.map_or(0, |(_, computed)| computed);
    let n = generation.tokens.len() as u32;
    let report = Report {
        model: loaded.opened.display.clone(),
        adapter,
        prompt_tokens: ids.len() as u32,
        tokens: generation.tokens.clone(),
        text: generation.text.clone(),
        thinking: streamed.thinking,
        answer: streamed.answer,
        stop: generation.stop.name(),
        load_s: loaded.load_s,
        prefill_s: streamed.prefill_s,
        prefill_tok_s: rate(computed, streamed.prefill_s),
        decode_s: streamed.decode_s,
        decode_tok_s: rate(n, streamed.decode_s),
        live_bytes_before,
        live_bytes_after,
        live_bytes_after_unload,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| json_error(e.to_string()))?);
    } else {
        eprintln!(
            "prompt: {} tokens in {:.2} s ({:.1} tok/s) · generated: {n} tokens in {:.2} s ({:.1} tok/s) · stop: {} · load {:.2} s",
            report.prompt_tokens,
            report.prefill_s,
            report.prefill_tok_s,
            report.decode_s,
            report.decode_tok_s,
            report.stop,
            report.load_s
        );
        let change = match live_bytes_after.cmp(&live_bytes_before) {
            std::cmp::Ordering::Equal => "same as before the prompt".to_owned(),
            _ => format!(
                "{:+} bytes of bind groups kept for the next run",
                live_bytes_after as i64 - live_bytes_before as i64
            ),
        };
        eprintln!(
            "GPU memory: {live_bytes_before} bytes before the prompt, {live_bytes_after} after ({change}), \
             {live_bytes_after_unload} bytes after unload"
        );
    }
    Ok(match generation.stop {
        StopReason::Cancelled => ExitCode::from(EXIT_INTERRUPTED),
        _ => ExitCode::SUCCESS,
    })
}

pub fn json_error(message: String) -> ferrogem::Error {
    ferrogem::Error::Io { action: "write JSON to", path: "stdout".into(), message }
}
