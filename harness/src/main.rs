//! `ferrogem`: the harness that proves the engine right and fast.

mod cases;
mod check;
mod inspect;
mod load_check;
mod logits_cmd;
mod model_check;
mod model_source;
mod npy;
mod reference;
mod report;
mod synth;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ferrogem", version, about = "Gemma inference on WGSL kernels through wgpu: checks, inspection, profiles")]
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
    Logits(logits_cmd::LogitsArgs),
    /// Write a deterministic synthetic Gemma model: real metadata and shapes, random weights, llama.cpp's quant mixes.
    Synth(synth::SynthArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Logits(args) => logits_cmd::run(args),
        Command::Synth(args) => synth::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
