//! `ferrogem finetune`: LoRA training on the GPU over a JSONL dataset (docs/training.md). Each optimizer step takes
//! `--batch × --grad-accum` samples in a seeded order, weights every trained row by 1/(the step's trained rows),
//! clips the global gradient norm, and steps AdamW at the schedule's rate. DIR gets the adapter in PEFT format
//! (and, with `--export-gguf`, as a llama.cpp LoRA GGUF), `loss.csv` and `loss.svg`, `summary.json`, the GPU
//! memory trajectory (`trajectory.csv`, `trajectory.svg`, as `ferrogem profile` writes them), and `checkpoint-N/`
//! directories that `--resume` continues from exactly.

mod checkpoint;
mod outputs;
pub mod plan;
mod train_loop;

use crate::model_arg;
use clap::{Args, ValueEnum};
use ferrogem::lora::Target;
use ferrogem::training::schedule::ScheduleKind;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleArg {
    Constant,
    Linear,
    Cosine,
}

impl From<ScheduleArg> for ScheduleKind {
    fn from(arg: ScheduleArg) -> ScheduleKind {
        match arg {
            ScheduleArg::Constant => ScheduleKind::Constant,
            ScheduleArg::Linear => ScheduleKind::Linear,
            ScheduleArg::Cosine => ScheduleKind::Cosine,
        }
    }
}

/// What shapes the run: a checkpoint resumes only a run with the same values.
#[derive(Args, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunSettings {
    /// LoRA rank of a fresh adapter.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub rank: u32,
    /// LoRA α of a fresh adapter (scale α/rank).
    #[arg(long, default_value_t = 16.0, value_parser = positive_f32)]
    pub alpha: f32,
    /// Projections to train, comma-separated: q,k,v,o,gate,up,down (and Gemma 4's ple_gate, ple_proj).
    #[arg(long, default_value = "q,k,v,o,gate,up,down", value_parser = parse_targets)]
    pub targets: TargetList,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-4, value_parser = non_negative_f32)]
    pub lr: f32,
    /// AdamW's decoupled weight decay (transformers' Trainer default: 0).
    #[arg(long, default_value_t = 0.0, value_parser = non_negative_f32)]
    pub weight_decay: f32,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub grad_accum: u32,
    /// Tokens per sequence; a longer sample is cut to its first seq-len tokens (see --refuse-long).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(2..))]
    pub seq_len: u32,
    /// Linear warmup steps.
    #[arg(long, default_value_t = 0)]
    pub warmup: u32,
    #[arg(long, value_enum, default_value_t = ScheduleArg::Linear)]
    pub schedule: ScheduleArg,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0, value_parser = non_negative_f32)]
    pub clip: f32,
    /// Seeds the fresh adapter and the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args)]
pub struct FinetuneArgs {
    /// A GGUF path or an Ollama model name (the frozen base).
    #[arg(long)]
    pub model: String,
    /// Training data: JSONL of {"text": …}, {"messages": [{"role", "content"}, …]} or {"ids": […]}.
    #[arg(long)]
    pub data: PathBuf,
    /// Evaluation data, same format; its loss is logged every --eval-every steps and at the end.
    #[arg(long)]
    pub eval: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub eval_every: u32,
    /// Optimizer steps (or give --epochs).
    #[arg(long, conflicts_with = "epochs", value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: Option<u32>,
    /// Passes over the data, rounded up to whole steps.
    #[arg(long, value_parser = positive_f32)]
    pub epochs: Option<f32>,
    #[command(flatten)]
    pub settings: RunSettings,
    /// Start from this PEFT adapter (or llama.cpp LoRA GGUF) instead of a fresh one.
    #[arg(long)]
    pub init_adapter: Option<PathBuf>,
    /// Refuse a sample longer than --seq-len instead of cutting it.
    #[arg(long)]
    pub refuse_long: bool,
    /// Where the adapter, logs and checkpoints go.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from a checkpoint directory (DIR/checkpoint-N) of a run with the same settings.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Write a checkpoint every N steps (0: only at the end and on Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: u32,
    /// Also write the adapter as a llama.cpp LoRA GGUF (DIR/adapter.gguf), which Ollama's ADAPTER accepts.
    #[arg(long)]
    pub export_gguf: bool,
    /// Train under a device profile's limits and memory ceiling (built-in name or TOML path).
    #[arg(long)]
    pub device_profile: Option<String>,
    /// Gradient checkpointing: on recomputes each layer's forward in the backward, off keeps every layer's
    /// activations (faster, more memory); auto is off where the device profile's ceiling holds that, else on.
    #[arg(long, value_enum, default_value_t = plan::CheckpointingArg::Auto)]
    pub checkpointing: plan::CheckpointingArg,
    /// Ask only for the WebGPU default limits and no f16/subgroups (what a browser grants).
    #[arg(long, env = "FERROGEM_DOWNLEVEL")]
    pub downlevel: bool,
    /// Time every kernel with GPU timestamps from step 2 on (slower: time the run without it); summary.json and
    /// stderr get the GPU time per kernel per step.
    #[arg(long)]
    pub time_kernels: bool,
}

/// The projections to train, in the order given.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TargetList(pub Vec<String>);

impl TargetList {
    pub fn targets(&self) -> Vec<Target> {
        self.0.iter().filter_map(|name| Target::from_name(name)).collect()
    }
}

pub fn parse_targets(arg: &str) -> Result<TargetList, String> {
    let names: Vec<String> = arg.split(',').map(|s| s.trim().to_owned()).collect();
    if let Some(bad) = names.iter().find(|n| Target::from_name(n).is_none()) {
        return Err(format!("unknown projection `{bad}`; use q,k,v,o,gate,up,down,ple_gate,ple_proj"));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = names.iter().find(|n| !seen.insert(Target::from_name(n))) {
        return Err(format!("`{twice}` is named twice"));
    }
    Ok(TargetList(names))
}

fn positive_f32(arg: &str) -> Result<f32, String> {
    match arg.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{arg}` is not a finite number > 0")),
    }
}

fn non_negative_f32(arg: &str) -> Result<f32, String> {
    match arg.parse::<f32>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{arg}` is not a finite number ≥ 0")),
    }
}

pub fn run(args: FinetuneArgs) -> ferrogem::Result<ExitCode> {
    let model = model_arg::open(Some(&args.model), &[])?;
    train_loop::run(&args, &model)
}
