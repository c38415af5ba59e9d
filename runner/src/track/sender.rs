//! The background sender: takes records off the queue, keeps one MLflow
//! run per trial, and delivers metrics in `log-batch` requests of up to
//! MLflow's limit, at least once a second.
use super::client::{CallError, Client, KeyValue, Metric, MAX_METRICS};
use super::spool::Spool;
use super::{now_ms, Settings, TIMEOUT};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub enum Record {
    TrialStarted { trial_id: String, run_name: String, params: Vec<KeyValue>, start_ms: i64 },
    Metric { trial_id: String, metric: Metric },
    /// The trial goes on in a new attempt that measures steps again.
    TrialRestarted { trial_id: String },
    TrialEnded { trial_id: String, error: Option<String>, end_ms: i64, artifacts: Vec<PathBuf> },
    SweepArtifacts { artifacts: Vec<PathBuf> },
}

/// What the sender reports when the sweep ends.
pub struct Summary {
    pub problem: Option<String>,
}

const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// The first wait before asking a server that failed again; it doubles up
/// to [`MAX_BACKOFF`] while the server keeps failing.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

struct Sender {
    client: Client,
    experiment_id: String,
    parent: String,
    runs: HashMap<String, String>,
    pending: HashMap<String, Vec<Metric>>,
    problem: Option<String>,
    /// After a failed call the sender stops streaming: the server is down,
    /// slow or refusing. It asks again after a back-off; the trials whose
    /// records it dropped meanwhile stay in the spool, which delivers them
    /// at the end of the run or with `bertlab sync`.
    offline: bool,
    retry_at: Instant,
    backoff: Duration,
    /// Trials some record of which may not have arrived.
    incomplete: HashSet<String>,
    spool: Spool,
}

pub fn spawn(settings: Settings, tags: Vec<KeyValue>, records: Receiver<Record>, spool: Spool) -> JoinHandle<Summary> {
    std::thread::spawn(move || {
        let client = Client::new(settings.endpoint.clone(), TIMEOUT);
        let opened = client.experiment_id(&settings.experiment).and_then(|experiment_id| {
            let parent = super::sweep_parent(&client, &spool, &experiment_id)?;
            Ok((experiment_id, parent))
        });
        let (experiment_id, parent) = match opened {
            Ok(ids) => ids,
            Err(e) => {
                // Drain the queue so training never blocks on a full one;
                // the spool delivers later.
                for _ in records.iter() {}
                return Summary { problem: Some(e.to_string()) };
            }
        };
        let mut sender = Sender {
            client,
            experiment_id,
            parent,
            runs: HashMap::new(),
            pending: HashMap::new(),
            problem: None,
            offline: false,
            retry_at: Instant::now(),
            backoff: FIRST_BACKOFF,
            incomplete: HashSet::new(),
            spool,
        };
        sender.serve(&records, tags);
        Summary { problem: sender.problem }
    })
}

