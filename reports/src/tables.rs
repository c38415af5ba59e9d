//! Finds run folders and reads their tables as one: `trials.parquet` of
//! every run concatenated (columns that only some runs have are null in
//! the others) and `metrics.parquet` likewise, both tagged with the run
//! they came from. Eager polars only: the lazy engine would double the
//! first build (bench/RESULTS.md) for tables a report reads whole anyway.
use crate::configs::Level;
use crate::run_info::RunInfo;
use anyhow::{bail, Context as _, Result};
use polars::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const TRIALS: &str = "trials.parquet";
pub const METRICS: &str = "metrics.parquet";
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
}

impl Runs {
    /// The resolved settings of trial `id` (its `config.toml`).
    pub fn settings(&self, id: &str) -> HashMap<String, toml::Value> {
        settings_of(&self.dirs, &self.run_of, id)
    }
}

/// The run folders named by `patterns` (folders or globs); each must hold
/// a `trials.parquet`.
pub fn find(patterns: &[String]) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for pattern in patterns {
        let matched: Vec<PathBuf> = glob::glob(pattern).with_context(|| format!("{pattern}: not a valid glob pattern"))?.filter_map(Result::ok).collect();
        if matched.is_empty() {
            bail!("{pattern}: no such run folder");
        }
        for dir in matched {
            if !dir.join(TRIALS).is_file() {
                bail!("{}: not a run folder (no {TRIALS}; `bertlab run` writes one)", dir.display());
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
    let trials: Vec<DataFrame> = dirs.iter().enumerate().map(|(i, d)| tagged(d, TRIALS, i)).collect::<Result<_>>()?;
    let trials = anyhow::Context::context(polars::functions::concat_df_diagonal(&aligned(trials)?), "reading the trials tables")?;
    let mut trials = latest_per_trial(trials)?;
    let ids = trials.column("trial_id")?.str()?;
    let runs = trials.column(RUN)?.u32()?;
    let run_of: HashMap<String, usize> = ids.iter().zip(runs.iter()).filter_map(|(id, run)| Some((id?.to_string(), run? as usize))).collect();
    if dirs.len() > 1 {
        add_differing_settings(&mut trials, dirs, &run_of)?;
    }

    let mut metrics = DataFrame::new(0, vec![
        Column::new_empty("trial_id".into(), &DataType::String),
        Column::new_empty("step".into(), &DataType::Int64),
        Column::new_empty("key".into(), &DataType::String),
        Column::new_empty("value".into(), &DataType::Float64),
        Column::new_empty("wall_s".into(), &DataType::Float64),
        Column::new_empty(RUN.into(), &DataType::UInt32),
    ])?;
    for (i, dir) in dirs.iter().enumerate().filter(|(_, d)| d.join(METRICS).is_file()) {
        let part = tagged(dir, METRICS, i)?;
        let columns = metrics.columns().iter().map(|c| Ok(part.column(c.name())?.cast(c.dtype())?)).collect::<Result<Vec<Column>>>()?;
        metrics.vstack_mut_owned(DataFrame::new(part.height(), columns)?)?;
    }
    Ok(Runs { dirs: dirs.to_vec(), infos, trials, metrics, run_of })
}

/// The table `file` of run folder `dir`, with the run's position as [`RUN`].
fn tagged(dir: &Path, file: &str, run: usize) -> Result<DataFrame> {
    let path = dir.join(file);
    let read = || -> Result<DataFrame> { Ok(ParquetReader::new(std::fs::File::open(&path)?).finish()?) };
    let mut frame = read().with_context(|| format!("reading {}", path.display()))?;
    let height = frame.height();
    frame.with_column(Column::new(RUN.into(), vec![run as u32; height]))?;
    Ok(frame)
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
    let ids = trials.column("trial_id")?.str()?;
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
    let path = dir.join("trials").join(id).join("config.toml");
    let Some(table) = std::fs::read_to_string(path).ok().and_then(|t| toml::from_str::<toml::Table>(&t).ok()) else { return HashMap::new() };
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
    let ids = trials.column("trial_id")?.str()?;
    let mut last: HashMap<&str, u32> = HashMap::new();
    for (row, id) in ids.iter().enumerate() {
        last.insert(id.unwrap_or_default(), row as u32);
    }
    let mut keep: Vec<u32> = last.into_values().collect();
    keep.sort_unstable();
    Ok(trials.take(&IdxCa::from_vec("rows".into(), keep))?)
}
