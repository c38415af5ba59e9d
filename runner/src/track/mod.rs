//! Tracking in MLflow: on when `MLFLOW_TRACKING_URI` (or `[tracking]
//! mlflow_uri`) is set. One parent run per run folder, kept in its spool's
//! target so that every process running trials there, and a later `sync`,
//! nests under it; one child run per trial (found again by its
//! `bertlab.trial_id` tag on a re-run), params = the trial's resolved
//! configuration from its record, metrics = every point of
//! `metrics.parquet`. Live logging and `sync` name, tag and parametrise a
//! trial's run through the same functions here. Records go through a
//! bounded queue to a background sender that batches them, so training
//! never waits on the network.
pub mod client;
pub mod reconcile;
mod sender;
pub mod spool;

use client::{CallError, Client, Endpoint, KeyValue, Metric};
use runfolder::TrialRecord;
use sender::Record;
use spool::{Spool, Target};
use std::path::{Path, PathBuf};
use std::time::Duration;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where to track, from the environment and the experiment file.
#[derive(Debug, Clone)]
pub struct Settings {
    pub endpoint: Endpoint,
    /// `MLFLOW_EXPERIMENT_NAME`, else the bertlab experiment's name.
    pub experiment: String,
}

impl Settings {
    /// `None` when tracking is off. The environment wins over the file,
    /// as the other layers of configuration do.
    pub fn resolve(file_uri: Option<&str>, experiment: &str) -> Option<Settings> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let uri = var("MLFLOW_TRACKING_URI").or_else(|| file_uri.map(String::from))?;
        Some(Settings {
            endpoint: Endpoint::with_env_credentials(&uri),
            experiment: var("MLFLOW_EXPERIMENT_NAME").unwrap_or_else(|| experiment.to_string()),
        })
    }
}

/// Queue capacity: enough for minutes of per-step metrics while the server
/// is slow, small enough to bound memory.
const QUEUE: usize = 100_000;

/// The sweep's connection to MLflow. Dropping it (or [`Tracker::finish`])
/// waits for the sender to deliver what is queued.
pub struct Tracker {
    queue: Option<SyncSender<Record>>,
    sender: Option<JoinHandle<sender::Summary>>,
    spool: Spool,
    /// The trials this tracker streams, claimed until it finishes.
    streaming: std::sync::Mutex<Vec<runfolder::claim::Claim>>,
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

impl Tracker {
    /// Starts the sender for a sweep whose run folder is `run_dir`; the
    /// folder's spool remembers what may not have reached the server.
    pub fn start(settings: Settings, run_dir: &Path, sweep_name: &str, tags: Vec<KeyValue>) -> Tracker {
        let spool = Spool::in_run(run_dir);
        // The folder's parent run stays while the server and experiment do.
        let parent_run_id = spool.target().filter(|t| t.uri == settings.endpoint.uri && t.experiment == settings.experiment).and_then(|t| t.parent_run_id);
        let target = Target { uri: settings.endpoint.uri.clone(), experiment: settings.experiment.clone(), parent_run_id, sweep_name: sweep_name.into(), tags };
        if let Err(e) = spool.set_target(&target) {
            tracing::warn!("cannot write the tracking spool in {}: {e}", run_dir.display());
        }
        let (queue, records) = sync_channel(QUEUE);
        let sender = sender::spawn(settings, target.tags, records, spool);
        Tracker { queue: Some(queue), sender: Some(sender), spool: Spool::in_run(run_dir), streaming: Default::default() }
    }

    /// Never blocks while the queue has room; when it is full the caller
    /// waits rather than losing a record.
    fn send(&self, record: Record) {
        let Some(queue) = &self.queue else { return };
        if let Err(TrySendError::Full(record)) = queue.try_send(record) {
            let _ = queue.send(record);
        }
    }

    pub fn trial_started(&self, trial: &TrialRecord) {
        // Marked before anything is sent: until the sender confirms the
        // whole trial, the spool says it may be incomplete in MLflow.
        if let Err(e) = self.spool.mark(&trial.trial_id) {
            tracing::warn!("cannot mark {} in the tracking spool: {e}", trial.trial_id);
        }
        if let Some(claim) = self.spool.streaming(&trial.trial_id) {
            self.streaming.lock().expect("not poisoned").push(claim);
        }
        self.send(Record::TrialStarted { trial_id: trial.trial_id.clone(), run_name: run_name(trial), params: params(trial), start_ms: now_ms() });
    }

