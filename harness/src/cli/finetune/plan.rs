//! The memory plan of a training run: the model's load plan plus the trainer's buffers, printed before anything
//! is allocated; under a device profile's ceiling a run that does not fit is refused with the longest
//! `--seq-len` that would, and what else to change.

use ferrogem::gpu::{DeviceProfile, human_bytes};
use ferrogem::lora::LoraAdapter;
use ferrogem::models::gemma::GemmaOptions;
use ferrogem::models::gemma::plan::{MemoryPlan, PlanLimits};
use ferrogem::models::{ModelFile, TextConfig};

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
    profile: Option<&DeviceProfile>,
) -> ferrogem::Result<MemoryPlan> {
    let plan_for = |seq_len: u32| -> ferrogem::Result<MemoryPlan> {
        let mut plan = MemoryPlan::new(&model.gguf, config, options, limits)?;
        plan.add_training(&model.gguf, config, adapter, seq_len, limits)?;
        Ok(plan)
    };
    let plan = plan_for(seq_len)?;
    let parts: Vec<String> = plan
        .by_category()
        .iter()
        .filter(|(_, b)| *b > 0)
        .map(|(c, b)| format!("{} {}", c.name(), human_bytes(*b)))
        .collect();
    eprintln!("memory plan: {} ({})", human_bytes(plan.total_bytes()), parts.join(", "));
    let Some((profile, ceiling)) = profile.and_then(|p| Some((p, p.ceiling_bytes?))) else { return Ok(plan) };
    if plan.total_bytes() <= ceiling {
        return Ok(plan);
    }
    // The plan grows with the sequence, so the longest that fits is a binary search.
    let (mut lo, mut hi) = (1u32, seq_len);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if plan_for(mid)?.total_bytes() <= ceiling { lo = mid } else { hi = mid }
    }
    let shorter = match plan_for(lo)?.total_bytes() <= ceiling {
        true => format!("--seq-len {lo} or less"),
        false => "no --seq-len fits".into(),
    };
    Err(ferrogem::Error::Unsupported {
        op: op.into(),
        reason: format!(
            "the run's memory plan ({}) is over device profile `{}`'s ceiling of {}: {shorter}; or a smaller \
             --rank, fewer --targets, or a smaller quant of the base (gradient checkpointing is always on)",
            human_bytes(plan.total_bytes()),
            profile.name,
            human_bytes(ceiling)
        ),
    })
}
