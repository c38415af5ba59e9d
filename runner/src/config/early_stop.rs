//! `[sweep.early_stop]`: stop hopeless trials early, by asynchronous
//! successive halving (ASHA, Li et al. 2020) or the median stopping rule
//! (Golovin et al. 2017), and the rungs both decide at. Not part of any
//! trial: a trial trains the same whether or not it may be stopped.
use super::{ExperimentFile, TrainSection};
use crate::error::InputError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Keep the best 1/eta of the trials that reached a rung.
    Asha,
    /// Stop a trial whose best so far is worse than the median of the
    /// others' running averages at the same rung.
    Median,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Asha => "asha",
            Method::Median => "median",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStop {
    pub method: Method,
    /// ASHA: the first rung (the rungs are at `min_steps × eta^k` below
    /// `train.steps`); median: the grace period (the rule is applied at
    /// every evaluation from there).
    pub min_steps: i64,
    /// ASHA keeps the best 1/eta at each rung.
    #[serde(default = "default_eta")]
    pub eta: i64,
}

fn default_eta() -> i64 {
    3
}

impl EarlyStop {
    /// The steps a trial of `train` is judged at, in order.
    pub fn rungs(&self, train: &TrainSection) -> Vec<i64> {
        let next = |r: &i64| match self.method {
            Method::Asha => r.checked_mul(self.eta),
            Method::Median => r.checked_add(train.eval_every),
        };
        std::iter::successors(Some(self.min_steps), next).take_while(|&r| r < train.steps).collect()
    }

    pub fn check(&self, file: &ExperimentFile) -> Result<(), InputError> {
        let key = |name: &str| format!("sweep.early_stop.{name}");
        let train = &file.train;
        if self.eta < 2 {
            return Err(InputError::at_key(key("eta"), format!("must be at least 2, got {}", self.eta)));
        }
        if self.min_steps <= 0 || self.min_steps >= train.steps {
            return Err(InputError::at_key(key("min_steps"), format!("must be in [1, train.steps = {}), got {}", train.steps, self.min_steps)));
        }
        if train.eval_every <= 0 || self.min_steps % train.eval_every != 0 {
            return Err(InputError::at_key(key("min_steps"), format!("must be a multiple of train.eval_every = {}: each rung is judged on an evaluation", train.eval_every)));
        }
        if train.checkpoint_every == Some(0) {
            return Err(InputError::at_key("train.checkpoint_every", "is 0, but early stopping pauses trials at their rungs in checkpoints"));
        }
        if train.budget.is_some() {
            return Err(InputError::at_key("train.budget", "and [sweep.early_stop] do not go together: a budget makes the steps a trial reaches depend on the machine"));
        }
        if !file.experiment.metric.starts_with("eval/") {
            return Err(InputError::at_key("experiment.metric", format!("is `{}`, but early stopping judges trials on an evaluated metric (`eval/...`)", file.experiment.metric)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asha_rungs_are_min_steps_times_powers_of_eta_the_medians_every_evaluation() {
        let train = |steps| TrainSection { steps, eval_every: 20, ..Default::default() };
        let asha = EarlyStop { method: Method::Asha, min_steps: 20, eta: 3 };
        assert_eq!(asha.rungs(&train(180)), vec![20, 60]);
        assert_eq!(asha.rungs(&train(181)), vec![20, 60, 180]);
        assert_eq!(asha.rungs(&train(20)), Vec::<i64>::new());
        let median = EarlyStop { method: Method::Median, min_steps: 40, eta: 3 };
        assert_eq!(median.rungs(&train(120)), vec![40, 60, 80, 100]);
    }
}
