//! Finds run folders and reads their trials as one: the rows of every
//! run's trial records concatenated (columns that only some runs have are
//! null in the others) and their thinned curves in the metrics table's
//! long format, both tagged with the run they came from. Reading the
//! records, not the Parquet tables, is what makes a report of a sweep still
//! running correct, and its cost follow the trials, not the points. Eager
//! polars only: the lazy engine would double the first build
//! (bench/RESULTS.md) for tables a report reads whole anyway.
use crate::configs::Level;
use crate::run_info::RunInfo;
use anyhow::{bail, Context as _, Result};
use polars::prelude::*;
use runfolder::names::column;
use runfolder::table::Table;
use runfolder::RunFolder;
use std::collections::HashMap;
use std::path::PathBuf;

/// The column that says which run folder (by position) a row came from.
pub const RUN: &str = "run";

pub struct Runs {
    pub dirs: Vec<PathBuf>,
    /// `run.toml` of each folder, where it has one.
    pub infos: Vec<Option<RunInfo>>,
    /// Every trial once: a trial id recorded by several runs keeps the
    /// latest run's row.
    pub trials: DataFrame,
    /// `trial_id`, `step`, `key`, `value`, `wall_s`, `run`.
    pub metrics: DataFrame,
    /// Trial id to the position of its run folder in `dirs`.
    run_of: HashMap<String, usize>,
    /// Trial id to the steps it trained and the steps it was to train.
    pub steps: HashMap<String, (i64, i64)>,
}

impl Runs {
    /// The resolved settings of trial `id` (its `config.toml`).
    pub fn settings(&self, id: &str) -> HashMap<String, toml::Value> {
        settings_of(&self.dirs, &self.run_of, id)
    }
}

