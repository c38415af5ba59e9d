//! The learning-rate schedule: linear warm-up to the peak, then linear decay
//! to zero at the last step (BERT's schedule, and `transformers`'
//! `get_linear_schedule_with_warmup`). With a wall-clock budget
//! (`train.budget`, as in Geiping & Goldstein 2022, "Cramming") the decay is
//! also defined over the budget: the learning rate reaches zero, and training
//! stops, at whichever end comes first, the last step or the budget.
use crate::config::TrainSection;
use std::time::Duration;

pub struct Schedule {
    peak: f64,
    warmup: i64,
    steps: i64,
    budget: Option<Duration>,
}

impl Schedule {
    /// `train.budget` was checked when the experiment was loaded.
    pub fn new(train: &TrainSection) -> Schedule {
        Schedule { peak: train.lr, warmup: train.warmup_steps, steps: train.steps, budget: train.budget_duration() }
    }

    /// Learning rate for update `step` (0-based), `elapsed` training time
    /// (evaluations excluded) into the run.
    pub fn lr(&self, step: i64, elapsed: Duration) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let by_steps = (self.steps - step) as f64 / (self.steps - self.warmup).max(1) as f64;
        let by_time = self.budget.map_or(1.0, |budget| 1.0 - elapsed.as_secs_f64() / budget.as_secs_f64());
        self.peak * by_steps.min(by_time).max(0.0)
    }

    /// Whether training is over once `done` updates took `elapsed`.
    pub fn finished(&self, done: i64, elapsed: Duration) -> bool {
        done >= self.steps || self.budget.is_some_and(|budget| elapsed >= budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(warmup: i64, steps: i64, budget: Option<u64>) -> Schedule {
        Schedule { peak: 1.0, warmup, steps, budget: budget.map(Duration::from_secs) }
    }

    #[test]
    fn warms_up_peaks_and_decays() {
        let s = schedule(4, 10, None);
        let lr = |step| s.lr(step, Duration::ZERO);
        assert_eq!(lr(0), 0.25);
        assert_eq!(lr(3), 1.0);
        assert_eq!(lr(4), 1.0);
        assert!((lr(9) - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(schedule(0, 10, None).lr(0, Duration::ZERO), 1.0);
        assert!(!s.finished(9, Duration::from_secs(1_000_000)) && s.finished(10, Duration::ZERO));
    }

    #[test]
    fn a_budget_decays_over_time_and_ends_training() {
        // Far from the last step, the budget sets the pace.
        let s = schedule(2, 1_000_000, Some(100));
        assert_eq!(s.lr(0, Duration::from_secs(10)), 0.5, "warm-up counts steps");
        assert!((s.lr(50, Duration::from_secs(25)) - 0.75).abs() < 1e-4);
        assert!((s.lr(50, Duration::from_secs(90)) - 0.1).abs() < 1e-4);
        assert_eq!(s.lr(50, Duration::from_secs(120)), 0.0);
        assert!(!s.finished(50, Duration::from_secs(99)));
        assert!(s.finished(50, Duration::from_secs(100)));
    }
}
