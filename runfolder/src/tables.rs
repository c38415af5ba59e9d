//! `trials.parquet/` and `metrics.parquet/`: the user's two tables, each a
//! folder of Parquet parts (one per trial, `<trial_id>.parquet`, until
//! merged into a `batch-*.parquet` with others) that
//! polars, pyarrow and DuckDB read as one table. A trial's parts are made
//! from its record and its points when it ends (and by `status` and
//! `report` for trials still running or cut short), so adding a trial costs
//! the same whatever the folder holds, and a trial run again replaces its
//! own parts: no row is ever in the tables twice.
//!
//! Every part of a table has the same schema, as dataset readers want. A
//! trial that brings a new column (another experiment's swept key) or a
//! wider type rewrites the existing trials parts to the widened schema:
//! that happens once per new column, never per trial, and touches only the
//! small trials table. Changes to the parts are ordered by a short claim,
//! [`crate::names::TABLES_LOCK`]; a part appears by rename, whole. Small
//! parts are merged into batches as they accumulate ([`compaction`]).
use crate::claim;
use crate::compaction;
use crate::names::{self, column};
use crate::points;
use crate::record::TrialRecord;
use crate::table::{Cell, ColumnType, Row, Table};
use anyhow::{Context, Result};
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// Points per row group of a metrics part: what the writer holds at once.
const ROW_GROUP: usize = 65_536;

/// The part of table `table` for trial `id` in run folder `root`.
pub fn part(root: &Path, table: &str, id: &str) -> PathBuf {
    root.join(table).join(format!("{id}.parquet"))
}

/// Makes trial `record`'s two parts from its record and `points.tsv`.
pub fn write_trial(root: &Path, record: &TrialRecord) -> Result<()> {
    let _lock = lock(root)?;
    write_parts_locked(root, record)
}

/// Waits for, and holds while it lives, the lock that orders changes to
/// the parts of run folder `root`.
pub(crate) fn lock(root: &Path) -> Result<claim::Claim> {
    claim::wait_for(&root.join(names::TABLES_LOCK)).context("taking the tables lock")
}

/// [`write_trial`] for a caller that holds the tables lock.
pub(crate) fn write_parts_locked(root: &Path, record: &TrialRecord) -> Result<()> {
    let id = &record.trial_id;
    let trial_dir = root.join(names::TRIALS_DIR).join(id);
    // Rows an earlier attempt left in a batch go first: no row twice.
    compaction::release(root, names::METRICS_TABLE, id)?;
    write_metrics_part(root, &trial_dir, id)?;
    compaction::note(root, names::METRICS_TABLE, id)?;
    compaction::release(root, names::TRIALS_TABLE, id)?;
    write_trials_part(root, &trial_dir, record)?;
    compaction::note(root, names::TRIALS_TABLE, id)?;
    let written = Written { updated_ms: record.updated_ms, status: tables_status(record) };
    crate::atomic::write(&trial_dir.join(WRITTEN), &serde_json::to_vec(&written)?)?;
    Ok(())
}

/// `trials/<id>/parts.json`: which record, with which status, the trial's
/// parts were made from; the tables are up to date with a trial when
/// both match it as it stands now.
const WRITTEN: &str = "parts.json";

#[derive(PartialEq, serde::Serialize, serde::Deserialize)]
struct Written {
    updated_ms: i64,
    status: String,
}

fn tables_status(record: &TrialRecord) -> String {
    text(&record.row, column::STATUS).unwrap_or_default().to_string()
}

/// The type a trials column has whatever its values: so that one trial's
/// nulls never fix a column to a type another trial's values do not fit.
fn fixed_type(name: &str) -> Option<ColumnType> {
    match name {
        column::TRIAL_ID | column::EXPERIMENT | column::STATUS | column::TASK | column::ERROR => Some(ColumnType::Text),
        column::SEED | column::PARAMS | column::TOKENS => Some(ColumnType::Int),
        column::FLOPS | column::WALL_S => Some(ColumnType::Float),
        metric if metric.contains('/') => Some(ColumnType::Float),
        _ => None,
    }
}