/// The run folders named by `patterns` (folders or globs); each must be one
/// `bertlab run` made.
pub fn find(patterns: &[String]) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for pattern in patterns {
        let matched: Vec<PathBuf> = glob::glob(pattern).with_context(|| format!("{pattern}: not a valid glob pattern"))?.filter_map(Result::ok).collect();
        if matched.is_empty() {
            bail!("{pattern}: no such run folder");
        }
        for dir in matched {
            if RunFolder::existing(&dir).is_none() {
                bail!("{}: not a run folder (no {}/; `bertlab run` writes one)", dir.display(), runfolder::names::TRIALS_DIR);
            }
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    Ok(dirs)
}

pub fn load(dirs: &[PathBuf]) -> Result<Runs> {
    let infos = dirs.iter().map(|d| RunInfo::read(d)).collect::<Result<Vec<_>>>()?;
    let folders: Vec<Vec<runfolder::TrialState>> = dirs.iter().map(|d| RunFolder { root: d.clone() }.trials()).collect::<Result<_>>()?;
    let trials: Vec<DataFrame> = folders.iter().enumerate().map(|(i, states)| tagged_trials(states, i)).collect::<Result<_>>()?;
    let trials = anyhow::Context::context(polars::functions::concat_df_diagonal(&aligned(trials)?), "reading the trials tables")?;
    let mut trials = latest_per_trial(trials)?;
    let ids = trials.column(column::TRIAL_ID)?.str()?;
    let runs = trials.column(RUN)?.u32()?;
    let run_of: HashMap<String, usize> = ids.iter().zip(runs.iter()).filter_map(|(id, run)| Some((id?.to_string(), run? as usize))).collect();
    if dirs.len() > 1 {
        add_differing_settings(&mut trials, dirs, &run_of)?;
    }

    let mut metrics = DataFrame::new(0, vec![
        Column::new_empty(column::TRIAL_ID.into(), &DataType::String),
        Column::new_empty(column::STEP.into(), &DataType::Int64),
        Column::new_empty(column::KEY.into(), &DataType::String),
        Column::new_empty(column::VALUE.into(), &DataType::Float64),
        Column::new_empty(column::WALL_S.into(), &DataType::Float64),
        Column::new_empty(RUN.into(), &DataType::UInt32),
    ])?;
    for (i, states) in folders.iter().enumerate() {
        metrics.vstack_mut_owned(curves_frame(states, i)?)?;
    }
    let steps = folders.iter().flatten().map(|s| (s.record.trial_id.clone(), (s.record.step, s.record.steps))).collect();
    Ok(Runs { dirs: dirs.to_vec(), infos, trials, metrics, run_of, steps })
}

/// The rows of one run's trials, with the run's position as [`RUN`].
fn tagged_trials(states: &[runfolder::TrialState], run: usize) -> Result<DataFrame> {
    let mut table = Table::default();
    for state in states {
        table.push(state.row());
    }
    let mut frame = table.to_frame()?;
    for name in [column::TRIAL_ID, column::STATUS] {
        if frame.column(name).is_err() {
            frame.with_column(Column::new_empty(name.into(), &DataType::String))?;
        }
    }
    let height = frame.height();
    frame.with_column(Column::new(RUN.into(), vec![run as u32; height]))?;
    Ok(frame)
}

/// One run's thinned curves as metric rows.
fn curves_frame(states: &[runfolder::TrialState], run: usize) -> Result<DataFrame> {
    let (mut ids, mut steps, mut keys, mut values, mut walls) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for state in states {
        for (key, series) in &state.record.curves.0 {
            for point in series.all() {
                ids.push(state.record.trial_id.as_str());
                steps.push(point.0);
                keys.push(key.as_str());
                values.push(point.1);
                walls.push(point.2);
            }
        }
    }
    let n = ids.len();
    Ok(DataFrame::new(n, vec![
        Column::new(column::TRIAL_ID.into(), ids),
        Column::new(column::STEP.into(), steps),
        Column::new(column::KEY.into(), keys),
        Column::new(column::VALUE.into(), values),
        Column::new(column::WALL_S.into(), walls),
        Column::new(RUN.into(), vec![run as u32; n]),
    ])?)
}

/// The same column in every frame with one type, so they concatenate: a
/// column that is all nulls in one run (`error` when nothing failed) takes
/// the type the others give it; numbers of different types become floats,
/// anything else text.
fn aligned(mut frames: Vec<DataFrame>) -> Result<Vec<DataFrame>> {
    let mut types: HashMap<PlSmallStr, Vec<DataType>> = HashMap::new();
    for frame in &frames {
        for column in frame.columns() {
            if !column.dtype().is_null() {
                types.entry(column.name().clone()).or_default().push(column.dtype().clone());
            }
        }
    }
    for (name, types) in &types {
        let first = &types[0];
        let common = if types.iter().all(|t| t == first) {
            first.clone()
        } else if types.iter().all(DataType::is_primitive_numeric) {
            DataType::Float64
        } else {
            DataType::String
        };
        for frame in frames.iter_mut() {
            if let Ok(column) = frame.column(name) {
                if column.dtype() != &common {
                    let cast = column.cast(&common)?;
                    frame.with_column(cast)?;
                }
            }
        }
    }
    Ok(frames)
}

/// Within one run, settings that are not swept are the same for every
/// trial, so the table has no column for them. Across runs they may
/// differ: such settings are read from each trial's resolved `config.toml`
/// and added as columns, so the comparison shows them.
fn add_differing_settings(trials: &mut DataFrame, dirs: &[PathBuf], run_of: &HashMap<String, usize>) -> Result<()> {
    let ids = trials.column(column::TRIAL_ID)?.str()?;
    let settings: Vec<HashMap<String, toml::Value>> = ids.iter().map(|id| id.map(|id| settings_of(dirs, run_of, id)).unwrap_or_default()).collect();
    let mut keys: Vec<&String> = settings.iter().flat_map(|s| s.keys()).collect();
    keys.sort();
    keys.dedup();
    let existing: Vec<String> = trials.get_column_names().iter().map(|s| s.to_string()).collect();
    let mut added = Vec::new();
    for key in keys {
        let values: Vec<Option<Level>> = settings.iter().map(|s| s.get(key).map(Level::from_toml)).collect();
        if existing.contains(key) || values.iter().all(|v| *v == values[0]) {
            continue;
        }
        let numbers: Option<Vec<Option<f64>>> = values.iter().map(|v| v.as_ref().map_or(Some(None), |l| l.as_f64().map(Some))).collect();
        added.push(match numbers {
            Some(numbers) => Column::new(key.as_str().into(), numbers),
            None => Column::new(key.as_str().into(), values.iter().map(|v| v.as_ref().map(Level::to_string)).collect::<Vec<_>>()),
        });
    }
    for column in added {
        trials.with_column(column)?;
    }
    Ok(())
}

/// `model.*`, `data.*` and `train.*` of trial `id`'s `config.toml` by
/// dotted key; empty if the file is missing or unreadable.
fn settings_of(dirs: &[PathBuf], run_of: &HashMap<String, usize>, id: &str) -> HashMap<String, toml::Value> {
    let Some(dir) = run_of.get(id).and_then(|&run| dirs.get(run)) else { return HashMap::new() };
    let Some(table) = (RunFolder { root: dir.clone() }).read_config(id) else { return HashMap::new() };
    let mut out = HashMap::new();
    for section in ["model", "data", "train"] {
        if let Some(toml::Value::Table(values)) = table.get(section) {
            for (name, value) in values {
                // Where a trial ran is not part of its configuration.
                if section == "train" && name == "device" {
                    continue;
                }
                out.insert(format!("{section}.{name}"), value.clone());
            }
        }
    }
    out
}

/// Keeps the last row of each trial id: the same trial run into two folders
/// counts once, with its latest result.
fn latest_per_trial(trials: DataFrame) -> Result<DataFrame> {
    let ids = trials.column(column::TRIAL_ID)?.str()?;
    let mut last: HashMap<&str, u32> = HashMap::new();
    for (row, id) in ids.iter().enumerate() {
        last.insert(id.unwrap_or_default(), row as u32);
    }
    let mut keep: Vec<u32> = last.into_values().collect();
    keep.sort_unstable();
    Ok(trials.take(&IdxCa::from_vec("rows".into(), keep))?)
}
