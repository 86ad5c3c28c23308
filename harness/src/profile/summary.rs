//! summary.json: everything a CI gate or a person needs from one profile run, machine-readable.

use super::measure::{CounterCheck, Measured, Settings, StepRecord, TrainStepRecord};
use crate::results::Environment;
use ferrogem::gpu::{Capabilities, Category, CeilingBreach, Context, DeviceProfile, PhaseCounters};
use ferrogem::models::gemma::plan::{FitRefusal, MemoryPlan, PlanLine};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct BindGroups {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub hit_rate: f64,
}

impl From<PhaseCounters> for BindGroups {
    fn from(c: PhaseCounters) -> Self {
        BindGroups { hits: c.hits, misses: c.misses, evictions: c.evictions, hit_rate: c.hit_rate() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DecodeSummary {
    pub steps: usize,
    pub dispatches_per_token: f64,
    pub submissions_per_token: f64,
    /// Bind-group lookups of steps 2..N (the first step builds the decode graph's groups).
    pub steady_state: BindGroups,
    pub first_step: StepRecord,
    pub last_step: StepRecord,
    /// Most live buffers and bytes seen after any step, to catch growth that is freed again by the end.
    pub max_live_buffers: u64,
    pub max_live_bytes: u64,
    /// Steps (1-based) whose dispatch count differs from the step before: the decode graph took a new kernel path
    /// (split-KV attention once a full layer sees enough positions), which builds its bind groups once.
    pub graph_change_steps: Vec<usize>,
    /// Steps from 2 on after which live buffers or bytes differ from the step before although the graph did not
    /// change: growth no kernel path explains, i.e. a leak. The CI gate wants none.
    pub unexplained_growth_steps: Vec<usize>,
    pub live_buffers_by_step: Vec<u64>,
    pub live_bytes_by_step: Vec<u64>,
    pub dispatches_by_step: Vec<u32>,
}

/// A training profile's steps.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub steps: usize,
    pub seq_len: u32,
    /// Whether the backward recomputed each layer (`--checkpointing` as the plan settled it).
    pub gradient_checkpointing: bool,
    pub rank: u32,
    pub targets: Vec<&'static str>,
    pub loss_by_step: Vec<f64>,
    /// Bind-group lookups of steps 2..N (the first step builds the training graph's groups).
    pub steady_state: BindGroups,
    /// Steps from 2 on after which live buffers or bytes differ from the step before: every step runs the same
    /// graph, so any change is a leak. The CI gate wants none.
    pub growth_steps: Vec<usize>,
    pub live_buffers_by_step: Vec<u64>,
    pub live_bytes_by_step: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanVsMeasured {
    pub planned_bytes: u64,
    pub measured_peak_bytes: u64,
    /// (planned − measured) / measured.
    pub relative_error: f64,
    /// category → (planned, measured peak of that category).
    pub by_category: BTreeMap<&'static str, (u64, u64)>,
    pub lines: Vec<PlanLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CeilingSummary {
    pub bytes: Option<u64>,
    /// The plan refused the model at load, or an allocation crossed the ceiling.
    pub exceeded: bool,
    /// The first allocation that crossed it.
    pub breach: Option<CeilingBreach>,
    /// The plan's refusal (nothing was allocated), with what would fit.
    pub refused_plan: Option<FitRefusal>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub model: String,
    pub environment: Environment,
    /// Everything the device was granted (limits, optional features, subgroup sizes, profile and ceiling).
    pub granted: Capabilities,
    pub profile: Option<DeviceProfile>,
    pub prompt_tokens: u32,
    pub gen_tokens: u32,
    pub n_ctx: u32,
    pub max_chunk: u32,
    pub kv_cache: &'static str,
    pub peak_bytes: u64,
    pub peak_by_category: BTreeMap<&'static str, u64>,
    pub peak_by_phase: BTreeMap<&'static str, u64>,
    pub peak_by_phase_category: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    pub bind_groups: BTreeMap<&'static str, BindGroups>,
    pub prefill_dispatches: u32,
    pub prefill_submissions: u64,
    pub decode: Option<DecodeSummary>,
    pub train: Option<TrainSummary>,
    pub generated_tokens: Vec<u32>,
    /// The accountant against wgpu's buffer counters after load, decode and unload. Native only: empty in the
    /// browser, which has no blocking wait to drain uploads' staging buffers and whose WebGPU backend keeps no
    /// wgpu counters.
    pub counters: Vec<CounterCheck>,
    pub after_unload_live_bytes: u64,
    pub after_unload_live_buffers: u64,
    pub plan_vs_measured: Option<PlanVsMeasured>,
    pub ceiling: CeilingSummary,
    pub error: Option<String>,
}

/// The lookups after the `first` counters up to the `last` (both cumulative, of one phase).
fn lookups_between(first: PhaseCounters, last: PhaseCounters) -> BindGroups {
    PhaseCounters {
        hits: last.hits - first.hits,
        misses: last.misses - first.misses,
        evictions: last.evictions - first.evictions,
    }
    .into()
}

fn decode_summary(steps: &[StepRecord]) -> Option<DecodeSummary> {
    let (first, last) = (*steps.first()?, *steps.last()?);
    let n = steps.len() as f64;
    Some(DecodeSummary {
        steps: steps.len(),
        dispatches_per_token: steps.iter().map(|s| s.dispatches as f64).sum::<f64>() / n,
        submissions_per_token: steps.iter().map(|s| s.submissions as f64).sum::<f64>() / n,
        steady_state: lookups_between(first.decode_bind_groups, last.decode_bind_groups),
        first_step: first,
        last_step: last,
        max_live_buffers: steps.iter().map(|s| s.live_buffers).max().unwrap_or(0),
        max_live_bytes: steps.iter().map(|s| s.live_bytes).max().unwrap_or(0),
        graph_change_steps: steps
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[0].dispatches != w[1].dispatches)
            .map(|(i, _)| i + 2)
            .collect(),
        unexplained_growth_steps: steps
            .windows(2)
            .enumerate()
            .filter(|(_, w)| {
                w[0].dispatches == w[1].dispatches
                    && (w[0].live_buffers, w[0].live_bytes) != (w[1].live_buffers, w[1].live_bytes)
            })
            .map(|(i, _)| i + 2)
            .collect(),
        live_buffers_by_step: steps.iter().map(|s| s.live_buffers).collect(),
        live_bytes_by_step: steps.iter().map(|s| s.live_bytes).collect(),
        dispatches_by_step: steps.iter().map(|s| s.dispatches).collect(),
    })
}

fn train_summary(settings: &Settings, steps: &[TrainStepRecord]) -> Option<TrainSummary> {
    let t = settings.train.as_ref()?;
    let (first, last) = (steps.first()?.train_bind_groups, steps.last()?.train_bind_groups);
    let mut targets: Vec<&'static str> = t.adapter.updates.iter().map(|u| u.target.hf_module()).collect();
    targets.sort_unstable();
    targets.dedup();
    Some(TrainSummary {
        steps: steps.len(),
        seq_len: t.seq_len,
        gradient_checkpointing: t.checkpointing == ferrogem::models::gemma::Checkpointing::PerLayer,
        rank: t.adapter.updates.iter().map(|u| u.rank).max().unwrap_or(0),
        targets,
        loss_by_step: steps.iter().map(|s| s.loss).collect(),
        steady_state: lookups_between(first, last),
        growth_steps: steps
            .windows(2)
            .enumerate()
            .filter(|(_, w)| (w[0].live_buffers, w[0].live_bytes) != (w[1].live_buffers, w[1].live_bytes))
            .map(|(i, _)| i + 2)
            .collect(),
        live_buffers_by_step: steps.iter().map(|s| s.live_buffers).collect(),
        live_bytes_by_step: steps.iter().map(|s| s.live_bytes).collect(),
    })
}

impl Summary {
    pub fn new(
        ctx: &Context,
        model: &str,
        profile: Option<&DeviceProfile>,
        settings: &Settings,
        plan: &MemoryPlan,
        measured: &Measured,
    ) -> Summary {
        let memory = ctx.memory();
        let caps = ctx.caps().clone();
        let peak_by_category: BTreeMap<&'static str, u64> =
            memory.by_category.iter().map(|(c, _, peak)| (c.name(), *peak)).collect();
        let measured_peak = memory.peak_bytes;
        let plan_vs_measured = (measured_peak > 0).then(|| PlanVsMeasured {
            planned_bytes: plan.total_bytes(),
            measured_peak_bytes: measured_peak,
            relative_error: (plan.total_bytes() as f64 - measured_peak as f64) / measured_peak as f64,
            by_category: Category::ALL
                .iter()
                .map(|&c| (c.name(), (plan.category_bytes(c), peak_by_category.get(c.name()).copied().unwrap_or(0))))
                .collect(),
            lines: plan.lines.clone(),
        });
        let breach = ctx.ceiling_breach();
        let refused_plan = match &measured.error {
            Some(ferrogem::Error::ModelDoesNotFit(refusal)) => refusal.downcast_ref::<FitRefusal>().cloned(),
            _ => None,
        };
        Summary {
            model: model.to_owned(),
            environment: Environment::new(&caps),
            granted: caps,
            profile: profile.cloned(),
            prompt_tokens: settings.prompt_tokens,
            gen_tokens: settings.gen_tokens,
            n_ctx: plan.sizing.n_ctx,
            max_chunk: plan.sizing.max_chunk,
            kv_cache: plan.kv_cache,
            peak_bytes: measured_peak,
            peak_by_category,
            peak_by_phase: memory.peak_by_phase.iter().map(|(p, b)| (p.name(), *b)).collect(),
            peak_by_phase_category: memory
                .peak_by_phase_category
                .iter()
                .map(|(p, cats)| (p.name(), cats.iter().map(|(c, b)| (c.name(), *b)).collect()))
                .collect(),
            bind_groups: ctx.bind_cache_stats().by_phase.into_iter().map(|(p, c)| (p.name(), c.into())).collect(),
            prefill_dispatches: measured.prefill_dispatches,
            prefill_submissions: measured.prefill_submissions,
            decode: decode_summary(&measured.steps),
            train: train_summary(settings, &measured.train_steps),
            generated_tokens: measured.generated.clone(),
            counters: measured.counters.clone(),
            after_unload_live_bytes: memory.live_bytes,
            after_unload_live_buffers: memory.live_buffers,
            plan_vs_measured,
            ceiling: CeilingSummary {
                bytes: memory.ceiling_bytes,
                exceeded: breach.is_some() || refused_plan.is_some(),
                breach,
                refused_plan,
            },
            error: measured.error.as_ref().map(|e| e.to_string()),
        }
    }
}
