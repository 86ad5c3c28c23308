//! The steps of a run over a dataset, as `ferrogem finetune` and the browser both take them: each optimizer step
//! reads the next `per_step` samples of the seeded epoch order, weights every trained row by 1/(the step's trained
//! rows), clips, and steps AdamW at the schedule's rate.

use super::data::{DataPosition, Dataset};
use super::schedule::LrSchedule;
use crate::error::Result;
use crate::models::gemma::{Gemma, LoraTrainer};
use crate::ops::adamw::AdamwConfig;

/// Where a run is and how it steps.
#[derive(Debug, Clone)]
pub struct TrainRun {
    /// Sequences per optimizer step (batch × gradient accumulation).
    pub per_step: usize,
    pub seed: u64,
    pub schedule: LrSchedule,
    /// AdamW's settings; the rate comes from the schedule.
    pub adamw: AdamwConfig,
    /// Global gradient-norm bound; `None` does not clip.
    pub clip: Option<f32>,
    pub position: DataPosition,
    /// The order of `position.epoch`, computed once per epoch.
    order: Option<(u64, Vec<usize>)>,
}

/// One step: its index (from 0), the loss before its update, the rate it stepped at, the tokens it read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    pub step: u32,
    pub loss: f64,
    pub lr: f32,
    pub tokens: u64,
}

impl TrainRun {
    pub fn new(per_step: usize, seed: u64, schedule: LrSchedule, adamw: AdamwConfig, clip: Option<f32>) -> TrainRun {
        TrainRun {
            per_step: per_step.max(1),
            seed,
            schedule,
            adamw,
            clip,
            position: DataPosition::default(),
            order: None,
        }
    }

    /// Optimizer step `trainer.steps()` on the next samples of `data`.
    pub async fn step(&mut self, trainer: &mut LoraTrainer, model: &mut Gemma, data: &Dataset) -> Result<StepReport> {
        let step = trainer.steps();
        let lr = self.schedule.lr(step);
        let mut picked = Vec::with_capacity(self.per_step);
        for _ in 0..self.per_step {
            let epoch = self.position.epoch;
            if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
                self.order = Some((epoch, data.order(self.seed, epoch)));
            }
            let order = self.order.as_ref().map(|(_, o)| o.as_slice()).unwrap_or_default();
            picked.push(&data.samples[order[self.position.index]]);
            self.position = self.position.advance(1, data.samples.len());
        }
        let trained: usize = picked.iter().map(|p| p.trained_rows()).sum();
        let (mut loss, mut tokens) = (0.0, 0);
        for (i, sample) in picked.iter().enumerate() {
            loss += trainer.accumulate(model, &sample.tokens, &sample.targets, 1.0 / trained as f32, i == 0).await?;
            tokens += sample.tokens.len() as u64;
        }
        trainer.adamw_step(model, &AdamwConfig { lr, ..self.adamw }, self.clip)?;
        Ok(StepReport { step, loss, lr, tokens })
    }
}

/// The token mean of `data`'s loss under the trainer's adapter. Its gradients are computed and dropped: the next
/// step's first sequence overwrites them.
pub async fn eval_loss(trainer: &LoraTrainer, model: &mut Gemma, data: &Dataset) -> Result<f64> {
    let trained: usize = data.samples.iter().map(|s| s.trained_rows()).sum();
    let mut loss = 0.0;
    for sample in &data.samples {
        loss += trainer.accumulate(model, &sample.tokens, &sample.targets, 1.0 / trained as f32, true).await?;
    }
    Ok(loss)
}