/// `.tables-lock/trials-schema.json`: the trials table's schema, and
/// whether every part has it (false while a widening is under way, so one
/// cut short is finished by the next writer).
#[derive(serde::Serialize, serde::Deserialize)]
struct SchemaFile {
    columns: Vec<(String, ColumnType)>,
    complete: bool,
}

fn write_trials_part(root: &Path, trial_dir: &Path, record: &TrialRecord) -> Result<()> {
    let folder = root.join(names::TRIALS_TABLE);
    std::fs::create_dir_all(&folder)?;
    let schema_file = root.join(names::TABLES_LOCK).join("trials-schema.json");
    let known: Option<SchemaFile> = std::fs::read(&schema_file).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let mut schema = match known {
        Some(SchemaFile { columns, complete: true }) => columns,
        Some(SchemaFile { columns, complete: false }) => {
            widen(&folder, &columns, trial_dir)?;
            columns
        }
        None => trials_schema(&folder)?,
    };
    let before = schema.clone();
    for (name, cell) in record.row.iter() {
        let kind = fixed_type(name).unwrap_or_else(|| ColumnType::of(std::iter::once(cell)));
        match schema.iter_mut().find(|(n, _)| n == name) {
            Some((_, existing)) if !matches!(cell, Cell::Null) => *existing = existing.join(kind),
            Some(_) => {}
            None => schema.push((name.clone(), kind)),
        }
    }
    let save = |complete| -> Result<()> {
        let bytes = serde_json::to_vec(&SchemaFile { columns: schema.clone(), complete })?;
        Ok(crate::atomic::write(&schema_file, &bytes)?)
    };
    if schema != before {
        save(false)?;
        widen(&folder, &schema, trial_dir)?;
        save(true)?;
    } else if !schema_file.is_file() {
        save(true)?;
    }
    let mut table = Table::default();
    table.push(record.row.clone());
    let mut frame = table.to_frame_as(&schema)?;
    Table::write_frame(&mut frame, &part(root, names::TRIALS_TABLE, &record.trial_id), trial_dir)
}

/// The schema all parts of the trials table share (empty when none yet),
/// from the first part the folder lists, for a folder whose schema file is
/// missing (the file keeps a trial's cost the same whatever the folder
/// holds).
fn trials_schema(folder: &Path) -> Result<Vec<(String, ColumnType)>> {
    let listed = std::fs::read_dir(folder).with_context(|| format!("listing {}", folder.display()))?;
    let first = listed.filter_map(|e| e.ok().map(|e| e.path())).find(|p| is_part(p));
    let Some(first) = first else { return Ok(Vec::new()) };
    let frame = read_part(&first)?;
    Ok(frame.columns().iter().map(|c| (c.name().to_string(), ColumnType::of_dtype(c.dtype()))).collect())
}

/// Rewrites every trials part to `schema`.
fn widen(folder: &Path, schema: &[(String, ColumnType)], scratch: &Path) -> Result<()> {
    for path in parts(folder)? {
        let frame = read_part(&path)?;
        let has: Vec<(String, ColumnType)> = frame.columns().iter().map(|c| (c.name().to_string(), ColumnType::of_dtype(c.dtype()))).collect();
        if has != schema {
            let table = Table::read(&path)?;
            Table::write_frame(&mut table.to_frame_as(schema)?, &path, scratch)?;
        }
    }
    Ok(())
}

