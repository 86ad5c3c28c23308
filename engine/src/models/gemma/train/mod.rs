//! A LoRA training step on the GPU (docs/training.md): the loss of one sequence and its gradient with respect to
//! every trained A and B, then AdamW. The forward runs op by op and keeps each layer's input; with per-layer
//! gradient checkpointing the backward recomputes a layer from its input before the layer's backward kernels,
//! without it the forward keeps every layer's intermediates ([`Checkpointing`]).
//! The base stays frozen in its file format: input gradients read it as the forward does, never dequantized whole.
//!
//! ```text
//! let mut trainer = LoraTrainer::new(&model, &adapter, 1.0, seq_len, Checkpointing::PerLayer)?;
//! let loss = trainer.loss_and_grads_blocking(&mut model, &ids, &targets)?;   // one sequence
//! trainer.adamw_step(&model, &AdamwConfig::default(), Some(1.0))?;           // clipped to norm 1, the update
//! ```
//!
//! A step over several sequences (a batch, gradient accumulation) runs [`LoraTrainer::accumulate`] once per
//! sequence with every row weighted by 1 / (trained rows of the whole step), so the gradient is the token mean
//! over the step, as transformers' Trainer takes it.

mod backward;
mod buffers;
mod forward;
mod init;

use super::forward::EARLY_SUBMIT_DISPATCHES;
use super::ple::PleLayout;
use super::{DEFAULT_MAX_LOGIT_ROWS, Gemma, check_fit, logit_rows, scratch, target_shape};
use crate::error::{Error, Result};
use crate::gpu::{Category, GpuBuffer, Phase};
use crate::lora::{LoraAdapter, Target};
use crate::models::TextConfig;
use crate::ops::adamw::{AdamwConfig, AdamwState, adamw};
use crate::ops::cross_entropy::IGNORED_TARGET;
use crate::ops::grad_norm::{GRAD_NORM_PARTIALS, grad_scale};
pub use buffers::Checkpointing;
use buffers::{Acts, LayerKv, Tally, TrainAlloc, TrainUpdate, f32_bytes};
pub use init::{FreshLora, fresh_adapter};

/// The trained adapter's tensors, the activations of one sequence, and the optimizer's step count.
pub struct LoraTrainer {
    template: LoraAdapter,
    updates: Vec<TrainUpdate>,
    acts: Acts,
    /// Per owner layer, the last layer that reads its cache (the backward reaches it first).
    last_reader: Vec<usize>,
    seq_len: u32,
    checkpointing: Checkpointing,
    /// The clipping norm's partial sums, and the gradient scale AdamW reads (the clipping factor, 1 without).
    norm_partials: GpuBuffer,
    grad_scale: GpuBuffer,
    /// Host-mappable: losses and read-back tensors.
    staging: GpuBuffer,
    steps: u32,
}

/// One recording of a training step: the model, the trainer, and the sequence length.
struct Step<'a> {
    model: &'a Gemma,
    trainer: &'a LoraTrainer,
    n: u32,
    /// Whether the LoRA gradients add to those of earlier sequences of the step.
    accumulate: bool,
}

impl Step<'_> {
    fn kv_of(&self, l: usize) -> Result<&LayerKv> {
        let source = self.model.config.layers[l].kv_source;
        self.trainer.acts.kv[source].as_ref().ok_or_else(|| Error::Unsupported {
            op: "training".into(),
            reason: format!("layer {l} reads the cache of layer {source}, which owns none"),
        })
    }
}

/// Every buffer a trainer holds.
struct Buffers<B> {
    updates: Vec<TrainUpdate<B>>,
    acts: Acts<B>,
    norm_partials: B,
    grad_scale: B,
    staging: B,
}