impl Sender {
    fn serve(&mut self, records: &Receiver<Record>, tags: Vec<KeyValue>) {
        let mut last_flush = Instant::now();
        loop {
            match records.recv_timeout(FLUSH_EVERY) {
                Ok(record) => self.take(record, &tags),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.offline && Instant::now() >= self.retry_at {
                self.probe();
            }
            let buffered: usize = self.pending.values().map(Vec::len).sum();
            if buffered >= MAX_METRICS || last_flush.elapsed() >= FLUSH_EVERY {
                self.flush_all();
                last_flush = Instant::now();
            }
        }
        self.flush_all();
        if !self.offline {
            let ended = self.client.finish_run(&self.parent, "FINISHED", now_ms());
            self.note(ended);
        }
    }

    fn take(&mut self, record: Record, sweep_tags: &[KeyValue]) {
        if self.offline {
            // Dropped here, so its trial must be delivered from the spool.
            if let Record::TrialStarted { trial_id, .. } | Record::Metric { trial_id, .. } | Record::TrialRestarted { trial_id } | Record::TrialEnded { trial_id, .. } = &record {
                self.incomplete.insert(trial_id.clone());
            }
            return;
        }
        match record {
            Record::TrialStarted { trial_id, run_name, params, start_ms } => {
                let run = self.trial_run(&trial_id, &run_name, start_ms, sweep_tags);
                if let Some(run_id) = run {
                    let logged = self.client.log_batch(&run_id, &[], &params, &[]);
                    self.note(logged);
                    self.runs.insert(trial_id, run_id);
                }
            }
            Record::Metric { trial_id, metric } => self.pending.entry(trial_id).or_default().push(metric),
            Record::TrialRestarted { trial_id } => {
                // Streaming the new attempt would log its steps a second
                // time: it stops here, and the spool's delivery, which
                // sends only what the server lacks, completes the run.
                self.flush(&trial_id);
                self.runs.remove(&trial_id);
                self.incomplete.insert(trial_id);
            }
            Record::SweepArtifacts { artifacts } => {
                let parent = self.parent.clone();
                self.upload(&parent, &artifacts);
            }
            Record::TrialEnded { trial_id, error, end_ms, artifacts } => {
                self.flush(&trial_id);
                let Some(run_id) = self.runs.get(&trial_id).cloned() else { return };
                self.upload(&run_id, &artifacts);
                {
                    if let Some(error) = &error {
                        let tag = KeyValue { key: "bertlab.error".into(), value: error.chars().take(5000).collect() };
                        let logged = self.client.log_batch(&run_id, &[], &[], &[tag]);
                        self.note(logged);
                    }
                    let status = if error.is_some() { "FAILED" } else { "FINISHED" };
                    let ended = self.client.finish_run(&run_id, status, end_ms);
                    self.note(ended);
                }
                if !self.offline && !self.incomplete.contains(&trial_id) {
                    self.spool.clear(&trial_id);
                }
            }
        }
    }

    /// The trial's new child run under this sweep's parent. A trial that
    /// already has a run (an earlier execution failed or was cut short) is
    /// not streamed: it stays in the spool, whose delivery compares with
    /// what the server holds, so no point is logged twice.
    fn trial_run(&mut self, trial_id: &str, run_name: &str, start_ms: i64, sweep_tags: &[KeyValue]) -> Option<String> {
        match self.client.runs_tagged(&self.experiment_id, super::TRIAL_TAG, trial_id) {
            Ok(runs) if !runs.is_empty() => {
                self.incomplete.insert(trial_id.to_string());
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                self.note::<()>(Err(e));
                return None;
            }
        }
        let tags = super::trial_tags(sweep_tags, &self.parent, trial_id);
        let created = self.client.create_run(&self.experiment_id, run_name, start_ms, &tags);
        match created {
            Ok(id) => Some(id),
            Err(e) => {
                self.note::<()>(Err(e));
                None
            }
        }
    }

    fn flush_all(&mut self) {
        let trials: Vec<String> = self.pending.keys().cloned().collect();
        for trial in trials {
            self.flush(&trial);
        }
    }

    fn flush(&mut self, trial_id: &str) {
        let Some(points) = self.pending.remove(trial_id).filter(|p| !p.is_empty()) else { return };
        if self.offline {
            self.incomplete.insert(trial_id.to_string());
            return;
        }
        let Some(run_id) = self.runs.get(trial_id).cloned() else {
            self.incomplete.insert(trial_id.to_string());
            return;
        };
        let logged = self.client.log_batch(&run_id, &points, &[], &[]);
        if logged.is_err() {
            self.incomplete.insert(trial_id.to_string());
        }
        self.note(logged);
    }

    /// Files into the run's artifact store, through the server's
    /// `mlflow-artifacts` proxy. Runs whose artifacts live elsewhere (a
    /// path on the server, a bucket) are skipped: the server cannot take
    /// them and bertlab holds no cloud credentials.
    fn upload(&mut self, run_id: &str, files: &[PathBuf]) {
        let run = match self.client.run(run_id) {
            Ok(run) => run,
            Err(e) => return self.note::<()>(Err(e)),
        };
        let Some(root) = run["info"]["artifact_uri"].as_str().and_then(|u| u.strip_prefix("mlflow-artifacts:")) else { return };
        let root = root.trim_start_matches('/').to_string();
        for file in files {
            let Ok(bytes) = std::fs::read(file) else { continue };
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let uploaded = self.client.upload_artifact(&root, &name, bytes);
            self.note(uploaded);
        }
    }

    /// Keeps the first delivery problem for the end-of-run message and
    /// stops streaming until the back-off has passed.
    fn note<T>(&mut self, result: Result<T, CallError>) {
        if let Err(e) = result {
            tracing::debug!("{e}");
            if !self.offline {
                self.offline = true;
                self.retry_at = Instant::now() + self.backoff;
            }
            self.problem.get_or_insert_with(|| e.to_string());
        }
    }

    /// Asks the server for the sweep's run: an answer resumes streaming
    /// (new trials only; the others wait in the spool), a failure doubles
    /// the wait.
    fn probe(&mut self) {
        match self.client.run(&self.parent) {
            Ok(_) => {
                tracing::debug!("MLflow answers again; streaming resumes");
                self.offline = false;
                self.backoff = FIRST_BACKOFF;
            }
            Err(e) => {
                tracing::debug!("MLflow still failing: {e}");
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                self.retry_at = Instant::now() + self.backoff;
            }
        }
    }
}
