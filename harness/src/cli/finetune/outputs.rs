//! What a run leaves in DIR: the adapter (PEFT, and the llama.cpp GGUF on request), `loss.csv` (every step's loss
//! before its update, and each eval), `loss.svg`, and `summary.json`, each written whole or not at all (`atomic_file`).

use super::FinetuneArgs;
use crate::args::io_error;
use ferrogem::atomic_file::write_atomic;
use ferrogem::gpu::{Context, Phase, human_bytes};
use ferrogem::lora::{LoraAdapter, write_lora_gguf, write_peft_dir};
use ferrogem::models::gemma::Checkpointing;
use ferrogem::models::gemma::plan::MemoryPlan;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Eval,
}

/// A train row is step `step`'s loss before its update at rate `lr`; an eval row is the loss after `step` steps.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossRow {
    pub step: u32,
    pub split: Split,
    pub loss: f64,
    pub lr: f32,
}

/// The adapter in PEFT format in `out` (so `--adapter DIR` loads it) and, given an architecture, as
/// `out/adapter.gguf`.
pub fn write_adapter(out: &Path, adapter: &LoraAdapter, base: &str, gguf_arch: Option<&str>) -> ferrogem::Result<()> {
    write_peft_dir(adapter, out, Some(base))?;
    if let Some(arch) = gguf_arch {
        write_lora_gguf(adapter, &out.join("adapter.gguf"), arch)?;
    }
    Ok(())
}

pub fn write_logs(out: &Path, history: &[LossRow]) -> ferrogem::Result<()> {
    let path = out.join("loss.csv");
    let mut csv = csv::Writer::from_writer(Vec::new());
    for row in history {
        csv.serialize(row).map_err(|e| io_error("serialize", &path, e))?;
    }
    let bytes = csv.into_inner().map_err(|e| io_error("serialize", &path, e))?;
    write_atomic(&path, &bytes)?;
    write_atomic(&out.join("loss.svg"), loss_svg(history).as_bytes())
}

/// Train and eval loss against the step, one line each.
fn loss_svg(history: &[LossRow]) -> String {
    let split =
        |which: Split| history.iter().filter(|r| r.split == which).map(|r| (r.step, r.loss)).collect::<Vec<_>>();
    ferrogem_harness::plot::loss::loss_svg(&split(Split::Train), &split(Split::Eval))
}

#[derive(serde::Serialize)]
pub struct Summary {
    model: String,
    adapter: String,
    settings: super::RunSettings,
    /// Whether the backward recomputed each layer (`--checkpointing` as the plan settled it).
    gradient_checkpointing: bool,
    steps: u32,
    first_loss: Option<f64>,
    last_loss: Option<f64>,
    last_eval_loss: Option<f64>,
    tokens: u64,
    seconds: f64,
    tokens_per_s: f64,
    peak_gpu_bytes: u64,
    peak_by_category: Vec<(String, u64)>,
    /// The memory plan's total (load and training) and measured peak ÷ plan.
    planned_bytes: u64,
    peak_over_plan: f64,
    planned_by_category: Vec<(String, u64)>,
    /// Bind-group cache hits over lookups in the train phase after this process's first step (the first creates
    /// what every later step reuses).
    bind_group_hit_rate_after_step_1: f64,
    /// With `--time-kernels`: GPU time per kernel per step (steps 2 on), largest first.
    pub kernels: Vec<KernelStepTime>,
    commit: &'static str,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        args: &FinetuneArgs,
        model: &str,
        ctx: &Context,
        plan: &MemoryPlan,
        checkpointing: Checkpointing,
        history: &[LossRow],
        steps: u32,
        tokens: u64,
        seconds: f64,
    ) -> Summary {
        let train = || history.iter().filter(|r| r.split == Split::Train);
        let memory = ctx.memory();
        Summary {
            model: model.to_owned(),
            adapter: ctx.caps().summary(),
            settings: args.settings.clone(),
            gradient_checkpointing: checkpointing == Checkpointing::PerLayer,
            steps,
            first_loss: train().next().map(|r| r.loss),
            last_loss: train().next_back().map(|r| r.loss),
            last_eval_loss: history.iter().rfind(|r| r.split == Split::Eval).map(|r| r.loss),
            tokens,
            seconds,
            tokens_per_s: tokens as f64 / seconds.max(1e-9),
            peak_gpu_bytes: memory.peak_bytes,
            peak_by_category: memory.by_category.iter().map(|(c, _, peak)| (c.name().to_owned(), *peak)).collect(),
            planned_bytes: plan.total_bytes(),
            peak_over_plan: memory.peak_bytes as f64 / plan.total_bytes().max(1) as f64,
            planned_by_category: plan.by_category().iter().map(|(c, b)| (c.name().to_owned(), *b)).collect(),
            bind_group_hit_rate_after_step_1: ctx
                .bind_cache_stats()
                .by_phase
                .iter()
                .find(|(phase, _)| *phase == Phase::Train)
                .map_or(0.0, |(_, counters)| counters.hit_rate()),
            kernels: Vec::new(),
            commit: env!("FERROGEM_COMMIT"),
        }
    }

    pub fn line(&self) -> String {
        let mut text = self.totals_line();
        let step_ms: f64 = self.kernels.iter().map(|k| k.ms_per_step).sum();
        for k in self.kernels.iter().take(12) {
            let share = 100.0 * k.ms_per_step / step_ms.max(1e-12);
            text += &format!(
                "\n  {:>9.3} ms/step {share:>5.1}%  {:>6.1} dispatches/step  {}",
                k.ms_per_step, k.dispatches_per_step, k.kernel
            );
        }
        text
    }

    fn totals_line(&self) -> String {
        let loss = |l: Option<f64>| l.map_or("-".to_owned(), |l| format!("{l:.4}"));
        format!(
            "trained {} steps in {:.1} s ({:.0} tok/s): loss {} → {} (eval {}), GPU peak {} ({:.1}% of the plan's {}), \
             bind groups {:.2}% hits after step 1",
            self.steps,
            self.seconds,
            self.tokens_per_s,
            loss(self.first_loss),
            loss(self.last_loss),
            loss(self.last_eval_loss),
            human_bytes(self.peak_gpu_bytes),
            100.0 * self.peak_over_plan,
            human_bytes(self.planned_bytes),
            100.0 * self.bind_group_hit_rate_after_step_1
        )
    }
}

pub fn write_summary(out: &Path, summary: &Summary) -> ferrogem::Result<()> {
    let path = out.join("summary.json");
    let text = serde_json::to_string_pretty(summary).map_err(|e| io_error("serialize", &path, e))?;
    write_atomic(&path, text.as_bytes())
}

/// One kernel's GPU time in an average timed step.
#[derive(serde::Serialize)]
pub struct KernelStepTime {
    kernel: String,
    dispatches_per_step: f64,
    ms_per_step: f64,
}

pub fn kernel_times(times: &ferrogem::gpu::GpuTimes, steps: u32) -> Vec<KernelStepTime> {
    crate::bench::print::by_kernel(times)
        .into_iter()
        .map(|k| KernelStepTime {
            kernel: k.name,
            dispatches_per_step: k.dispatches as f64 / steps as f64,
            ms_per_step: k.gpu_ns / 1e6 / steps as f64,
        })
        .collect()
}
