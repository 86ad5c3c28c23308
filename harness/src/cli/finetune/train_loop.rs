//! The run: data, device, model, adapter and trainer; then the steps, with progress on stderr, eval, checkpoints,
//! and Ctrl-C (a checkpoint, then exit 130; a second Ctrl-C exits at once).

use super::checkpoint::{self, Checkpoint};
use super::outputs::{self, LossRow, Split};
use super::plan;
use super::{FinetuneArgs, RunSettings};
use crate::args::{io_error, resolve_profile, write_trajectory};
use crate::model_arg;
use ferrogem::chat::ChatTemplate;
use ferrogem::gguf::GgufFile;
use ferrogem::gpu::{Context, ContextOptions, DeviceProfile};
use ferrogem::lora::LoraAdapter;
use ferrogem::models::gemma::plan::PlanLimits;
use ferrogem::models::gemma::{FreshLora, GemmaOptions, LoraTrainer, fresh_adapter, gguf_has_attn_v};
use ferrogem::models::{ModelFile, TextConfig};
use ferrogem::ops::adamw::AdamwConfig;
use ferrogem::tokenizer::Tokenizer;
use ferrogem::training::data::{DataOptions, DataPosition, Dataset};
use ferrogem::training::run::{TrainRun, eval_loss};
use ferrogem::training::schedule::LrSchedule;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it.
const EXIT_INTERRUPTED: u8 = 130;
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn unsupported(reason: String) -> ferrogem::Error {
    ferrogem::Error::Unsupported { op: "finetune".into(), reason }
}

