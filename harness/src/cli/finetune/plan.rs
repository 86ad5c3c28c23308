//! The memory plan of a training run: the model's load plan plus the trainer's buffers, printed before anything
//! is allocated; it also settles gradient checkpointing (`--checkpointing auto` keeps every layer's activations
//! where a device profile's ceiling holds them). Under a ceiling a run that does not fit is refused with the
//! longest `--seq-len` that would, and what else to change.

use clap::ValueEnum;
use ferrogem::gpu::{DeviceProfile, human_bytes};
use ferrogem::lora::LoraAdapter;
use ferrogem::models::gemma::plan::{MemoryPlan, PlanLimits};
use ferrogem::models::gemma::{Checkpointing, GemmaOptions};
use ferrogem::models::{ModelFile, TextConfig};

/// `--checkpointing`: whether the backward recomputes each layer's forward (on) or the forward keeps every
/// layer's intermediates (off: a layer's forward less per layer, at their memory); auto keeps them when a device
/// profile's ceiling holds the run that way, and recomputes otherwise (without a profile the device's memory is
/// unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckpointingArg {
    Auto,
    On,
    Off,
}

/// A run's plan and the checkpointing it settled on.
pub struct TrainingPlan {
    pub plan: MemoryPlan,
    pub checkpointing: Checkpointing,
}

/// `op` names the command in the refusal; `limits` are the device's (or the profile's, with no device).
#[allow(clippy::too_many_arguments)]
pub fn training_plan(
    op: &str,
    limits: PlanLimits,
    model: &ModelFile,
    config: &TextConfig,
    options: &GemmaOptions,
    adapter: &LoraAdapter,
    seq_len: u32,
    checkpointing: CheckpointingArg,
    profile: Option<&DeviceProfile>,
) -> ferrogem::Result<TrainingPlan> {
    let plan_for = |seq_len: u32, checkpointing: Checkpointing| -> ferrogem::Result<MemoryPlan> {
        let mut plan = MemoryPlan::new(&model.gguf, config, options, limits)?;
        plan.add_training(&model.gguf, config, adapter, seq_len, checkpointing, limits)?;
        Ok(plan)
    };
    let ceiling = profile.and_then(|p| Some((p, p.ceiling_bytes?)));
    let checkpointing = match (checkpointing, ceiling) {
        (CheckpointingArg::On, _) | (CheckpointingArg::Auto, None) => Checkpointing::PerLayer,
        (CheckpointingArg::Off, _) => Checkpointing::Off,
        (CheckpointingArg::Auto, Some((_, ceiling))) => {
            match plan_for(seq_len, Checkpointing::Off)?.total_bytes() <= ceiling {
                true => Checkpointing::Off,
                false => Checkpointing::PerLayer,
            }
        }
    };
    let plan = plan_for(seq_len, checkpointing)?;
    let parts: Vec<String> = plan
        .by_category()
        .iter()
        .filter(|(_, b)| *b > 0)
        .map(|(c, b)| format!("{} {}", c.name(), human_bytes(*b)))
        .collect();
    let recompute = match checkpointing {
        Checkpointing::PerLayer => "on: the backward recomputes each layer",
        Checkpointing::Off => "off: the forward keeps every layer's activations",
    };
    eprintln!(
        "memory plan: {} ({}); gradient checkpointing {recompute}",
        human_bytes(plan.total_bytes()),
        parts.join(", ")
    );
    let Some((profile, ceiling)) = ceiling else { return Ok(TrainingPlan { plan, checkpointing }) };
    if plan.total_bytes() <= ceiling {
        return Ok(TrainingPlan { plan, checkpointing });
    }
    // The plan grows with the sequence, so the longest that fits is a binary search.
    let (mut lo, mut hi) = (1u32, seq_len);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if plan_for(mid, checkpointing)?.total_bytes() <= ceiling { lo = mid } else { hi = mid }
    }
    let shorter = match plan_for(lo, checkpointing)?.total_bytes() <= ceiling {
        true => format!("--seq-len {lo} or less"),
        false => "no --seq-len fits".into(),
    };
    let also = match checkpointing {
        Checkpointing::Off => "; or --checkpointing on (or auto)",
        Checkpointing::PerLayer => "",
    };
    Err(ferrogem::Error::Unsupported {
        op: op.into(),
        reason: format!(
            "the run's memory plan ({}) is over device profile `{}`'s ceiling of {}: {shorter}; or a smaller \
             --rank, fewer --targets, or a smaller quant of the base{also}",
            human_bytes(plan.total_bytes()),
            profile.name,
            human_bytes(ceiling)
        ),
    })
}
