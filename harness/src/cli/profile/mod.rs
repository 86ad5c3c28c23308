//! `ferrogem profile`: which phase of which model on which device crosses the memory line, and whether the
//! bind-group cache does its job. Loads a model (optionally under a device profile, whose limits and features are
//! all the device is asked for and whose ceiling the accountant enforces), prefills synthetic prompt tokens,
//! decodes by feeding back the argmax, unloads, and writes into `--out`:
//! - `trajectory.csv`: every alloc and free (time, label, category, bytes, running total, phase);
//! - `summary.json`: peaks overall / per category / per phase (and phase × category), bind-group counters per
//!   phase and over steady-state decode, dispatches and submissions per decoded token, growth over decode, the
//!   accountant against wgpu's counters, adapter, granted limits and features, profile, commit, and the memory
//!   plan against the measured peak;
//! - `trajectory.svg`: live bytes by category over time as a stacked area, with phase bands and the ceiling.
//!
//! A ceiling crossed (the plan refused at load, or an allocation refused by the accountant) exits non-zero after
//! printing the phase and the allocation that crossed it; the outputs are written either way. `--plan` prints the
//! plan alone, with no GPU when a device profile gives the limits.
//!
//! `--train` profiles LoRA training instead: load, `--train-steps` AdamW steps of a fresh adapter (`--rank`,
//! `--targets`) on one synthetic sequence of `--seq-len` tokens, unload; against the training memory plan (which
//! refuses a run over the ceiling with what to change, as `finetune` does), with the train phase's steady-state
//! bind-group hit rate and growth per step in summary.json.
//!
//! The measuring itself is `ferrogem_harness::profile`, which the browser runs too; this module adds the device
//! profiles, the plan, the progress bars and the files.

