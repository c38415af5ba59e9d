//! Runs trials one after another on this machine: skips those already
//! completed, records each start and end in the store, and keeps going when
//! one fails (a NaN loss, a libtorch error, even a panic inside libtorch's
//! bindings), so one bad configuration never costs the rest of the sweep.
//! With tracking on, every record also goes to the MLflow tracker's queue.
use crate::data::Dataset;
use crate::store::{Ending, MetricPoint, Store, COMPLETED};
use crate::sweep::Trial;
use crate::track::client::Metric;
use crate::track::Tracker;
use crate::train::{self, Observer};
use anyhow::Result;
use indicatif::ProgressBar;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;
use tch::Device;

/// A trial ready to run: its data and device resolved.
pub struct Job<'a> {
    pub trial: Trial,
    pub data: &'a Dataset,
    pub device: Device,
}

/// What the sweep display needs from its caller.
pub trait SweepDisplay {
    /// A message for the user (above the bars on a terminal).
    fn line(&self, message: &str);
    /// A progress bar for one trial of `steps` steps.
    fn trial_bar(&self, label: &str, steps: u64) -> ProgressBar;
    /// One trial is done (run or skipped).
    fn advance(&self);
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Tally {
    pub completed: usize,
    pub failed: usize,
    pub skipped: usize,
}

pub fn run(experiment: &str, jobs: &[Job], store: &mut Store, fresh: bool, display: &dyn SweepDisplay, tracker: Option<&Tracker>) -> Result<Tally> {
    let mut tally = Tally::default();
    for job in jobs {
        let trial = &job.trial;
        if !fresh && store.status(&trial.id).as_deref() == Some(COMPLETED) {
            display.line(&format!("skip  {} {} (completed in an earlier run)", trial.id, trial.label()));
            tally.skipped += 1;
            display.advance();
            continue;
        }
        store.begin(experiment, trial)?;
        let started = Instant::now();
        let bar = display.trial_bar(&format!("{} {}", trial.id, trial.label()), trial.config.train.steps as u64);
        if let Some(tracker) = tracker {
            tracker.trial_started(trial, format!("{} {}", trial.id, trial.label()));
        }
        let start_ms = crate::track::now_ms();
        let mut recorder = Recorder { store, trial_id: &trial.id, started, start_ms, points: Vec::new(), bar: &bar, tracker };
        let result = catch_panics(|| {
            let dir = recorder.store.dir.trial_dir(&trial.id);
            train::train(&trial.config, job.data, job.device, &dir, &mut recorder)
        });
        let points = std::mem::take(&mut recorder.points);
        bar.finish_and_clear();
        let wall_s = started.elapsed().as_secs_f64();
        let ending = match result {
            Ok(outcome) => {
                tally.completed += 1;
                let summary = format!(
                    "done  {} {}: eval/loss {:.4}, eval/accuracy {:.3}, {:.0} tokens/s, {:.1}s",
                    trial.id,
                    trial.label(),
                    outcome.metrics["eval/loss"],
                    outcome.metrics["eval/accuracy"],
                    outcome.metrics["perf/tokens_per_s"],
                    wall_s
                );
                store.dir.log(&trial.id, &summary);
                display.line(&summary);
                Ending::Completed { params: outcome.params, tokens: outcome.tokens, flops: outcome.flops, metrics: outcome.metrics }
            }
            Err(error) => {
                tally.failed += 1;
                let error = format!("{error:#}");
                store.dir.log(&trial.id, &format!("failed: {error}"));
                display.line(&format!("FAIL  {} {}: {error}", trial.id, trial.label()));
                Ending::Failed { error }
            }
        };
        if let Some(tracker) = tracker {
            let error = match &ending {
                Ending::Failed { error } => Some(error.clone()),
                Ending::Completed { .. } => None,
            };
            tracker.trial_ended(&trial.id, error, vec![store.dir.trial_dir(&trial.id).join("config.toml")]);
        }
        store.finish(experiment, trial, ending, wall_s, &points)?;
        display.advance();
    }
    Ok(tally)
}

/// Runs `f`, turning a panic into an error carrying its message. tch's
/// non-`f_` methods panic on libtorch errors (a shape mismatch, out of
/// memory); for a sweep that is one failed trial, not a crashed run.
fn catch_panics<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    panic::set_hook(previous);
    result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(anyhow::anyhow!("libtorch error: {message}"))
    })
}

/// Collects a trial's metric points with their wall time, mirrors them into
/// the trial's log and drives its progress bar.
struct Recorder<'a> {
    store: &'a Store,
    trial_id: &'a str,
    started: Instant,
    /// The start as epoch milliseconds, for MLflow's timestamps.
    start_ms: i64,
    points: Vec<MetricPoint>,
    bar: &'a ProgressBar,
    tracker: Option<&'a Tracker>,
}

impl Observer for Recorder<'_> {
    fn metric(&mut self, step: i64, key: &str, value: f64) {
        let wall_s = self.started.elapsed().as_secs_f64();
        if !key.starts_with("train/") {
            self.store.dir.log(self.trial_id, &format!("step {step} {key} {value:.6} ({wall_s:.1}s)"));
        }
        self.points.push(MetricPoint { step, key: key.to_string(), value, wall_s });
        // JSON has no NaN or infinity, so MLflow's REST API cannot take them.
        if let Some(tracker) = self.tracker.filter(|_| value.is_finite()) {
            let timestamp = self.start_ms + (wall_s * 1000.0) as i64;
            tracker.metric(self.trial_id, Metric { key: key.to_string(), value, timestamp, step });
        }
    }

    fn step_done(&mut self, step: i64) {
        self.bar.set_position(step as u64);
    }

    fn loss_read(&mut self, _step: i64, loss: f64) {
        self.bar.set_message(format!("loss {loss:.3}"));
    }
}
