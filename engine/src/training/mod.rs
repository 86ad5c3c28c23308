//! LoRA training, built up from its parts: the backward kernels are ops (`ops::*_back`, `ops::mul_mat_grad`,
//! `ops::cross_entropy`), the optimizer is `ops::adamw` with `ops::grad_norm`'s scale, and the learning-rate
//! schedules are here. The training step and `ferrogem finetune` come next (docs/training.md).

pub mod schedule;
