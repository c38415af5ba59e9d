//! What bertlab records of a trial in its run folder, in the folder's own
//! format ([`runfolder`]): the row a trial gets (its id, experiment, seed,
//! swept and derived values typed as they resolved; at the end its size,
//! metrics and wall time, or its error), its `config.toml`, and claiming a
//! trial before training it so that processes sharing the folder never
//! train one twice.
use crate::trial::Trial;
use anyhow::Result;
use runfolder::checkpoints;
use runfolder::claim::{Attempt, Held};
use runfolder::names::column;
use runfolder::writer::Start;
use runfolder::{Cell, Row, RunFolder, TrialStatus, TrialWriter};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// How a trial ended, for its row in `trials.parquet`.
pub enum Ending {
    Completed { params: i64, tokens: i64, flops: f64, metrics: BTreeMap<String, f64> },
    Failed { error: String },
    /// Stopped before its end, its checkpoint kept (why, in words).
    Interrupted { reason: String },
    /// Paused at an early-stopping rung, its checkpoint kept.
    Pruned { rung: i64 },
}

/// A run folder `bertlab run` made (moved to the per-trial layout if it is
/// older), for the commands that read one; any other path is bad input.
pub fn existing(root: &std::path::Path) -> Result<RunFolder> {
    if RunFolder::existing(root).is_none() {
        return Err(crate::InputError::new(format!("not a run folder (no {}/)", runfolder::names::TRIALS_DIR)).in_file(root).into());
    }
    RunFolder::open(root)
}

/// The ids of the trials completed in the run folder `root`, without
/// creating it (for `plan`).
pub fn completed_ids(root: &std::path::Path) -> Result<HashSet<String>> {
    if RunFolder::existing(root).is_none() {
        return Ok(HashSet::new());
    }
    let folder = existing(root)?;
    Ok(folder.trials()?.into_iter().filter(|t| t.status == TrialStatus::Completed).map(|t| t.record.trial_id).collect())
}

/// What claiming a trial found.
pub enum Claimed {
    /// This process trains it: the writer holds the claim; from the
    /// checkpoint when there is one to go on from.
    Mine(TrialWriter, Option<Resume>),
    /// Another process holds it.
    Theirs(Held),
    /// Completed (by another process, since this one looked).
    Completed,
}

/// The checkpoint an unfinished trial goes on from.
#[derive(Debug, Clone)]
pub struct Resume {
    pub step: i64,
    pub path: PathBuf,
    /// The trial's wall time at the checkpoint, where its clock goes on.
    pub wall_s: f64,
}

pub struct Store {
    pub folder: RunFolder,
}

impl Store {
    /// Opens (creating if needed) a run folder.
    pub fn open(root: &std::path::Path) -> Result<Store> {
        Ok(Store { folder: RunFolder::open(root)? })
    }

    pub fn status(&self, trial_id: &str) -> Option<TrialStatus> {
        self.folder.trial(trial_id).map(|t| t.status)
    }

    /// Claims `trial` and, if this process got it, records that it
    /// started: its `config.toml`, its record (status `running`), a new
    /// attempt in its points. An unfinished trial (interrupted, or whose
    /// owner died) goes on from its newest checkpoint; `fresh` starts over,
    /// and trains a completed trial again; a failed one starts over too.
    pub fn begin(&self, experiment: &str, trial: &Trial, fresh: bool) -> Result<Claimed> {
        let claim = match self.folder.claim(&trial.id)? {
            Attempt::Theirs(held) => return Ok(Claimed::Theirs(held)),
            Attempt::Mine(claim) => claim,
        };
        // Looked at again under the claim: another process may have
        // completed it between this one's first look and its claim.
        if !fresh && self.status(&trial.id) == Some(TrialStatus::Completed) {
            return Ok(Claimed::Completed);
        }
        let dir = self.folder.trial_dir(&trial.id);
        checkpoints::remove_partial(&dir);
        let resume = match self.status(&trial.id) {
            Some(TrialStatus::Running | TrialStatus::Interrupted | TrialStatus::Pruned) if !fresh => newest_checkpoint(&dir),
            _ => {
                checkpoints::remove_all(&dir);
                None
            }
        };
        self.folder.write_config(&trial.id, &config_text(experiment, trial)?)?;
        if resume.is_none() {
            std::fs::File::create(dir.join(runfolder::names::LOG))?;
        }
        let start = Start {
            trial_id: trial.id.clone(),
            experiment: experiment.into(),
            label: trial.label(),
            config: serde_json::to_value(&trial.config)?,
            steps: trial.config.train.steps,
            row: base_row(experiment, trial),
            resume_from: resume.as_ref().map(|r| r.step),
        };
        Ok(Claimed::Mine(TrialWriter::start(self.folder.root.clone(), claim, start)?, resume))
    }
}

