//! `ferrogem`: the command line of the harness. Each subcommand lives in its own module (a folder for the larger
//! ones); the checking itself (op cases, CPU references, tolerances, goldens, model check) and `profile`'s measuring
//! are the library `ferrogem_harness`.

mod args;
mod bench;
mod chat;
mod check;
mod finetune;
mod generate;
mod inspect;
mod logits;
mod model_arg;
mod profile;
mod report;
mod serve;
mod synth;
mod text_session;
mod tokenize;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ferrogem",
    version,
    about = "Gemma inference on WGSL kernels through wgpu: checks, inspection, profiles"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the checks: shader validation, kernels against CPU sums, and the built-in tiny Gemma 4 model (or
    /// --model) loaded onto the GPU through the memory accountant.
    Check(check::CheckArgs),
    /// Describe a GGUF file or an Ollama model: architecture, hyperparameters, tensor types and bytes.
    Inspect(inspect::InspectArgs),
    /// Write the logits of a token list ([n_tokens, vocab] f32 .npy) from the GPU engine or the CPU reference.
    Logits(logits::LogitsArgs),
    /// Write a deterministic synthetic Gemma model: real metadata and shapes, random weights, llama.cpp's quant mixes.
    Synth(synth::SynthArgs),
    /// Write a deterministic random LoRA adapter (llama.cpp LoRA GGUF) for a model's projections.
    SynthLora(synth::lora::SynthLoraArgs),
    /// Profile GPU memory and the bind-group cache over load, prefill, decode and unload, optionally under a device
    /// profile (its limits, features and memory ceiling): trajectory.csv, summary.json, trajectory.svg.
    Profile(profile::ProfileArgs),
    /// Measure prefill and decode tok/s, GPU time per kernel, dispatches per token and % of the bandwidth
    /// roofline; append a row to a CSV history.
    Bench(bench::BenchArgs),
    /// Write an HTML dashboard (inline SVG plots) from one or more `bench` CSV histories.
    Report(report::ReportArgs),
    /// Generate text from a prompt: streamed tokens, prefill and decode tok/s; Ctrl-C stops cleanly (exit 130).
    Generate(generate::GenerateArgs),
    /// Chat with a model: multi-turn with the KV cache reused across turns; /save, /load, /reset, /stats.
    Chat(chat::ChatArgs),
    /// LoRA fine-tuning on the GPU over a JSONL dataset: a PEFT adapter, loss curves, checkpoints and the memory
    /// trajectory in --out.
    Finetune(finetune::FinetuneArgs),
    /// Serve the browser page, its wasm and models (with HTTP Range) for the browser build: from a folder of GGUFs
    /// and, with --ollama, the local Ollama store.
    Serve(serve::ServeArgs),
    /// Print the token ids (and pieces) of a text with a model's vocabulary; no GPU.
    Tokenize(tokenize::TokenizeArgs),
    /// Print the text of token ids with a model's vocabulary; no GPU.
    Detokenize(tokenize::DetokenizeArgs),
}

fn main() -> ExitCode {
    quiet_mesa_runtime_dir();
    end_quietly_on_a_closed_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Logits(args) => logits::run(args),
        Command::Synth(args) => synth::run(args),
        Command::SynthLora(args) => synth::lora::run(args),
        Command::Profile(args) => profile::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Report(args) => report::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Finetune(args) => finetune::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Tokenize(args) => tokenize::run_tokenize(args),
        Command::Detokenize(args) => tokenize::run_detokenize(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Mesa's Vulkan drivers look for a Wayland display and print "XDG_RUNTIME_DIR is invalid or not set" when that
/// variable names no directory, as on servers and in containers; point it at the temp directory then (no display is
/// found there either, silently).
fn quiet_mesa_runtime_dir() {
    let valid = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|dir| std::path::Path::new(&dir).is_dir());
    if !valid {
        // SAFETY: called first thing in main, before any other thread exists, so nothing reads the environment
        // concurrently.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
}

/// Rust ignores SIGPIPE, so writing to a closed pipe (`ferrogem inspect F | head -1`) makes `println!` panic. With the
/// signal's default action the process ends silently instead, as other Unix tools do (the shell sees 141).
fn end_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