/// The trainer's buffers from `alloc`: the device's, or a [`Tally`] of them for the plan.
#[allow(clippy::too_many_arguments)]
fn buffers<A: TrainAlloc>(
    alloc: &A,
    cfg: &TextConfig,
    has_attn_v: &dyn Fn(usize) -> bool,
    adapter: &LoraAdapter,
    user_scale: f32,
    seq_len: u32,
    checkpointing: Checkpointing,
    max_binding_bytes: u64,
    ple: Option<PleLayout>,
) -> Result<Buffers<A::Buffer>> {
    check_fit(cfg, has_attn_v, adapter)?;
    // The head's groups fit one binding of logits: as many rows as inference's head takes by default where memory
    // is tight (checkpointing), a whole token tile of the tiled product where it is not (the head's product costs
    // the same per group at 16 rows as at 64: 3 of 4 would be padding).
    let max_head_rows = match checkpointing {
        Checkpointing::PerLayer => DEFAULT_MAX_LOGIT_ROWS,
        Checkpointing::Off => KEPT_HEAD_ROWS,
    };
    let head_rows = logit_rows(cfg.vocab, seq_len, max_head_rows, max_binding_bytes);
    let mut updates: Vec<TrainUpdate<A::Buffer>> = Vec::with_capacity(adapter.updates.len());
    for u in &adapter.updates {
        if updates.iter().any(|t| (t.layer, t.target) == (u.layer, u.target)) {
            return Err(Error::Unsupported {
                op: "training".into(),
                reason: format!("{} is updated twice; train one adapter", u.describe()),
            });
        }
        let trains = matches!(target_shape(cfg, has_attn_v, u.layer as usize, u.target), Ok(Some(_)));
        updates.push(TrainUpdate::<A::Buffer>::new(alloc, u, user_scale, trains, seq_len)?);
    }
    let owners: Vec<bool> = cfg.layers.iter().map(|s| s.owns_kv()).collect();
    let acts = Acts::<A::Buffer>::new(alloc, cfg, seq_len, head_rows, &owners, ple, checkpointing)?;
    let pairs = adapter.updates.iter().map(|u| u.a.len() + u.b.len());
    let (widest_pair, param_elems) = (pairs.clone().max().unwrap_or(0), pairs.sum::<usize>());
    let readback_elems = ((READBACK_BYTES / 4) as usize).min(param_elems);
    let optimizer = |label: &str, elems: usize| alloc.zeroed(label, Category::Optimizer, f32_bytes(elems), false);
    Ok(Buffers {
        updates,
        acts,
        norm_partials: optimizer("grad norm partials", GRAD_NORM_PARTIALS as usize)?,
        grad_scale: optimizer("adamw grad scale", 1)?,
        staging: alloc.zeroed(
            "train readback",
            Category::Staging,
            f32_bytes(readback_elems.max(widest_pair).max(seq_len as usize)),
            true,
        )?,
    })
}

/// The head's rows per group without checkpointing: the tiled product's tokens per tile (`mul_mat.wgsl`).
const KEPT_HEAD_ROWS: u32 = 64;

/// Tensors read back per round trip, at least (a larger update takes its own; a smaller adapter, one): a checkpoint
/// reads every trained tensor three times, and a staging buffer the size of them all would cost as much as the
/// gradients.
const READBACK_BYTES: u64 = 4 << 20;

/// Consecutive runs of tensor pairs (`pair_bytes` each) that fit `room_bytes` together, in order; a pair larger
/// than the room goes alone (the staging buffer is sized for the largest).
fn readback_groups(pair_bytes: &[u64], room_bytes: u64) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut first = 0;
    while first < pair_bytes.len() {
        let (mut end, mut bytes) = (first + 1, pair_bytes[first]);
        while end < pair_bytes.len() && bytes + pair_bytes[end] <= room_bytes {
            bytes += pair_bytes[end];
            end += 1;
        }
        groups.push(first..end);
        first = end;
    }
    groups
}

/// The bytes by category a [`LoraTrainer`] of `adapter` allocates beside the model's own, without a device: the
/// memory plan's share of training.
#[allow(clippy::too_many_arguments)]
pub fn planned_bytes(
    cfg: &TextConfig,
    has_attn_v: &dyn Fn(usize) -> bool,
    adapter: &LoraAdapter,
    seq_len: u32,
    checkpointing: Checkpointing,
    max_binding_bytes: u64,
    ple: Option<PleLayout>,
) -> Result<Vec<(Category, u64)>> {
    let tally = Tally::default();
    buffers(&tally, cfg, has_attn_v, adapter, 1.0, seq_len, checkpointing, max_binding_bytes, ple)?;
    Ok(tally.by_category())
}

