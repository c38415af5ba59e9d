//! A run's results on disk: `runs/<name>/trials.parquet` (one row per
//! trial), `metrics.parquet` (every metric point, long format) and
//! `trials/<trial_id>/` (resolved `config.toml`, `log.txt`, checkpoint).
//! Tables are rewritten whole, atomically, after every trial, so a crash
//! loses at most the trial that was running and never a table.
pub mod run_dir;
pub mod table;

use crate::trial::Trial;
use anyhow::Result;
pub use run_dir::RunDir;
use std::collections::BTreeMap;
use table::{Cell, Row, Table};

pub const COMPLETED: &str = "completed";
pub const FAILED: &str = "failed";
pub const RUNNING: &str = "running";

/// One metric point as recorded in `metrics.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub step: i64,
    pub key: String,
    pub value: f64,
    /// Seconds since the trial started.
    pub wall_s: f64,
}

/// How a trial ended, for its row in `trials.parquet`.
pub enum Ending {
    Completed { params: i64, tokens: i64, flops: f64, metrics: BTreeMap<String, f64> },
    Failed { error: String },
}

/// The ids of the trials completed in the run folder `root`, without
/// creating it (for `plan`).
pub fn completed_ids(root: &std::path::Path) -> Result<std::collections::HashSet<String>> {
    let trials = Table::read(&root.join(run_dir::TRIALS_FILE))?;
    let text = |row: &Row, column: &str| match row.get(column) {
        Some(Cell::Text(s)) => Some(s.clone()),
        _ => None,
    };
    Ok(trials.rows().iter().filter(|r| text(r, "status").as_deref() == Some(COMPLETED)).filter_map(|r| text(r, "trial_id")).collect())
}

pub struct Store {
    pub dir: RunDir,
    trials: Table,
    metrics: Table,
}

impl Store {
    /// Opens (creating if needed) a run folder, reading the tables a
    /// previous run left there.
    pub fn open(root: &std::path::Path) -> Result<Store> {
        let dir = RunDir::create(root)?;
        let trials = Table::read(&dir.trials_path())?;
        let metrics = Table::read(&dir.metrics_path())?;
        Ok(Store { dir, trials, metrics })
    }

    pub fn status(&self, trial_id: &str) -> Option<String> {
        self.trials
            .find(|row| row.get("trial_id") == Some(&Cell::Text(trial_id.into())))
            .and_then(|row| match row.get("status") {
                Some(Cell::Text(s)) => Some(s.clone()),
                _ => None,
            })
    }

    /// Records that `trial` started: its row (status `running`), its
    /// `config.toml`, and a fresh log.
    pub fn begin(&mut self, experiment: &str, trial: &Trial) -> Result<()> {
        self.dir.write_trial_config(experiment, trial)?;
        let row = base_row(experiment, trial, RUNNING);
        self.trials.upsert("trial_id", row);
        self.trials.write(&self.dir.trials_path())
    }

    /// Records how `trial` ended with its metric series, replacing any
    /// earlier attempt's rows.
    pub fn finish(&mut self, experiment: &str, trial: &Trial, ending: Ending, wall_s: f64, points: &[MetricPoint]) -> Result<()> {
        let id = Cell::Text(trial.id.clone());
        self.metrics.retain(|row| row.get("trial_id") != Some(&id));
        for p in points {
            self.metrics.push(Row::from([
                ("trial_id".to_string(), id.clone()),
                ("step".to_string(), Cell::Int(p.step)),
                ("key".to_string(), Cell::Text(p.key.clone())),
                ("value".to_string(), Cell::Float(p.value)),
                ("wall_s".to_string(), Cell::Float(p.wall_s)),
            ]));
        }
        let mut row = match &ending {
            Ending::Completed { .. } => base_row(experiment, trial, COMPLETED),
            Ending::Failed { .. } => base_row(experiment, trial, FAILED),
        };
        match ending {
            Ending::Completed { params, tokens, flops, metrics } => {
                row.insert("params".into(), Cell::Int(params));
                row.insert("tokens".into(), Cell::Int(tokens));
                row.insert("flops".into(), Cell::Float(flops));
                row.extend(metrics.into_iter().map(|(k, v)| (k, Cell::Float(v))));
                row.insert("error".into(), Cell::Null);
            }
            Ending::Failed { error } => {
                row.insert("error".into(), Cell::Text(error));
            }
        }
        row.insert("wall_s".into(), Cell::Float(wall_s));
        self.trials.upsert("trial_id", row);
        // Metrics first: a trial marked completed always has its series.
        self.metrics.write(&self.dir.metrics_path())?;
        self.trials.write(&self.dir.trials_path())
    }
}

fn base_row(experiment: &str, trial: &Trial, status: &str) -> Row {
    let mut row = Row::from([
        ("trial_id".to_string(), Cell::Text(trial.id.clone())),
        ("experiment".to_string(), Cell::Text(experiment.to_string())),
        ("status".to_string(), Cell::Text(status.to_string())),
        ("seed".to_string(), Cell::Int(trial.config.seed as i64)),
    ]);
    // Fine-tuned trials say which task, for the report's model selection.
    if let Some(task) = &trial.task {
        row.insert("task".into(), Cell::Text(task.clone()));
    }
    for (key, value) in trial.swept.iter().chain(&trial.derived) {
        row.insert(key.clone(), Cell::from_json(&resolved_value(trial, key).unwrap_or_else(|| value.clone())));
    }
    row
}

/// The value a swept key took after resolution: typed by its section (a
/// `0` swept for `model.dropout` is recorded as the float it became).
fn resolved_value(trial: &Trial, key: &str) -> Option<serde_json::Value> {
    let (section, name) = key.split_once('.')?;
    let config = serde_json::to_value(&trial.config).ok()?;
    config.get(section)?.get(name).cloned()
}
