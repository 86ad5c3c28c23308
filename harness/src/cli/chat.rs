//! `ferrogem chat`: a multi-turn conversation on stdin/stdout. Each turn re-renders the conversation with the
//! model's chat template and reuses the KV cache of the common prefix, so earlier turns are not recomputed.
//! Commands: `/save FILE`, `/load FILE` (KV cache + sampler state + conversation, see `ferrogem::session::snapshot`),
//! `/reset`, `/stats`, `/exit`. Ctrl-C stops the current reply (kept as said so far); at the prompt it exits.

use crate::generate::json_error;
use crate::text_session::{ModelArgs, SamplingArgs, Streamer, rate};
use clap::Args;
use ferrogem::chat::{ChatTemplate, Message, Role};
use ferrogem::error::Error;
use ferrogem::sampling::{Sampler, SamplerConfig};
use ferrogem::session::{GenerateParams, Session, snapshot};
use serde::Serialize;
use serde_json::json;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

#[derive(Args, Debug)]
#[command(after_help = "Type a message and press Enter; lines starting with / are commands:
  /save FILE   write the KV cache, the sampler state and the conversation to FILE
  /load FILE   continue a conversation saved with /save (same model and --ctx)
  /reset       start a new conversation
  /stats       tokens cached, memory and bind-group cache counters
  /exit        leave (so does end of input)
Ctrl-C stops the current reply and keeps what was said so far; at the prompt it exits.")]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// System prompt; default: the Ollama model's system layer, if any.
    #[arg(long)]
    pub system: Option<String>,
    /// Gemma 4: turn thinking on (the thought channel goes to stderr).
    #[arg(long)]
    pub think: bool,
    /// Tokens per reply at most.
    #[arg(short = 'n', long, default_value_t = 512)]
    pub max_tokens: u32,
    /// When the conversation outgrows the context, drop the oldest turns instead of refusing the message.
    #[arg(long)]
    pub context_shift: bool,
    /// One JSON object per reply and per command on stdout instead of streamed text (for scripts and tests).
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct TurnReport<'a> {
    prompt_tokens: u32,
    reused_tokens: u32,
    tokens: &'a [u32],
    answer: &'a str,
    thinking: &'a str,
    stop: &'static str,
    dropped_messages: usize,
    prefill_tok_s: f64,
    decode_tok_s: f64,
}

struct Chat<'s> {
    args: &'s ChatArgs,
    session: Session,
    template: ChatTemplate,
    config: SamplerConfig,
    sampler: Sampler,
    stops: Vec<String>,
    messages: Vec<Message>,
    last_rates: (f64, f64),
}