impl LoraTrainer {
    /// Uploads `adapter` (its updates at `user_scale`) as trainable f32 tensors and allocates what a sequence of up
    /// to `seq_len` tokens needs, all of it its own: the model's inference scratch is not used (load the model
    /// with the smallest chunk and context to leave the most room for training). The adapter must fit the model,
    /// as for inference.
    pub fn new(
        model: &Gemma,
        adapter: &LoraAdapter,
        user_scale: f32,
        seq_len: u32,
        checkpointing: Checkpointing,
    ) -> Result<LoraTrainer> {
        let ctx = model.context();
        let cfg = &model.config;
        let unsupported = |reason: String| Err(Error::Unsupported { op: "training".into(), reason });
        if seq_len == 0 {
            return unsupported("a sequence of 0 tokens".into());
        }
        if !(user_scale.is_finite()) {
            return unsupported(format!("adapter scale {user_scale}"));
        }
        let has_attn_v = |l: usize| model.weights.layers[l].attn_v.is_some();
        let max_binding = ctx.caps().max_storage_buffer_binding_bytes;
        let ple = model.ple.as_ref().map(|p| p.layout());
        let previous = ctx.phase();
        ctx.set_phase(Phase::Train);
        let built = buffers(ctx, cfg, &has_attn_v, adapter, user_scale, seq_len, checkpointing, max_binding, ple);
        ctx.set_phase(previous);
        let b = built?;
        let mut last_reader: Vec<usize> = (0..cfg.n_layers()).collect();
        for spec in &cfg.layers {
            last_reader[spec.kv_source] = last_reader[spec.kv_source].max(spec.index);
        }
        Ok(LoraTrainer {
            template: adapter.clone(),
            updates: b.updates,
            acts: b.acts,
            last_reader,
            seq_len,
            checkpointing,
            norm_partials: b.norm_partials,
            grad_scale: b.grad_scale,
            staging: b.staging,
            steps: 0,
        })
    }

    fn update(&self, l: usize, target: Target) -> Option<&TrainUpdate> {
        self.updates.iter().find(|u| u.layer as usize == l && u.target == target && u.trains)
    }

    /// The mean cross-entropy of `tokens` (row i predicts `targets[i]`; `None` rows are not trained on), and its
    /// gradient with respect to every trained A and B, left on the GPU for [`adamw_step`](Self::adamw_step) and
    /// [`read_grads`](Self::read_grads): a step of one sequence.
    pub async fn loss_and_grads(&self, model: &mut Gemma, tokens: &[u32], targets: &[Option<u32>]) -> Result<f64> {
        let trained = targets.iter().filter(|t| t.is_some()).count().max(1);
        self.accumulate(model, tokens, targets, 1.0 / trained as f32, true).await
    }

