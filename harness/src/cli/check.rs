//! `ferrogem check`: the main job. With no subcommand it runs every check on the built-in tiny Gemma 4 model:
//! shader validation, the op registry, the model's weights through the GPU and the memory accountant, and the
//! model on the GPU against the CPU reference and its HF golden.
//! `check ops` runs the op registry alone, with filters, perf mode and JSON/CSV output. Every line is one case;
//! the closing line is `N passed, M failed, K not supported`; a failure, or no case run, exits non-zero.

use crate::args::io_error;
use crate::model_arg;
use clap::{Args, Subcommand};
use ferrogem::gpu::kernels::validate;
use ferrogem::gpu::{Context, ContextOptions};
use ferrogem_harness::cases::runner::{Mode, Row, RunOptions, measure_read_bandwidth, run_case};
use ferrogem_harness::cases::{self};
use ferrogem_harness::results::{self, Environment};
use ferrogem_harness::{load_check, model_check};
use regex::Regex;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct CheckArgs {
    #[command(subcommand)]
    pub what: Option<CheckWhat>,
    #[command(flatten)]
    pub common: CommonArgs,
    /// A GGUF path or Ollama model name to load; default: the built-in tiny Gemma 4.
    #[arg(long)]
    pub model: Option<String>,
}

#[derive(Subcommand)]
pub enum CheckWhat {
    /// The op registry: every kernel case against its candle-core reference (or timed, in perf mode).
    Ops(OpsArgs),
    /// A model on the GPU against the CPU reference: per-layer intermediates, logits, teacher-forced decoding.
    Model(ModelArgs),
}

#[derive(Args, Clone)]
pub struct CommonArgs {
    /// Ask only for the WebGPU default limits and no f16/subgroups (what a browser grants).
    #[arg(long, env = "FERROGEM_DOWNLEVEL", global = true)]
    pub downlevel: bool,
    /// Run only cases whose name matches this regular expression.
    #[arg(long, global = true)]
    pub filter: Option<String>,
    /// Decline cases whose largest tensor has more elements than this (software adapters are slow).
    #[arg(long, default_value_t = 1 << 24, global = true)]
    pub max_elements: u64,
    /// Fail unless at least this many cases ran (a gate against a registry that silently shrank).
    #[arg(long, default_value_t = 1, global = true)]
    pub min_cases: usize,
}

#[derive(Args)]
pub struct OpsArgs {
    /// test: every case against its CPU reference; perf: every case timed; grad: every backward kernel against
    /// finite differences and autograd.
    #[arg(long, value_enum, default_value_t = Mode::Test)]
    pub mode: Mode,
    /// Write every row, with the adapter and commit, as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write every row, with the adapter and commit, as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

/// Teacher-forced tokens in the main job's model check: enough to cross the tiny model's sliding window of 8.
const MODEL_CHECK_TOKENS: usize = 8;

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
    declined: usize,
}

impl Tally {
    fn add(&mut self, name: &str, status: &str, line: &str) {
        println!("{line}");
        match status {
            "ok" => self.passed += 1,
            "fail" => self.failed.push(name.to_owned()),
            _ => self.declined += 1,
        }
    }

    /// Prints the closing lines and picks the exit code.
    fn finish(self, min_cases: usize) -> ExitCode {
        for name in &self.failed {
            println!("re-run: --filter '^{}$'", regex::escape(name));
        }
        println!("{} passed, {} failed, {} not supported", self.passed, self.failed.len(), self.declined);
        let ran = self.passed + self.failed.len();
        if ran < min_cases.max(1) {
            eprintln!("error: {ran} cases ran, fewer than the {} required", min_cases.max(1));
            return ExitCode::FAILURE;
        }
        if self.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    }
}

