//! One trial's bookkeeping from its claim to its end, whichever process
//! trains it: the claim and the record (through the store's writer), the
//! log, the progress bar, the metric points (with their wall time) and the
//! MLflow records; at the end the summary line and the trial's final row.
use crate::data::Dataset;
use crate::store::{self, Claimed, Ending, Store};
use runfolder::{MetricPoint, RunFolder, TrialWriter};
use crate::trial::Trial;
use crate::track::client::Metric;
use crate::track::Tracker;
use crate::train::{Observer, Outcome};
use anyhow::Result;
use indicatif::ProgressBar;
use std::time::Instant;
use tch::Device;

/// A trial ready to run: its data and device resolved.
pub struct Job<'a> {
    pub trial: Trial,
    pub data: &'a Dataset,
    pub device: Device,
}

/// What the sweep display needs from its caller.
pub trait SweepDisplay: Sync {
    /// A message for the user (above the bars on a terminal).
    fn line(&self, message: &str);
    /// A progress bar for one trial of `steps` steps.
    fn trial_bar(&self, label: &str, steps: u64) -> ProgressBar;
    /// One trial is done (run or skipped).
    fn advance(&self);
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    pub completed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// The owner (`host:pid`) of each trial left to another process.
    pub left: Vec<String>,
}

/// Where a sweep's records go.
pub struct Sinks<'a> {
    pub experiment: &'a str,
    pub display: &'a dyn SweepDisplay,
    pub tracker: Option<&'a Tracker>,
}

pub struct Session<'a> {
    trial: &'a Trial,
    folder: RunFolder,
    writer: TrialWriter,
    started: Instant,
    bar: ProgressBar,
    /// `train.budget`, which the bar's length follows.
    budget: Option<std::time::Duration>,
    tracker: Option<&'a Tracker>,
}

impl<'a> Session<'a> {
    /// Claims the trial, records it as running and opens its progress bar;
    /// `None` (said on the display and counted) when another process holds
    /// it or completed it meanwhile.
    pub fn open(trial: &'a Trial, store: &Store, fresh: bool, sinks: &Sinks<'a>, tally: &mut Tally) -> Result<Option<Session<'a>>> {
        let writer = match store.begin(sinks.experiment, trial, fresh)? {
            Claimed::Mine(writer) => writer,
            Claimed::Theirs(held) => {
                sinks.display.line(&format!("left  {} {} to {} (training it)", trial.id, trial.label(), held.owner));
                tally.left.push(held.owner.to_string());
                sinks.display.advance();
                return Ok(None);
            }
            Claimed::Completed => {
                sinks.display.line(&format!("skip  {} {} (completed by another run)", trial.id, trial.label()));
                tally.skipped += 1;
                sinks.display.advance();
                return Ok(None);
            }
        };
        let label = format!("{} {}", trial.id, trial.label());
        let bar = sinks.display.trial_bar(&label, trial.config.train.steps as u64);
        if let Some(tracker) = sinks.tracker {
            tracker.trial_started(writer.record());
        }
        Ok(Some(Session {
            trial,
            folder: store.folder.clone(),
            writer,
            started: Instant::now(),
            bar,
            budget: trial.config.train.budget_duration(),
            tracker: sinks.tracker,
        }))
    }

    /// Records how the trial ended, in the tables, the log, the display and
    /// MLflow.
    pub fn close(self, result: Result<Outcome>, sinks: &Sinks, tally: &mut Tally) -> Result<()> {
        let trial = self.trial;
        self.bar.finish_and_clear();
        let wall_s = self.started.elapsed().as_secs_f64();
        let ending = match result {
            Ok(outcome) => {
                tally.completed += 1;
                let summary = format!("done  {} {}: {}, {:.1}s", trial.id, trial.label(), headline(&outcome.metrics), wall_s);
                self.folder.log(&trial.id, &summary);
                sinks.display.line(&summary);
                Ending::Completed { params: outcome.params, tokens: outcome.tokens, flops: outcome.flops, metrics: outcome.metrics }
            }
            Err(error) => {
                tally.failed += 1;
                let error = format!("{error:#}");
                self.folder.log(&trial.id, &format!("failed: {error}"));
                sinks.display.line(&format!("FAIL  {} {}: {error}", trial.id, trial.label()));
                Ending::Failed { error }
            }
        };
        if let Some(tracker) = sinks.tracker {
            let error = match &ending {
                Ending::Failed { error } => Some(error.clone()),
                Ending::Completed { .. } => None,
            };
            tracker.trial_ended(&trial.id, error, vec![self.folder.trial_dir(&trial.id).join(runfolder::names::CONFIG)]);
        }
        let (status, row) = store::final_row(sinks.experiment, trial, ending, wall_s);
        if self.writer.finish(status, row)?.is_none() {
            sinks.display.line(&format!("lost  {} {}: another process took it over (this one's heartbeat looked stale); its record is theirs", trial.id, trial.label()));
        }
        sinks.display.advance();
        Ok(())
    }
}

/// The final evaluation numbers (loss first) and the throughput, for the
/// line that says a trial is done.
fn headline(metrics: &std::collections::BTreeMap<String, f64>) -> String {
    let loss = metrics.get_key_value("eval/loss");
    let others = metrics.iter().filter(|(key, _)| key.starts_with("eval/") && *key != "eval/loss");
    let mut parts: Vec<String> = loss.into_iter().chain(others).map(|(key, value)| format!("{key} {value:.4}")).collect();
    parts.extend(metrics.get("perf/tokens_per_s").map(|t| format!("{t:.0} tokens/s")));
    parts.join(", ")
}

impl Observer for Session<'_> {
    fn metric(&mut self, step: i64, key: &str, value: f64) {
        let wall_s = self.started.elapsed().as_secs_f64();
        if !key.starts_with("train/") {
            self.folder.log(&self.trial.id, &format!("step {step} {key} {value:.6} ({wall_s:.1}s)"));
        }
        self.writer.point(MetricPoint { step, key: key.to_string(), value, wall_s });
        // JSON has no NaN or infinity, so MLflow's REST API cannot take them.
        if let Some(tracker) = self.tracker.filter(|_| value.is_finite()) {
            // The record's start, in epoch ms, is MLflow's time origin.
            let timestamp = self.writer.record().started_ms + (wall_s * 1000.0) as i64;
            tracker.metric(&self.trial.id, Metric { key: key.to_string(), value, timestamp, step });
        }
    }

    fn step_done(&mut self, step: i64) {
        self.writer.progress(step);
        self.bar.set_position(step as u64);
        // Under a time budget the last step is not known in advance: the bar
        // shows the steps the budget will allow at the pace so far.
        if let Some(budget) = self.budget {
            let elapsed = self.started.elapsed().as_secs_f64();
            if elapsed > 1.0 {
                let projected = step as f64 * budget.as_secs_f64() / elapsed;
                self.bar.set_length(projected.clamp(step as f64, self.trial.config.train.steps as f64) as u64);
            }
        }
    }

    fn loss_read(&mut self, _step: i64, loss: f64) {
        self.bar.set_message(format!("loss {loss:.3}"));
    }
}