    /// One sequence of a step: adds the gradient of `row_weight`·(the sum of its rows' losses) to the step's
    /// gradients (`first`: replaces them), and returns that weighted sum.
    pub async fn accumulate(
        &self,
        model: &mut Gemma,
        tokens: &[u32],
        targets: &[Option<u32>],
        row_weight: f32,
        first: bool,
    ) -> Result<f64> {
        let n = self.check_batch(model, tokens, targets)?;
        if !(row_weight.is_finite() && row_weight > 0.0) {
            return Err(Error::Unsupported { op: "training".into(), reason: format!("row weight {row_weight}") });
        }
        let ctx = model.context().clone();
        ctx.set_phase(Phase::Train);
        ctx.queue().write_buffer(self.acts.tokens.raw(), 0, bytemuck::cast_slice(tokens));
        if let (Some(ple), Some(chunk)) = (&model.ple, &self.acts.ple) {
            ple.upload_rows(&ctx, model.source.as_ref(), tokens, chunk)?;
        }
        let ids: Vec<u32> = targets.iter().map(|t| t.unwrap_or(IGNORED_TARGET)).collect();
        let weights: Vec<f32> = targets.iter().map(|t| if t.is_some() { row_weight } else { 0.0 }).collect();
        ctx.queue().write_buffer(self.acts.targets.raw(), 0, bytemuck::cast_slice(&ids));
        ctx.queue().write_buffer(self.acts.row_weight.raw(), 0, bytemuck::cast_slice(&weights));

        let step = Step { model, trainer: self, n, accumulate: !first };
        let n_layers = model.config.n_layers();
        let mut batch = ctx.batch("train step");
        step.embed(&mut batch)?;
        for l in 0..n_layers {
            step.layer_forward(&mut batch, l)?;
            batch.submit_early(EARLY_SUBMIT_DISPATCHES)?;
        }
        step.head_and_loss(&mut batch)?;
        for l in (0..n_layers).rev() {
            if self.checkpointing == Checkpointing::PerLayer {
                step.layer_forward(&mut batch, l)?;
            }
            step.layer_backward(&mut batch, l)?;
            batch.submit_early(EARLY_SUBMIT_DISPATCHES)?;
        }
        batch.copy(&self.acts.row_loss, 0, &self.staging, 0, n as u64 * 4);
        batch.submit()?;
        let row_loss = scratch::map_read_f32(&ctx, &self.staging, n as u64 * 4).await?;
        let loss: f64 = row_loss.iter().zip(&weights).map(|(&l, &w)| l as f64 * w as f64).sum();
        if !loss.is_finite() {
            return Err(Error::Unsupported { op: "training".into(), reason: format!("the loss is {loss}") });
        }
        Ok(loss)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn accumulate_blocking(
        &self,
        model: &mut Gemma,
        tokens: &[u32],
        targets: &[Option<u32>],
        row_weight: f32,
        first: bool,
    ) -> Result<f64> {
        pollster::block_on(self.accumulate(model, tokens, targets, row_weight, first))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn loss_and_grads_blocking(&self, model: &mut Gemma, tokens: &[u32], targets: &[Option<u32>]) -> Result<f64> {
        pollster::block_on(self.loss_and_grads(model, tokens, targets))
    }

    fn check_batch(&self, model: &Gemma, tokens: &[u32], targets: &[Option<u32>]) -> Result<u32> {
        let vocab = model.config.vocab;
        let bad = |reason: String| Err(Error::Unsupported { op: "training".into(), reason });
        if tokens.is_empty() || tokens.len() > self.seq_len as usize {
            return bad(format!("{} tokens; this trainer takes 1..={}", tokens.len(), self.seq_len));
        }
        if targets.len() != tokens.len() {
            return bad(format!("{} targets for {} tokens", targets.len(), tokens.len()));
        }
        if let Some(t) = tokens.iter().chain(targets.iter().flatten()).find(|&&t| t >= vocab) {
            return bad(format!("token {t} is not below the vocabulary size {vocab}"));
        }
        if targets.iter().all(|t| t.is_none()) {
            return bad("no row is trained on (every target is masked)".into());
        }
        Ok(tokens.len() as u32)
    }

    /// One AdamW step on every trained tensor with the step's gradients, first scaled down so that their global
    /// L2 norm is at most `clip` (torch's `clip_grad_norm_`); `None` leaves them as they are.
    pub fn adamw_step(&mut self, model: &Gemma, config: &AdamwConfig, clip: Option<f32>) -> Result<()> {
        self.steps += 1;
        let ctx = model.context();
        ctx.set_phase(Phase::Train);
        let mut batch = ctx.batch("adamw");
        match clip {
            Some(_) => {
                let grads: Vec<(&GpuBuffer, u64)> = (self.updates.iter().zip(&self.template.updates))
                    .flat_map(|(u, t)| [(&u.da, t.a.len() as u64), (&u.db, t.b.len() as u64)])
                    .collect();
                grad_scale(&mut batch, &grads, &self.norm_partials, &self.grad_scale, clip, 1.0)?;
            }
            None => ctx.queue().write_buffer(self.grad_scale.raw(), 0, bytemuck::bytes_of(&1.0f32)),
        }
        for u in self.updates.iter().filter(|u| u.trains) {
            let [ma, va, mb, vb] = &u.moments;
            let a_elems = u.rank as u64 * u.in_dim as u64;
            let b_elems = u.out_dim as u64 * u.rank as u64;
            for (param, grad, m, v, n_elems) in [(&u.a, &u.da, ma, va, a_elems), (&u.b, &u.db, mb, vb, b_elems)] {
                let state = AdamwState { param, grad, m, v, grad_scale: &self.grad_scale, n_elems };
                adamw(&mut batch, config, self.steps, &state)?;
            }
        }
        batch.submit()?;
        Ok(())
    }

    /// The gradients of the last [`loss_and_grads`](Self::loss_and_grads) in the adapter's shape: each update's
    /// `a` holds dA and `b` dB (zeros where the model never uses the projection).
    pub async fn read_grads(&self, model: &Gemma) -> Result<LoraAdapter> {
        self.read_pairs(model, |u| [&u.da, &u.db]).await
    }

    /// The adapter as trained so far.
    pub async fn read_adapter(&self, model: &Gemma) -> Result<LoraAdapter> {
        self.read_pairs(model, |u| [&u.a, &u.b]).await
    }

    /// What a checkpoint holds: the adapter, AdamW's moments (as adapters: `a` the moment of A, `b` of B), and
    /// the steps taken. Restoring it continues exactly where it was read.
    pub async fn read_state(&self, model: &Gemma) -> Result<TrainerState> {
        Ok(TrainerState {
            adapter: self.read_adapter(model).await?,
            first_moment: self.read_pairs(model, |u| [&u.moments[0], &u.moments[2]]).await?,
            second_moment: self.read_pairs(model, |u| [&u.moments[1], &u.moments[3]]).await?,
            steps: self.steps,
        })
    }

    /// Continues from `state` (of a trainer of the same adapter shape).
    pub fn restore(&mut self, model: &Gemma, state: &TrainerState) -> Result<()> {
        let same_shape = |other: &LoraAdapter| {
            other.updates.len() == self.template.updates.len()
                && other.updates.iter().zip(&self.template.updates).all(|(o, t)| {
                    (o.layer, o.target, o.a.len(), o.b.len()) == (t.layer, t.target, t.a.len(), t.b.len())
                })
        };
        if ![&state.adapter, &state.first_moment, &state.second_moment].into_iter().all(same_shape) {
            return Err(Error::Unsupported {
                op: "resuming training".into(),
                reason: "the checkpoint's adapter has other projections or shapes than the one being trained".into(),
            });
        }
        let queue = model.context().queue();
        for (i, u) in self.updates.iter().enumerate() {
            let tensors = [
                (&u.a, &state.adapter.updates[i].a),
                (&u.b, &state.adapter.updates[i].b),
                (&u.moments[0], &state.first_moment.updates[i].a),
                (&u.moments[2], &state.first_moment.updates[i].b),
                (&u.moments[1], &state.second_moment.updates[i].a),
                (&u.moments[3], &state.second_moment.updates[i].b),
            ];
            for (buffer, values) in tensors {
                queue.write_buffer(buffer.raw(), 0, bytemuck::cast_slice(values));
            }
        }
        self.steps = state.steps;
        Ok(())
    }

    /// Two tensors per update read back into the adapter's shape (the first as `a`, the second as `b`), as many
    /// updates per round trip as the staging buffer holds.
    async fn read_pairs(&self, model: &Gemma, pick: impl Fn(&TrainUpdate) -> [&GpuBuffer; 2]) -> Result<LoraAdapter> {
        let ctx = model.context();
        let mut out = self.template.clone();
        let pair_bytes: Vec<u64> = out.updates.iter().map(|t| (t.a.len() + t.b.len()) as u64 * 4).collect();
        for group in readback_groups(&pair_bytes, self.staging.size_bytes()) {
            let mut batch = ctx.batch("train readback");
            let mut offset_bytes = 0;
            for (u, t) in self.updates[group.clone()].iter().zip(&out.updates[group.clone()]) {
                for (buffer, elems) in pick(u).into_iter().zip([t.a.len(), t.b.len()]) {
                    batch.copy(buffer, 0, &self.staging, offset_bytes, elems as u64 * 4);
                    offset_bytes += elems as u64 * 4;
                }
            }
            batch.submit()?;
            let values = scratch::map_read_f32(ctx, &self.staging, offset_bytes).await?;
            let mut rest = values.as_slice();
            for t in &mut out.updates[group] {
                let (a, tail) = rest.split_at(t.a.len());
                let (b, tail) = tail.split_at(t.b.len());
                (t.a, t.b, rest) = (a.to_vec(), b.to_vec(), tail);
            }
        }
        Ok(out)
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_grads_blocking(&self, model: &Gemma) -> Result<LoraAdapter> {
        pollster::block_on(self.read_grads(model))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_adapter_blocking(&self, model: &Gemma) -> Result<LoraAdapter> {
        pollster::block_on(self.read_adapter(model))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_state_blocking(&self, model: &Gemma) -> Result<TrainerState> {
        pollster::block_on(self.read_state(model))
    }
}

/// A trainer's state between steps (see [`LoraTrainer::read_state`]).
#[derive(Debug, Clone)]
pub struct TrainerState {
    pub adapter: LoraAdapter,
    pub first_moment: LoraAdapter,
    pub second_moment: LoraAdapter,
    pub steps: u32,
}

#[cfg(test)]
mod tests {
    use super::readback_groups;

    #[test]
    fn readback_groups_fill_the_room_in_order() {
        assert_eq!(readback_groups(&[4, 4, 4, 4, 4], 8), [0..2, 2..4, 4..5]);
        assert_eq!(readback_groups(&[3, 9, 2, 2, 5], 8), [0..1, 1..2, 2..4, 4..5]);
        let one = readback_groups(&[1, 1, 1], 100);
        assert_eq!((one.len(), &one[0]), (1, &(0..3)));
        assert!(readback_groups(&[], 8).is_empty());
    }
}