/// The newest checkpoint of the trial folder `dir` whose header reads.
pub fn newest_checkpoint(dir: &Path) -> Option<Resume> {
    checkpoints::list(dir).into_iter().find_map(|(step, path)| match crate::train::checkpoint::place_of(&path) {
        Ok(place) => Some(Resume { step, path, wall_s: place.wall_s }),
        Err(e) => {
            tracing::warn!("{e:#}: not resumed from");
            None
        }
    })
}

/// The trial's final row: what it was, and how it ended.
pub fn final_row(experiment: &str, trial: &Trial, ending: Ending, wall_s: f64) -> (TrialStatus, Row) {
    let mut row = base_row(experiment, trial);
    let status = match ending {
        Ending::Completed { params, tokens, flops, metrics } => {
            row.insert(column::PARAMS.into(), Cell::Int(params));
            row.insert(column::TOKENS.into(), Cell::Int(tokens));
            row.insert(column::FLOPS.into(), Cell::Float(flops));
            row.extend(metrics.into_iter().map(|(k, v)| (k, Cell::Float(v))));
            row.insert(column::ERROR.into(), Cell::Null);
            TrialStatus::Completed
        }
        Ending::Failed { error } => {
            row.insert(column::ERROR.into(), Cell::Text(error));
            TrialStatus::Failed
        }
        Ending::Interrupted { reason } => {
            row.insert(column::ERROR.into(), Cell::Text(reason));
            TrialStatus::Interrupted
        }
        Ending::Pruned { rung } => {
            row.insert(column::RUNG.into(), Cell::Int(rung));
            TrialStatus::Pruned
        }
    };
    row.insert(column::WALL_S.into(), Cell::Float(wall_s));
    (status, row)
}

fn base_row(experiment: &str, trial: &Trial) -> Row {
    let mut row = Row::from([
        (column::TRIAL_ID.to_string(), Cell::Text(trial.id.clone())),
        (column::EXPERIMENT.to_string(), Cell::Text(experiment.to_string())),
        (column::STATUS.to_string(), Cell::Text(TrialStatus::Running.as_str().into())),
        (column::SEED.to_string(), Cell::Int(trial.config.seed as i64)),
    ]);
    // Fine-tuned trials say which task, for the report's model selection.
    if let Some(task) = &trial.task {
        row.insert(column::TASK.into(), Cell::Text(task.clone()));
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

/// `trials/<id>/config.toml`: the fully resolved configuration as an
/// experiment file of one trial, so `bertlab run` can rerun it alone.
fn config_text(experiment: &str, trial: &Trial) -> Result<String> {
    let header = format!("# bertlab trial {} of {experiment}: {}\n", trial.id, trial.label());
    let config = &trial.config;
    let mut model = config.model.clone();
    if let Some(init) = &config.init {
        model.insert("init".into(), init.clone().into());
    }
    let mut experiment_table = serde_json::json!({ "name": format!("{experiment}-{}", trial.id), "model": config.plugin, "seeds": [config.seed] });
    if !config.task.is_mlm() {
        experiment_table["task"] = serde_json::to_value(config.task)?;
    }
    let file = serde_json::json!({
        "experiment": experiment_table,
        "model": model,
        "data": config.data,
        "train": config.train,
    });
    Ok(header + &toml::to_string(&file).map_err(|e| anyhow::anyhow!("serialising the trial config: {e}"))?)
}
