//! One trial's bookkeeping from its claim to its end, whichever process
//! trains it: the claim and the record (through the store's writer), the
//! log, the progress bar, the metric points (with their wall time) and the
//! MLflow records; at the end the summary line and the trial's final row.
use crate::data::Dataset;
use crate::store::{self, Claimed, Ending, Resume, Store};
use runfolder::{MetricPoint, RunFolder, TrialWriter};
use crate::trial::Trial;
use crate::track::client::Metric;
use crate::track::Tracker;
use crate::train::{Observer, Outcome, Stopped};
use anyhow::Result;
use runfolder::{checkpoints, TrialStatus};
use std::path::Path;
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
    /// Stopped before their end, checkpoints kept (a signal, a failed write).
    pub interrupted: usize,
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
    /// The checkpoint this attempt goes on from.
    pub resume: Option<Resume>,
    /// When the trial would have started had it never stopped: its points'
    /// wall time goes on from a checkpoint's.
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
        let (writer, resume) = match store.begin(sinks.experiment, trial, fresh)? {
            Claimed::Mine(writer, resume) => (writer, resume),
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
        if let Some(resume) = &resume {
            let line = format!("resume {} {} at step {}", trial.id, trial.label(), resume.step);
            store.folder.log(&trial.id, &line);
            sinks.display.line(&line);
        }
        let bar = sinks.display.trial_bar(&label, trial.config.train.steps as u64);
        bar.set_position(resume.as_ref().map_or(0, |r| r.step) as u64);
        if let Some(tracker) = sinks.tracker {
            tracker.trial_started(writer.record());
        }
        let offset = std::time::Duration::from_secs_f64(resume.as_ref().map_or(0.0, |r| r.wall_s));
        Ok(Some(Session {
            trial,
            folder: store.folder.clone(),
            writer,
            started: Instant::now().checked_sub(offset).unwrap_or_else(Instant::now),
            resume,
            bar,
            budget: trial.config.train.budget_duration(),
            tracker: sinks.tracker,
        }))
    }

    /// The worker training this trial died (`why`, in words): a new one
    /// goes on from the newest checkpoint (or from the start), in a new
    /// attempt.
    pub fn retry(&mut self, why: &str, sinks: &Sinks) -> Result<()> {
        let dir = self.folder.trial_dir(&self.trial.id);
        checkpoints::remove_partial(&dir);
        self.resume = store::newest_checkpoint(&dir);
        if let Some(tracker) = sinks.tracker {
            tracker.trial_restarted(&self.trial.id);
        }
        let step = self.resume.as_ref().map(|r| r.step);
        self.writer.retried(step)?;
        let line = format!("retry {} {} from step {} ({why})", self.trial.id, self.trial.label(), step.unwrap_or(0));
        self.folder.log(&self.trial.id, &line);
        sinks.display.line(&line);
        Ok(())
    }

    /// Retries used on this trial.
    pub fn retries(&self) -> u32 {
        self.writer.record().retries
    }

    /// Records how the trial ended, in the tables, the log, the display and
    /// MLflow. A trial stopped by a failed write is recorded `interrupted`
    /// and the error returned: the sweep stops (the disk is full for every
    /// trial).
    pub fn close(self, result: Result<Outcome>, sinks: &Sinks, tally: &mut Tally) -> Result<()> {
        let trial = self.trial;
        self.bar.finish_and_clear();
        let wall_s = self.started.elapsed().as_secs_f64();
        let mut stop = None;
        let ending = match (Stopped::rung_of(&result), result) {
            // Whether it goes on is the sweep's decision, said next.
            (Some(rung), _) => Ending::Pruned { rung },
            (None, Ok(outcome)) => {
                tally.completed += 1;
                let summary = format!("done  {} {}: {}, {:.1}s", trial.id, trial.label(), headline(&outcome.metrics), wall_s);
                self.folder.log(&trial.id, &summary);
                sinks.display.line(&summary);
                Ending::Completed { params: outcome.params, tokens: outcome.tokens, flops: outcome.flops, metrics: outcome.metrics }
            }
            (None, Err(error)) if error.downcast_ref::<Stopped>().is_some() => {
                tally.interrupted += 1;
                let reason = error.to_string();
                let at = self.writer.record().checkpoint.map_or("no checkpoint".to_string(), |c| format!("checkpoint at step {}", c.step));
                let line = format!("stop  {} {} at step {}: {reason}; {at}", trial.id, trial.label(), self.writer.record().step);
                self.folder.log(&trial.id, &line);
                sinks.display.line(&line);
                // A write refused because another process took the trial
                // over is that trial's end here, not a full disk: the
                // sweep goes on, and `finish` below says it was lost.
                if matches!(error.downcast_ref::<Stopped>(), Some(Stopped::Storage(_))) && !self.writer.lost() {
                    stop = Some(error);
                }
                Ending::Interrupted { reason }
            }
            (None, Err(error)) => {
                tally.failed += 1;
                let error = format!("{error:#}");
                self.folder.log(&trial.id, &format!("failed: {error}"));
                sinks.display.line(&format!("FAIL  {} {}: {error}", trial.id, trial.label()));
                Ending::Failed { error }
            }
        };
        if let Some(tracker) = sinks.tracker {
            match &ending {
                Ending::Failed { error } => tracker.trial_ended(&trial.id, Some(error.clone()), self.artifacts()),
                Ending::Completed { .. } => tracker.trial_ended(&trial.id, None, self.artifacts()),
                // Its MLflow run stays open: the resumed trial goes on in it.
                Ending::Interrupted { .. } | Ending::Pruned { .. } => {}
            }
        }
        let (status, row) = store::final_row(sinks.experiment, trial, ending, wall_s);
        let finished = self.writer.finish(status, row);
        // A trial paused at a rung is not done with.
        if status != TrialStatus::Pruned {
            sinks.display.advance();
        }
        if let Some(stop) = stop {
            // The write that failed is the news, not the record after it.
            return Err(stop);
        }
        match finished? {
            None => sinks.display.line(&format!("lost  {} {}: another process took it over (this one's heartbeat looked stale); its record is theirs", trial.id, trial.label())),
            // Its final weights are saved and a completed trial is never
            // resumed: its checkpoints go, removed by the process that put
            // them in place, once the record says it is complete.
            Some(record) if record.status == TrialStatus::Completed => checkpoints::remove_all(&self.folder.trial_dir(&trial.id)),
            Some(_) => {}
        }
        Ok(())
    }

    /// A line of the trial's `log.txt` about `step`, at `wall_s` seconds in.
    fn log_at(&self, step: i64, text: &str, wall_s: f64) {
        self.folder.log(&self.trial.id, &format!("step {step} {text} ({wall_s:.1}s)"));
    }

    fn artifacts(&self) -> Vec<std::path::PathBuf> {
        vec![self.folder.trial_dir(&self.trial.id).join(runfolder::names::CONFIG)]
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
            self.log_at(step, &format!("{key} {value:.6}"), wall_s);
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

    fn note(&mut self, step: i64, text: &str) {
        self.log_at(step, text, self.started.elapsed().as_secs_f64());
    }

    fn loss_read(&mut self, _step: i64, loss: f64) {
        self.bar.set_message(format!("loss {loss:.3}"));
    }

    /// Puts the checkpoint in place once the points up to its step are on
    /// disk, then says so in the record.
    fn checkpoint(&mut self, step: i64, staged: &Path) -> Result<()> {
        self.writer.durable()?;
        checkpoints::commit(staged, self.trial.config.train.keep_checkpoints as usize)?;
        self.writer.checkpointed(step);
        Ok(())
    }
}