/// The parts of a table folder, by name.
pub fn parts(folder: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e).with_context(|| format!("listing {}", folder.display())),
    };
    for entry in entries {
        let path = entry?.path();
        if is_part(&path) {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

fn is_part(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.ends_with(".parquet") && !name.starts_with('.')
}

pub(crate) fn read_part(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    anyhow::Context::with_context(ParquetReader::new(file).finish(), || format!("reading {}", path.display()))
}

fn metrics_schema() -> Schema {
    Schema::from_iter([
        Field::new(column::TRIAL_ID.into(), DataType::String),
        Field::new(column::STEP.into(), DataType::Int64),
        Field::new(column::KEY.into(), DataType::String),
        Field::new(column::VALUE.into(), DataType::Float64),
        Field::new(column::WALL_S.into(), DataType::Float64),
    ])
}

/// Streams the trial's points into its metrics part, a row group at a
/// time; a trial with no points has no part.
fn write_metrics_part(root: &Path, trial_dir: &Path, id: &str) -> Result<()> {
    std::fs::create_dir_all(root.join(names::METRICS_TABLE))?;
    let target = part(root, names::METRICS_TABLE, id);
    let temporary = trial_dir.join(format!(".{id}.metrics.{}.tmp", std::process::id()));
    let written = stream_points(trial_dir, id, &temporary);
    match written {
        Ok(0) | Err(_) => {
            let _ = std::fs::remove_file(&temporary);
            if written.is_ok() {
                let _ = std::fs::remove_file(&target);
            }
            written.map(|_| ())
        }
        Ok(_) => std::fs::rename(&temporary, &target).with_context(|| format!("replacing {}", target.display())),
    }
}

/// Writes the trial's current points to `file` as Parquet, a row group at
/// a time; says how many.
fn stream_points(trial_dir: &Path, id: &str, file: &Path) -> Result<usize> {
    let out = std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?;
    let mut writer = ParquetWriter::new(&out).batched(&metrics_schema())?;
    let mut batch = Batch::default();
    let mut written = 0usize;
    let mut failed: Option<PolarsError> = None;
    points::for_each(trial_dir, |p| {
        if failed.is_some() {
            return;
        }
        batch.push(p);
        if batch.len() >= ROW_GROUP {
            written += batch.len();
            if let Err(e) = batch.take(id).and_then(|frame| writer.write_batch(&frame)) {
                failed = Some(e);
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    if batch.len() > 0 {
        written += batch.len();
        writer.write_batch(&batch.take(id)?)?;
    }
    writer.finish()?;
    out.sync_all()?;
    Ok(written)
}

#[derive(Default)]
struct Batch {
    step: Vec<i64>,
    key: Vec<String>,
    value: Vec<f64>,
    wall_s: Vec<f64>,
}

impl Batch {
    fn len(&self) -> usize {
        self.step.len()
    }

    fn push(&mut self, p: points::MetricPoint) {
        self.step.push(p.step);
        self.key.push(p.key);
        self.value.push(p.value);
        self.wall_s.push(p.wall_s);
    }

    fn take(&mut self, id: &str) -> PolarsResult<DataFrame> {
        let n = self.len();
        let columns = vec![
            Column::new(column::TRIAL_ID.into(), vec![id; n]),
            Column::new(column::STEP.into(), std::mem::take(&mut self.step)),
            Column::new(column::KEY.into(), std::mem::take(&mut self.key)),
            Column::new(column::VALUE.into(), std::mem::take(&mut self.value)),
            Column::new(column::WALL_S.into(), std::mem::take(&mut self.wall_s)),
        ];
        DataFrame::new(n, columns)
    }
}

/// Whether the tables hold `trial` as it stands: made from its latest
/// record, with its status now (a `running` trial whose owner is gone has
/// become `interrupted`).
pub fn up_to_date(root: &Path, trial: &crate::TrialState) -> bool {
    let path = root.join(names::TRIALS_DIR).join(&trial.record.trial_id).join(WRITTEN);
    let written: Option<Written> = std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    written == Some(Written { updated_ms: trial.record.updated_ms, status: trial.status.as_str().into() })
}

/// A row's text cell.
pub fn text<'a>(row: &'a Row, name: &str) -> Option<&'a str> {
    match row.get(name) {
        Some(Cell::Text(s)) => Some(s),
        _ => None,
    }
}