pub fn run(args: &FinetuneArgs, model: &ModelFile) -> ferrogem::Result<ExitCode> {
    let s = &args.settings;
    let config = TextConfig::from_gguf(&model.gguf)?;
    let tokenizer = Tokenizer::from_gguf(&model.gguf)?;
    let template = ChatTemplate::for_model(&model.gguf)?;
    let options = DataOptions { vocab_size: config.vocab, seq_len: s.seq_len, refuse_long: args.refuse_long };
    let read = |path: &Path| -> ferrogem::Result<Dataset> {
        let text = std::fs::read_to_string(path).map_err(|e| io_error("read", path, e))?;
        Dataset::from_jsonl(&text, &tokenizer, template, &options)
            .map_err(|e| unsupported(format!("{}: {e}", path.display())))
    };
    let data = read(&args.data)?;
    let eval = args.eval.as_deref().map(read).transpose()?;
    if data.truncated > 0 {
        eprintln!("{} of {} samples cut to --seq-len {}", data.truncated, data.samples.len(), s.seq_len);
    }
    let per_step = (s.batch * s.grad_accum) as usize;
    let total_steps = match (args.steps, args.epochs) {
        (Some(steps), _) => steps,
        (None, Some(epochs)) => ((epochs as f64 * data.samples.len() as f64) / per_step as f64).ceil().max(1.0) as u32,
        (None, None) => return Err(unsupported("give --steps or --epochs".into())),
    };
    std::fs::create_dir_all(&args.out).map_err(|e| io_error("create", &args.out, e))?;

    let profile = match &args.device_profile {
        Some(arg) => Some(resolve_profile(arg)?),
        None => args.downlevel.then(DeviceProfile::webgpu_default),
    };
    let resumed = args.resume.as_deref().map(checkpoint::load).transpose()?;
    if let Some(c) = &resumed
        && c.settings != *s
    {
        return Err(unsupported(format!(
            "the checkpoint was made with other settings ({:?}) than this run's ({s:?})",
            c.settings
        )));
    }
    let adapter = match (&resumed, &args.init_adapter) {
        (Some(c), _) => c.state.adapter.clone(),
        (None, Some(path)) => ferrogem::lora::open(path)?,
        (None, None) => fresh(&config, &model.gguf, s)?,
    };
    let ctx = Context::new_blocking(ContextOptions {
        profile: profile.clone(),
        downlevel: args.downlevel,
        ..ContextOptions::from_env()
    })?;
    eprintln!("adapter: {}", ctx.caps().summary());
    let gemma_options = GemmaOptions::for_training();
    let limits = PlanLimits::from_caps(ctx.caps());
    let (seq_len, profile) = (s.seq_len, profile.as_ref());
    let checkpointing = args.checkpointing;
    let plan::TrainingPlan { plan, checkpointing } = plan::training_plan(
        "finetune",
        limits,
        model,
        &config,
        &gemma_options,
        &adapter,
        seq_len,
        checkpointing,
        profile,
    )?;
    let mut gemma = model_arg::load_with_progress(&ctx, model, gemma_options)?;
    let mut trainer = LoraTrainer::new(&gemma, &adapter, 1.0, s.seq_len, checkpointing)?;
    let (mut position, mut history) = (DataPosition::default(), Vec::new());
    if let Some(c) = resumed {
        trainer.restore(&gemma, &c.state)?;
        (position, history) = (c.position, c.history);
    }
    let schedule = LrSchedule::new(s.schedule.into(), s.lr, s.warmup, total_steps)?;
    let adamw = AdamwConfig { weight_decay: s.weight_decay, ..AdamwConfig::default() };
    let mut run = TrainRun::new(per_step, s.seed, schedule, adamw, (s.clip > 0.0).then_some(s.clip));
    run.position = position;
    install_interrupt_handler();
    eprintln!(
        "training steps {}..{total_steps} over {} samples ({per_step} per step), Ctrl-C writes a checkpoint",
        trainer.steps() + 1,
        data.samples.len()
    );

    let first_step = trainer.steps();
    let bar = progress(total_steps, first_step);
    let started = Instant::now();
    let mut tokens_seen = 0u64;
    while trainer.steps() < total_steps {
        let report = pollster::block_on(run.step(&mut trainer, &mut gemma, &data))?;
        let (loss, lr) = (report.loss, report.lr);
        tokens_seen += report.tokens;
        history.push(LossRow { step: report.step, split: Split::Train, loss, lr });
        let done = trainer.steps();
        if done == first_step + 1 {
            ctx.reset_bind_cache_counters();
            if args.time_kernels {
                ctx.start_gpu_timing()?;
            }
        }
        let tokens_per_s = tokens_seen as f64 / started.elapsed().as_secs_f64();
        bar.set_position(done as u64);
        bar.set_message(format!("loss {loss:.4} lr {lr:.2e} {tokens_per_s:.0} tok/s"));
        if let Some(eval) = &eval
            && args.eval_every > 0
            && done % args.eval_every == 0
            && done < total_steps
        {
            let loss = pollster::block_on(eval_loss(&trainer, &mut gemma, eval))?;
            history.push(LossRow { step: done, split: Split::Eval, loss, lr });
        }
        if args.checkpoint_every > 0 && done % args.checkpoint_every == 0 && done < total_steps {
            checkpoint::save(&args.out, &Checkpoint::read(&trainer, &gemma, s, run.position, &history)?)?;
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            bar.abandon();
            let dir = checkpoint::save(&args.out, &Checkpoint::read(&trainer, &gemma, s, run.position, &history)?)?;
            outputs::write_logs(&args.out, &history)?;
            write_trajectory(&args.out, &ctx, &model.display, profile)?;
            eprintln!("interrupted after step {done}: {} (continue with --resume)", dir.display());
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
    }
    bar.finish_and_clear();
    if let Some(eval) = &eval {
        let (loss, lr) = (pollster::block_on(eval_loss(&trainer, &mut gemma, eval))?, run.schedule.lr(total_steps));
        history.push(LossRow { step: total_steps, split: Split::Eval, loss, lr });
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let kernels = match args.time_kernels && total_steps > first_step + 1 {
        true => {
            ctx.stop_gpu_timing();
            outputs::kernel_times(&ctx.take_gpu_times(), total_steps - first_step - 1)
        }
        false => Vec::new(),
    };
    let final_state = Checkpoint::read(&trainer, &gemma, s, run.position, &history)?;
    checkpoint::save(&args.out, &final_state)?;
    let arch = config.arch.gguf_name();
    outputs::write_adapter(&args.out, &final_state.state.adapter, &model.display, args.export_gguf.then_some(arch))?;
    outputs::write_logs(&args.out, &history)?;
    write_trajectory(&args.out, &ctx, &model.display, profile)?;
    let mut summary = outputs::Summary::new(
        args,
        &model.display,
        &ctx,
        &plan,
        checkpointing,
        &history,
        total_steps,
        tokens_seen,
        elapsed_s,
    );
    summary.kernels = kernels;
    outputs::write_summary(&args.out, &summary)?;
    eprintln!("{}", summary.line());
    Ok(ExitCode::SUCCESS)
}

fn fresh(config: &TextConfig, gguf: &GgufFile, s: &RunSettings) -> ferrogem::Result<LoraAdapter> {
    let spec =
        FreshLora { rank: s.rank, alpha: s.alpha, use_rslora: false, targets: s.targets.targets(), seed: s.seed };
    fresh_adapter(config, &gguf_has_attn_v(gguf), &spec)
}

fn progress(total_steps: u32, done: u32) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total_steps as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("training {bar:30} step {pos}/{len} {msg} ETA {eta}") {
        bar.set_style(style);
    }
    bar.set_position(done as u64);
    bar
}

/// Ctrl-C asks the loop to stop after the current step; a second one exits at once.
fn install_interrupt_handler() {
    let installed = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(EXIT_INTERRUPTED as i32);
        }
    });
    if let Err(e) = installed {
        eprintln!("warning: Ctrl-C will not checkpoint before exiting: {e}");
    }
}