pub fn run(args: ChatArgs) -> ferrogem::Result<ExitCode> {
    crate::text_session::install_interrupt_handler();
    let loaded = crate::text_session::load(&args.model)?;
    let (config, mut stops) = args.sampling.resolve(&loaded.opened)?;
    let template = ChatTemplate::for_model(&loaded.opened.gguf)?;
    stops.extend(template.stop_strings());
    let system = args.system.clone().or_else(|| loaded.opened.ollama.as_ref().and_then(|o| o.system.clone()));
    let messages = system.map(|s| vec![message(Role::System, s, None)]).unwrap_or_default();
    let fingerprint = snapshot::fingerprint(&loaded.opened.gguf, &loaded.opened.adapters);
    let session = Session::new(loaded.model, loaded.tokenizer, fingerprint);
    let sampler = Sampler::new(config.clone())?;
    let mut chat = Chat { args: &args, session, template, config, sampler, stops, messages, last_rates: (0.0, 0.0) };
    let interactive = std::io::stdin().is_terminal();
    let mut stdin = std::io::stdin().lock();
    let mut raw = Vec::new();
    loop {
        if interactive {
            eprint!(">>> ");
        }
        raw.clear();
        let read = stdin.read_until(b'\n', &mut raw);
        if read.map_err(|e| Error::Io { action: "read", path: "stdin".into(), message: e.to_string() })? == 0 {
            break;
        }
        // A line that is not UTF-8 is reported and skipped; the conversation goes on.
        let Ok(line) = std::str::from_utf8(&raw) else {
            let e =
                Error::Unsupported { op: "this line".into(), reason: "it is not valid UTF-8; type it again".into() };
            chat.say(json!({"error": e.to_string()}), &format!("error: {e}"));
            continue;
        };
        let line = line.trim_end_matches(['\r', '\n']);
        let outcome = match line.split_once(' ').unwrap_or((line, "")) {
            ("/exit" | "/quit" | "/bye", _) => break,
            ("/save", file) => chat.save(file.trim()),
            ("/load", file) => chat.load(file.trim()),
            ("/reset", _) => chat.reset(),
            ("/stats", _) => chat.stats(&loaded.ctx),
            (cmd, _) if cmd.starts_with('/') => Err(Error::Unsupported {
                op: format!("the chat command {cmd}"),
                reason: "commands are /save FILE, /load FILE, /reset, /stats, /exit".into(),
            }),
            _ if line.trim().is_empty() => Ok(()),
            _ => chat.reply(line),
        };
        match outcome {
            Ok(()) => {}
            // A turn that does not fit, a bad snapshot or a typo leaves the conversation as it was.
            Err(
                e @ (Error::ContextOverflow { .. }
                | Error::BadSnapshot { .. }
                | Error::Unsupported { .. }
                | Error::Io { .. }),
            ) => chat.say(json!({"error": e.to_string()}), &format!("error: {e}")),
            Err(e) => return Err(e),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A snapshot file's bytes, refused unread past `max_bytes` (what a snapshot of this session can hold) and unless it
/// is a regular file: `/load /dev/zero` must not read forever.
fn read_snapshot(file: &str, max_bytes: u64) -> ferrogem::Result<Vec<u8>> {
    use std::io::Read;
    let io = |message: String| Error::Io { action: "read the snapshot", path: file.into(), message };
    let f = std::fs::File::open(file).map_err(|e| io(e.to_string()))?;
    if !f.metadata().map_err(|e| io(e.to_string()))?.is_file() {
        return Err(io("it is not a regular file".into()));
    }
    let mut bytes = Vec::new();
    f.take(max_bytes + 1).read_to_end(&mut bytes).map_err(|e| io(e.to_string()))?;
    if bytes.len() as u64 > max_bytes {
        return Err(io(format!("it is larger than the {max_bytes} bytes a snapshot of this session can be")));
    }
    Ok(bytes)
}

fn message(role: Role, content: String, thinking: Option<String>) -> Message {
    Message { role, content, thinking, tool_calls: Vec::new(), tool_name: None }
}

impl Chat<'_> {
    fn say(&self, value: serde_json::Value, text: &str) {
        if self.args.json {
            println!("{value}");
        } else {
            eprintln!("{text}");
        }
    }

    /// Renders the conversation; with --context-shift drops the oldest turns (never the system turn) until it fits.
    fn prompt(&mut self) -> ferrogem::Result<(Vec<u32>, usize)> {
        let n_ctx = self.session.n_ctx() as u64;
        let mut dropped = 0;
        loop {
            let text = self.template.render(&self.messages, &[], self.args.think)?;
            let ids = self.session.tokenizer().encode_prompt(&text);
            // One free position at least, for the first generated token.
            if (ids.len() as u64) < n_ctx {
                return Ok((ids, dropped));
            }
            let first_turn = self.messages.iter().position(|m| m.role != Role::System);
            let last_user = self.messages.iter().rposition(|m| m.role == Role::User);
            match (self.args.context_shift, first_turn, last_user) {
                (true, Some(first), Some(last)) if first < last => {
                    // Drop the oldest user message with everything up to the next user message.
                    let end =
                        (first + 1..self.messages.len()).find(|&i| self.messages[i].role == Role::User).unwrap_or(last);
                    dropped += end - first;
                    self.messages.drain(first..end);
                }
                _ => {
                    return Err(Error::ContextOverflow {
                        what: "the conversation".into(),
                        needed_tokens: ids.len() as u64 + 1,
                        n_ctx: n_ctx as u32,
                    });
                }
            }
        }
    }

    fn reply(&mut self, text: &str) -> ferrogem::Result<()> {
        self.messages.push(message(Role::User, text.to_owned(), None));
        let (ids, dropped) = match self.prompt() {
            Ok(prompt) => prompt,
            Err(e) => {
                self.messages.pop();
                return Err(e);
            }
        };
        let params = GenerateParams {
            max_tokens: self.args.max_tokens,
            stop_strings: self.stops.clone(),
            stop_tokens: Vec::new(),
        };
        let mut streamer = Streamer::start(self.args.json, self.session.model().config.arch);
        let generation = pollster::block_on(self.session.generate(&ids, &mut self.sampler, &params, &mut streamer));
        let prefill = streamer.prefill;
        let streamed = streamer.finish();
        let generation = generation?;
        let computed = prefill.map_or(0, |(_, c)| c);
        self.last_rates = (rate(computed, streamed.prefill_s), rate(generation.tokens.len() as u32, streamed.decode_s));
        let thinking = (!streamed.thinking.is_empty()).then(|| streamed.thinking.clone());
        self.messages.push(message(Role::Assistant, streamed.answer.trim().to_owned(), thinking));
        if self.args.json {
            let report = TurnReport {
                prompt_tokens: ids.len() as u32,
                reused_tokens: generation.reused_tokens,
                tokens: &generation.tokens,
                answer: &streamed.answer,
                thinking: &streamed.thinking,
                stop: generation.stop.name(),
                dropped_messages: dropped,
                prefill_tok_s: self.last_rates.0,
                decode_tok_s: self.last_rates.1,
            };
            println!("{}", serde_json::to_string(&report).map_err(|e| json_error(e.to_string()))?);
        } else if dropped > 0 {
            eprintln!("(context shift: dropped the {dropped} oldest messages)");
        }
        Ok(())
    }

    fn save(&self, file: &str) -> ferrogem::Result<()> {
        let app = json!({"messages": self.messages, "think": self.args.think});
        let bytes = pollster::block_on(self.session.snapshot(self.sampler.state(), app))?;
        std::fs::write(file, &bytes).map_err(|e| Error::Io {
            action: "write",
            path: file.into(),
            message: e.to_string(),
        })?;
        self.say(json!({"saved": file, "bytes": bytes.len()}), &format!("saved {} bytes to {file}", bytes.len()));
        Ok(())
    }

    fn load(&mut self, file: &str) -> ferrogem::Result<()> {
        let bytes = read_snapshot(file, self.session.snapshot_max_bytes())?;
        let messages_of = |app: &serde_json::Value| -> ferrogem::Result<Vec<Message>> {
            serde_json::from_value(app["messages"].clone())
                .map_err(|e| Error::BadSnapshot { reason: format!("its conversation is malformed: {e}") })
        };
        let restored = pollster::block_on(self.session.restore(&bytes))?;
        let messages = messages_of(&restored.app)?;
        self.sampler = Sampler::from_state(restored.sampler)?;
        self.messages = messages;
        let cached = self.session.cached().len();
        self.say(json!({"loaded": file, "cached_tokens": cached}), &format!("loaded {file}: {cached} cached tokens"));
        Ok(())
    }

    fn reset(&mut self) -> ferrogem::Result<()> {
        self.messages.retain(|m| m.role == Role::System);
        self.session.reset();
        self.sampler = Sampler::new(self.config.clone())?;
        self.say(json!({"reset": true}), "conversation reset");
        Ok(())
    }

    fn stats(&self, ctx: &ferrogem::gpu::Context) -> ferrogem::Result<()> {
        let memory = ctx.memory();
        let by_category: serde_json::Map<String, serde_json::Value> = memory
            .by_category
            .iter()
            .map(|(c, live, peak)| (c.name().to_owned(), json!({"live_bytes": live, "peak_bytes": peak})))
            .collect();
        let hit_rate: serde_json::Map<String, serde_json::Value> = ctx
            .bind_cache_stats()
            .by_phase
            .iter()
            .map(|(phase, c)| (phase.name().to_owned(), json!(c.hit_rate())))
            .collect();
        let value = json!({
            "cached_tokens": self.session.cached().len(),
            "n_ctx": self.session.n_ctx(),
            "messages": self.messages.len(),
            "last_prefill_tok_s": self.last_rates.0,
            "last_decode_tok_s": self.last_rates.1,
            "live_bytes": memory.live_bytes,
            "peak_bytes": memory.peak_bytes,
            "by_category": by_category,
            "bind_group_hit_rate": hit_rate,
        });
        let text = serde_json::to_string_pretty(&value).map_err(|e| json_error(e.to_string()))?;
        if self.args.json {
            println!("{value}");
        } else {
            eprintln!("{text}");
        }
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
