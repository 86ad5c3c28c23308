//! LoRA training (docs/training.md): the backward kernels are ops (`ops::*_back`, `ops::mul_mat_grad`,
//! `ops::cross_entropy`), the optimizer is `ops::adamw` with `ops::grad_norm`'s scale, and the training step on a
//! model is `models::gemma::LoraTrainer`. Here: the learning-rate schedules, the training data (JSONL into shifted,
//! masked samples; the seeded epoch order), and the steps of a run over a dataset, which `ferrogem finetune` and
//! the browser share.

pub mod data;
pub mod run;
pub mod schedule;