pub fn run(args: CheckArgs) -> ferrogem::Result<ExitCode> {
    let filter = match &args.common.filter {
        Some(f) => Some(
            Regex::new(f).map_err(|e| ferrogem::Error::Unsupported { op: "--filter".into(), reason: e.to_string() })?,
        ),
        None => None,
    };
    let selected = |name: &str| filter.as_ref().is_none_or(|re| re.is_match(name));
    let options = ContextOptions { downlevel: args.common.downlevel, ..ContextOptions::from_env() };
    let ctx = Context::new_blocking(options)?;
    println!("adapter: {}", ctx.caps().summary());
    let mut tally = Tally::default();

    match args.what {
        Some(CheckWhat::Ops(ops)) => {
            let read_gb_per_s = match ops.mode {
                Mode::Perf => Some(measure_read_bandwidth(&ctx)?),
                Mode::Test | Mode::Grad => None,
            };
            if let Some(bw) = read_gb_per_s {
                println!("read bandwidth (stream_read): {bw:.1} GB/s");
            }
            let run_options = RunOptions { mode: ops.mode, max_elements: args.common.max_elements, read_gb_per_s };
            let rows = run_ops(&ctx, &selected, &run_options, &mut tally);
            let env = Environment::new(ctx.caps());
            if let Some(path) = &ops.json {
                results::write_json(path, &env, read_gb_per_s, &rows).map_err(|e| io_error("write", path, e))?;
            }
            if let Some(path) = &ops.csv {
                results::write_csv(path, &env, &rows).map_err(|e| io_error("write", path, e))?;
            }
        }
        Some(CheckWhat::Model(model)) => return run_model_check(&ctx, &model),
        None => {
            for v in ferrogem::ops::all_kernel_variants()? {
                let name = format!("shader({})", v.name);
                if selected(&name) {
                    match validate(&v) {
                        Ok(_) => tally.add(&name, "ok", &format!("{name}: OK naga")),
                        Err(e) => tally.add(&name, "fail", &format!("{name}: FAIL {e}")),
                    }
                }
            }
            let run_options =
                RunOptions { mode: Mode::Test, max_elements: args.common.max_elements, read_gb_per_s: None };
            run_ops(&ctx, &selected, &run_options, &mut tally);
            let model = model_arg::open(args.model.as_deref(), &[])?;
            let name = format!("load({})", model.display);
            if selected(&name) {
                match load_check::round_trip(&ctx, &model) {
                    Ok(detail) => tally.add(&name, "ok", &format!("{name}: OK {detail}")),
                    Err(reason) => tally.add(&name, "fail", &format!("{name}: FAIL {reason}")),
                }
            }
            // The model on the GPU against the CPU reference (and the HF golden beside a golden file).
            let name = format!("model({})", model.display);
            if selected(&name) {
                let (passed, failed) = model_check::check_counts(&ctx, &model, MODEL_CHECK_TOKENS, None);
                tally.passed += passed;
                if failed > 0 {
                    tally.failed.push(name);
                }
            }
        }
    }
    let mem = ctx.memory();
    let stats = ctx.bind_cache_stats();
    let (hits, lookups) = stats.by_phase.iter().fold((0, 0), |(h, l), (_, c)| (h + c.hits, l + c.hits + c.misses));
    println!(
        "memory: peak {} bytes tracked, {} live at the end; bind groups: {hits} hits in {lookups} lookups",
        mem.peak_bytes, mem.live_bytes
    );
    Ok(tally.finish(args.common.min_cases))
}

fn run_ops(ctx: &Context, selected: &dyn Fn(&str) -> bool, options: &RunOptions, tally: &mut Tally) -> Vec<Row> {
    let mut rows = Vec::new();
    for case in cases::all_cases() {
        let name = case.name();
        if !selected(&name) {
            continue;
        }
        let row = pollster::block_on(run_case(ctx, case.as_ref(), options));
        if row.status == "no_grad" {
            continue;
        }
        tally.add(&name, &row.status, &row.line());
        rows.push(row);
    }
    rows
}

#[derive(Args)]
pub struct ModelArgs {
    /// A GGUF path or an Ollama model name.
    pub model: String,
    /// A LoRA adapter to apply: a PEFT directory or a llama.cpp LoRA GGUF, with an optional scale (default 1);
    /// repeatable, and adapters on the same projection add.
    #[arg(long = "adapter", value_name = "PATH[:SCALE]", value_parser = crate::model_arg::parse_adapter)]
    pub adapters: Vec<crate::model_arg::AdapterArg>,
    /// Generated tokens to compare teacher-forced (the reference's greedy continuation, fed to the GPU).
    #[arg(long, default_value_t = 8)]
    pub tokens: usize,
    /// Prompt token ids, comma-separated, instead of the golden or the fixed prompt.
    #[arg(long)]
    pub prompt: Option<String>,
}

fn run_model_check(ctx: &Context, args: &ModelArgs) -> ferrogem::Result<ExitCode> {
    let model = model_arg::open(Some(&args.model), &args.adapters)?;
    let (passed, failed) = model_check::check_counts(ctx, &model, args.tokens, args.prompt.as_deref());
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