use crate::args::{io_error, resolve_profile, write_trajectory};
use crate::finetune::plan::{CheckpointingArg, training_plan};
use crate::finetune::{TargetList, parse_targets};
use crate::model_arg::{self, KvCacheArg};
use clap::Args;
use ferrogem::atomic_file::write_atomic;
use ferrogem::gpu::{Context, ContextOptions, DeviceProfile, human_bytes};
use ferrogem::models::ModelFile;
use ferrogem::models::TextConfig;
use ferrogem::models::gemma::plan::{Budget, MemoryPlan, PlanLimits, refuse_unless_fits};
use ferrogem::models::gemma::{Checkpointing, DEFAULT_N_CTX, FreshLora, GemmaOptions, fresh_adapter, gguf_has_attn_v};
use ferrogem_harness::profile::{measure, summary};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct ProfileArgs {
    /// A GGUF path or Ollama model name; default: the built-in tiny Gemma 4.
    #[arg(long)]
    pub model: Option<String>,
    /// A LoRA adapter to apply: a PEFT directory or a llama.cpp LoRA GGUF, with an optional scale (default 1);
    /// repeatable, and adapters on the same projection add.
    #[arg(long = "adapter", value_name = "PATH[:SCALE]", value_parser = crate::model_arg::parse_adapter)]
    pub adapters: Vec<crate::model_arg::AdapterArg>,
    /// Synthetic prompt tokens to prefill (deterministic ids).
    #[arg(long, default_value_t = 16)]
    pub prompt_tokens: u32,
    /// Tokens to decode, each the argmax of the previous logits.
    #[arg(long, default_value_t = 16)]
    pub gen_tokens: u32,
    /// Context length the KV cache is sized for (capped at the model's).
    #[arg(long, default_value_t = DEFAULT_N_CTX)]
    pub ctx: u32,
    /// A profile name (iphone-16e, webgpu-default, desktop-8gb, h200: profiles/*.toml, built in) or a path to a
    /// profile TOML. The device is asked for exactly its limits and features; its ceiling is enforced.
    #[arg(long)]
    pub device_profile: Option<String>,
    /// The webgpu-default profile (ignored when --device-profile is given).
    #[arg(long, env = "FERROGEM_DOWNLEVEL")]
    pub downlevel: bool,
    /// KV cache storage; f16 halves its memory and needs SHADER_F16.
    #[arg(long, value_enum, default_value_t = KvCacheArg::F32)]
    pub kv_cache: KvCacheArg,
    /// Print the memory plan (and write plan.json) without running; needs no GPU when a device profile is given.
    /// Without --plan the plan is still printed and compared with the measured peak in summary.json.
    #[arg(long)]
    pub plan: bool,
    /// Profile LoRA training instead of inference (see --train-steps, --seq-len, --rank, --targets).
    #[arg(long)]
    pub train: bool,
    /// AdamW steps of the training profile; the first builds what the others reuse.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub train_steps: u32,
    /// Tokens in the training profile's sequence.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(2..))]
    pub seq_len: u32,
    /// LoRA rank of the training profile's fresh adapter (α = 2·rank).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub rank: u32,
    /// Gradient checkpointing of the training profile, as `finetune --checkpointing`.
    #[arg(long, value_enum, default_value_t = CheckpointingArg::Auto)]
    pub checkpointing: CheckpointingArg,
    /// Projections the training profile trains, as `finetune --targets`.
    #[arg(long, default_value = "q,k,v,o,gate,up,down", value_parser = parse_targets)]
    pub targets: TargetList,
    /// Directory for trajectory.csv, summary.json and trajectory.svg (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: ProfileArgs) -> ferrogem::Result<ExitCode> {
    let profile = match &args.device_profile {
        Some(arg) => Some(resolve_profile(arg)?),
        None => args.downlevel.then(DeviceProfile::webgpu_default),
    };
    let model = model_arg::open(args.model.as_deref(), &args.adapters)?;
    let config = TextConfig::from_gguf(&model.gguf)?;
    let train_adapter = match args.train {
        true => {
            let spec = FreshLora {
                rank: args.rank,
                alpha: 2.0 * args.rank as f32,
                use_rslora: false,
                targets: args.targets.targets(),
                seed: 0,
            };
            Some(fresh_adapter(&config, &gguf_has_attn_v(&model.gguf), &spec)?)
        }
        false => None,
    };
    let options = match train_adapter {
        Some(_) => GemmaOptions::for_training(),
        None => GemmaOptions { n_ctx: args.ctx, kv_cache: args.kv_cache.into(), ..GemmaOptions::default() },
    };
    std::fs::create_dir_all(&args.out).map_err(|e| io_error("create", &args.out, e))?;
    // The plan, and for training the checkpointing it settled on.
    let plan_on = |limits: PlanLimits| -> ferrogem::Result<(MemoryPlan, Option<Checkpointing>)> {
        match &train_adapter {
            Some(adapter) => {
                let (seq_len, on, profile) = (args.seq_len, args.checkpointing, profile.as_ref());
                let p = training_plan("profile", limits, &model, &config, &options, adapter, seq_len, on, profile)?;
                Ok((p.plan, Some(p.checkpointing)))
            }
            None => {
                let mut plan = MemoryPlan::new(&model.gguf, &config, &options, limits)?;
                plan.add_adapters(&model.gguf, &config, &model.adapters);
                Ok((plan, None))
            }
        }
    };

    if args.plan {
        let limits = match &profile {
            Some(p) => PlanLimits::from_wgpu(&p.wgpu_limits()),
            None => PlanLimits::from_caps(open_context(None)?.caps()),
        };
        return plan_only(&args, &model, &config, &options, profile.as_ref(), limits, plan_on);
    }
    let ctx = open_context(profile.clone())?;
    eprintln!("adapter: {}", ctx.caps().summary());
    let (plan, checkpointing) = plan_on(PlanLimits::from_caps(ctx.caps()))?;
    let train = match (train_adapter, checkpointing) {
        (Some(adapter), Some(checkpointing)) => {
            Some(measure::TrainSettings { adapter, seq_len: args.seq_len, steps: args.train_steps, checkpointing })
        }
        _ => None,
    };
    print_plan(&model.display, &plan, profile.as_ref());
    let settings = measure::Settings { prompt_tokens: args.prompt_tokens, gen_tokens: args.gen_tokens, options, train };
    let load = || model_arg::load_with_progress(&ctx, &model, options);
    let unit = if args.train { "training {bar:30} {pos}/{len} steps" } else { "decoding {bar:30} {pos}/{len} tokens" };
    let mut steps = None;
    let mut on_token = |done: u32, total: u32| {
        let bar = steps.get_or_insert_with(|| steps_bar(unit, total));
        if done > 0 {
            bar.inc(1);
        }
        if done == total {
            bar.finish_and_clear();
        }
    };
    let measured = pollster::block_on(measure::run(&ctx, &config, &settings, load, &mut on_token));
    let summary = summary::Summary::new(&ctx, &model.display, profile.as_ref(), &settings, &plan, &measured);
    write_outputs(&args.out, &ctx, &summary)?;
    Ok(report(&summary))
}