    pub fn metric(&self, trial_id: &str, metric: Metric) {
        self.send(Record::Metric { trial_id: trial_id.to_string(), metric });
    }

    /// The trial's worker died and a new attempt measures its steps after
    /// the checkpoint again.
    pub fn trial_restarted(&self, trial_id: &str) {
        self.send(Record::TrialRestarted { trial_id: trial_id.to_string() });
    }

    /// The trial is over; `artifacts` (its `config.toml`) go to its run.
    pub fn trial_ended(&self, trial_id: &str, error: Option<String>, artifacts: Vec<PathBuf>) {
        self.send(Record::TrialEnded { trial_id: trial_id.to_string(), error, end_ms: now_ms(), artifacts });
    }

    /// Files for the sweep's parent run (the report).
    pub fn sweep_artifacts(&self, artifacts: Vec<PathBuf>) {
        self.send(Record::SweepArtifacts { artifacts });
    }

    /// Closes the parent run and waits for everything queued to be sent;
    /// returns what could not be delivered, in words, if anything.
    pub fn finish(mut self) -> Option<String> {
        self.queue.take();
        let problem = self.sender.take().and_then(|s| s.join().ok()).and_then(|summary| summary.problem);
        // Sent (or left in the spool): other processes may deliver them now.
        self.streaming.lock().expect("not poisoned").clear();
        problem
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
    }
}

/// How long one request may take before the server counts as unreachable.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Delivers what the spool of `run_dir` holds, to the target it names;
/// `None` when nothing is pending. Used by `run` at its start and end and
/// by `bertlab sync`.
pub fn deliver_spool(run_dir: &Path) -> Option<Result<reconcile::Delivered, client::CallError>> {
    let spool = Spool::in_run(run_dir);
    if spool.pending().is_empty() {
        return None;
    }
    let target = spool.target()?;
    let client = Client::new(Endpoint::with_env_credentials(&target.uri), TIMEOUT);
    Some(reconcile::deliver(&client, run_dir))
}

/// Trials still waiting in the spool of `run_dir`.
pub fn pending(run_dir: &Path) -> usize {
    Spool::in_run(run_dir).pending().len()
}

/// A trial's MLflow run name: its id and label.
fn run_name(trial: &TrialRecord) -> String {
    format!("{} {}", trial.trial_id, trial.label)
}

/// A trial's params: its resolved configuration flattened to dotted keys.
fn params(trial: &TrialRecord) -> Vec<KeyValue> {
    flatten_config(&trial.config)
}

/// A trial run's tags: the sweep's, its parent, its id.
fn trial_tags(sweep_tags: &[KeyValue], parent: &str, trial_id: &str) -> Vec<KeyValue> {
    let mut tags: Vec<KeyValue> = sweep_tags.iter().filter(|t| t.key != "mlflow.runName").cloned().collect();
    tags.push(KeyValue { key: "mlflow.parentRunId".into(), value: parent.into() });
    tags.push(KeyValue { key: TRIAL_TAG.into(), value: trial_id.into() });
    tags
}

/// The tag that finds a trial's run again.
const TRIAL_TAG: &str = "bertlab.trial_id";

/// The run folder's parent run: the one its spool names if the server still
/// has it, else a new one (recorded in the spool). Taken under a lock in
/// the spool, so processes starting together make one.
fn sweep_parent(client: &Client, spool: &Spool, experiment_id: &str) -> Result<String, CallError> {
    let local = |e: std::io::Error| CallError { call: "locking the tracking spool".into(), message: e.to_string(), code: None };
    let _lock = spool.lock_parent().map_err(local)?;
    let mut target = spool.target().unwrap_or_default();
    if let Some(parent) = target.parent_run_id.as_ref().filter(|id| client.run(id).is_ok()) {
        return Ok(parent.clone());
    }
    let name = if target.sweep_name.is_empty() { target.experiment.clone() } else { target.sweep_name.clone() };
    let parent = client.create_run(experiment_id, &name, now_ms(), &target.tags)?;
    target.parent_run_id = Some(parent.clone());
    spool.set_target(&target).map_err(local)?;
    Ok(parent)
}

/// A configuration's params: its dotted keys ([`crate::config::dotted`]).
pub fn flatten_config(config: &serde_json::Value) -> Vec<KeyValue> {
    crate::config::dotted::flatten(config).into_iter().map(|(key, value)| KeyValue { key, value }).collect()
}
