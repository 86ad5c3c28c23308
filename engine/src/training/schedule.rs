//! Learning-rate schedules as HF transformers defines them (`get_constant_schedule_with_warmup`,
//! `get_linear_schedule_with_warmup`, `get_cosine_schedule_with_warmup` with half a cycle), so that a run here and
//! the same run with transformers + torch.optim.AdamW step with the same rates. Steps count optimizer updates from
//! 0, as torch's LambdaLR does: with warmup, step 0 runs at rate 0.

use crate::error::{Error, Result};

/// The shape after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// The peak rate from the end of warmup on.
    Constant,
    /// Down in a line to 0 at `total_steps`.
    Linear,
    /// Down along half a cosine to 0 at `total_steps`.
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    kind: ScheduleKind,
    peak_lr: f32,
    warmup_steps: u32,
    total_steps: u32,
}

impl LrSchedule {
    /// A schedule that rises linearly over `warmup_steps` to `peak_lr`, then follows `kind` until `total_steps`.
    pub fn new(kind: ScheduleKind, peak_lr: f32, warmup_steps: u32, total_steps: u32) -> Result<LrSchedule> {
        let bad = |reason: String| Err(Error::Unsupported { op: "learning-rate schedule".into(), reason });
        if !(peak_lr.is_finite() && peak_lr >= 0.0) {
            return bad(format!("the learning rate must be finite and ≥ 0, got {peak_lr}"));
        }
        if total_steps == 0 {
            return bad("a run needs at least one step".into());
        }
        Ok(LrSchedule { kind, peak_lr, warmup_steps, total_steps })
    }

    /// The rate of optimizer step `step` (from 0).
    pub fn lr(&self, step: u32) -> f32 {
        (self.peak_lr as f64 * self.factor(step)) as f32
    }

    /// transformers' `lr_lambda`: the multiplier of the peak rate.
    fn factor(&self, step: u32) -> f64 {
        let (step, warmup, total) = (step as f64, self.warmup_steps as f64, self.total_steps as f64);
        if step < warmup {
            return step / warmup.max(1.0);
        }
        // Past `total_steps` the decaying kinds stay at 0 (transformers' cosine would rise again there; no run
        // reaches it). Warmup longer than the run is allowed, as in transformers: the rate never reaches its peak.
        let progress = ((step - warmup) / (total - warmup).max(1.0)).min(1.0);
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => ((total - step) / (total - warmup).max(1.0)).max(0.0),
            ScheduleKind::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{LrSchedule, ScheduleKind};

    fn rates(kind: ScheduleKind, warmup: u32, total: u32) -> Vec<f32> {
        let s = LrSchedule::new(kind, 1e-3, warmup, total).unwrap();
        (0..=total + 1).map(|step| s.lr(step)).collect()
    }

    fn close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w * 1e-3).abs() < 1e-9, "{got:?} vs {want:?} (×1e-3)");
        }
    }

    #[test]
    fn warmup_rises_from_zero_then_each_kind_follows_transformers() {
        // Warmup 2 of 6 steps: factors 0, ½, then the kind's curve over steps 2..6 (4 steps), and past the end.
        close(&rates(ScheduleKind::Constant, 2, 6), &[0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        close(&rates(ScheduleKind::Linear, 2, 6), &[0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]);
        let c = |p: f64| 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
        let cosine = [0.0, 0.5, c(0.0), c(0.25), c(0.5), c(0.75), c(1.0), 0.0];
        close(&rates(ScheduleKind::Cosine, 2, 6), &cosine);
    }

    #[test]
    fn without_warmup_the_first_step_runs_at_the_peak() {
        close(&rates(ScheduleKind::Linear, 0, 4), &[1.0, 0.75, 0.5, 0.25, 0.0, 0.0]);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(LrSchedule::new(ScheduleKind::Constant, f32::NAN, 0, 10).is_err());
        assert!(LrSchedule::new(ScheduleKind::Constant, -1.0, 0, 10).is_err());
        assert!(LrSchedule::new(ScheduleKind::Cosine, 1e-3, 0, 0).is_err());
    }
}