/// Made when decoding or training starts (`on_token(0, n)`), so that its rate counts those steps alone.
fn steps_bar(template: &str, steps: u32) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(&format!("{template} ({{per_sec}})")) {
        bar.set_style(style);
    }
    bar
}

fn open_context(profile: Option<DeviceProfile>) -> ferrogem::Result<Context> {
    Ok(Context::new_blocking(ContextOptions { profile, ..ContextOptions::from_env() })?)
}

/// `plan_on` makes the run's plan (training's refuses one over the ceiling, with what to change).
fn plan_only(
    args: &ProfileArgs,
    model: &ModelFile,
    config: &TextConfig,
    options: &GemmaOptions,
    profile: Option<&DeviceProfile>,
    limits: PlanLimits,
    plan_on: impl Fn(PlanLimits) -> ferrogem::Result<(MemoryPlan, Option<Checkpointing>)>,
) -> ferrogem::Result<ExitCode> {
    let plan = match plan_on(limits) {
        Ok((plan, _)) => plan,
        Err(e) => {
            println!("CEILING: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    print_plan(&model.display, &plan, profile);
    let path = args.out.join("plan.json");
    let json = serde_json::json!({ "model": model.display, "profile": profile, "limits": limits, "plan": plan,
        "total_bytes": plan.total_bytes(), "commit": env!("FERROGEM_COMMIT") });
    let text = serde_json::to_string_pretty(&json).map_err(|e| io_error("serialize", &path, e))?;
    write_atomic(&path, text.as_bytes())?;
    let fits = match profile.and_then(|p| p.ceiling_bytes.map(|c| (p, c))) {
        Some((p, ceiling_bytes)) => {
            let room = Budget { profile: &p.name, ceiling_bytes, live_bytes: 0 };
            refuse_unless_fits(&plan, &model.gguf, config, options, limits, room)
        }
        None => Ok(()),
    };
    match fits {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            println!("CEILING: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_plan(model: &str, plan: &MemoryPlan, profile: Option<&DeviceProfile>) {
    let s = &plan.sizing;
    println!(
        "memory plan for {model}: context {} positions, {}-token chunks, {} logit rows, {} KV cache",
        s.n_ctx, s.max_chunk, s.logit_rows, plan.kv_cache
    );
    for line in &plan.lines {
        let buffers = line.buffers.map_or("-".to_owned(), |b| b.to_string());
        println!(
            "  {:<9} {:>14} bytes {:>11}  {buffers:>5} buffers  {}",
            line.category.name(),
            line.bytes,
            human_bytes(line.bytes),
            line.what
        );
    }
    for (category, bytes) in plan.by_category().into_iter().filter(|(_, b)| *b > 0) {
        println!("  total {:<9} {:>14} bytes {:>11}", category.name(), bytes, human_bytes(bytes));
    }
    let total = plan.total_bytes();
    println!("  planned peak    {total:>14} bytes {:>11}", human_bytes(total));
    println!(
        "  left on the host: PLE table {}, vision/audio towers {}",
        human_bytes(plan.ple_table_bytes),
        human_bytes(plan.skipped_tower_bytes)
    );
    if let Some((name, ceiling)) = profile.and_then(|p| p.ceiling_bytes.map(|c| (&p.name, c))) {
        println!(
            "  ceiling of {name}: {ceiling} bytes ({}), {:.1}% used by the plan",
            human_bytes(ceiling),
            100.0 * total as f64 / ceiling as f64
        );
    }
}

fn write_outputs(out: &Path, ctx: &Context, summary: &summary::Summary) -> ferrogem::Result<()> {
    let json_path = out.join("summary.json");
    let text = serde_json::to_string_pretty(summary).map_err(|e| io_error("serialize", &json_path, e))?;
    write_atomic(&json_path, text.as_bytes())?;
    let (csv_path, svg_path) = write_trajectory(out, ctx, &summary.model, summary.profile.as_ref())?;
    eprintln!("wrote {}, {}, {}", csv_path.display(), json_path.display(), svg_path.display());
    Ok(())
}

/// Prints the headline numbers and picks the exit code: non-zero when the run failed or a ceiling was crossed.
fn report(s: &summary::Summary) -> ExitCode {
    println!("peak tracked: {} bytes ({})", s.peak_bytes, human_bytes(s.peak_bytes));
    for (phase, bytes) in &s.peak_by_phase {
        println!("  peak during {phase:<8} {bytes:>14} bytes {:>11}", human_bytes(*bytes));
    }
    if let Some(p) = &s.plan_vs_measured {
        println!(
            "plan vs measured peak: {} vs {} bytes ({:+.2}%)",
            p.planned_bytes,
            p.measured_peak_bytes,
            100.0 * p.relative_error
        );
    }
    if let Some(d) = &s.decode {
        println!(
            "decode: {} steps, {:.1} dispatches and {:.2} submissions per token; steady-state bind-group hit rate {:.4} \
             (steps 2..{}); live buffers {} → {}, live bytes {} → {}",
            d.steps,
            d.dispatches_per_token,
            d.submissions_per_token,
            d.steady_state.hit_rate,
            d.steps,
            d.first_step.live_buffers,
            d.last_step.live_buffers,
            d.first_step.live_bytes,
            d.last_step.live_bytes
        );
    }
    if let Some(t) = &s.train {
        let losses: Vec<String> = t.loss_by_step.iter().map(|l| format!("{l:.4}")).collect();
        println!(
            "train: {} steps of {} tokens, rank {} on {}; loss {}; steady-state bind-group hit rate {:.4} (steps 2..{}); \
             live buffers {:?}, live bytes {:?}",
            t.steps,
            t.seq_len,
            t.rank,
            t.targets.join(","),
            losses.join(" → "),
            t.steady_state.hit_rate,
            t.steps,
            t.live_buffers_by_step,
            t.live_bytes_by_step
        );
    }
    for check in &s.counters {
        println!(
            "accountant vs wgpu counters ({}): {} buffers / {} bytes vs {} / {}: {}",
            check.when,
            check.accountant_buffers,
            check.accountant_bytes,
            check.wgpu_buffers,
            check.wgpu_bytes,
            if check.agree { "agree" } else { "DISAGREE" }
        );
    }
    let mut failed = false;
    if let Some(b) = &s.ceiling.breach {
        println!("CEILING EXCEEDED in phase {} by allocation `{}`: {b}", b.phase.name(), b.label);
        failed = true;
    }
    if let Some(e) = &s.error {
        println!("FAILED: {e}");
        failed = true;
    }
    if s.counters.iter().any(|c| !c.agree) {
        failed = true;
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
