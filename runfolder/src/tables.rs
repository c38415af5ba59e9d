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
    let _lock = claim::wait_for(&root.join(names::TABLES_LOCK)).context("taking the tables lock")?;
    write_parts_locked(root, record)
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
    compaction::note(root, names::TRIALS_TABLE, id)
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

fn write_trials_part(root: &Path, trial_dir: &Path, record: &TrialRecord) -> Result<()> {
    let folder = root.join(names::TRIALS_TABLE);
    std::fs::create_dir_all(&folder)?;
    let mut schema = trials_schema(&folder)?;
    let before = schema.clone();
    for (name, cell) in record.row.iter() {
        let kind = fixed_type(name).unwrap_or_else(|| ColumnType::of(std::iter::once(cell)));
        match schema.iter_mut().find(|(n, _)| n == name) {
            Some((_, existing)) if !matches!(cell, Cell::Null) => *existing = existing.join(kind),
            Some(_) => {}
            None => schema.push((name.clone(), kind)),
        }
    }
    if schema != before && !before.is_empty() {
        widen(&folder, &schema, trial_dir)?;
    }
    let mut table = Table::default();
    table.push(record.row.clone());
    let mut frame = table.to_frame_as(&schema)?;
    Table::write_frame(&mut frame, &part(root, names::TRIALS_TABLE, &record.trial_id), trial_dir)
}

/// The schema all parts of the trials table share (empty when none yet),
/// from the first part the folder lists: reading one, not all, keeps a
/// trial's cost the same whatever the folder holds.
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
        let table = Table::read(&path)?;
        Table::write_frame(&mut table.to_frame_as(schema)?, &path, scratch)?;
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

pub fn metrics_schema() -> Schema {
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
    let folder = root.join(names::METRICS_TABLE);
    std::fs::create_dir_all(&folder)?;
    let target = part(root, names::METRICS_TABLE, id);
    let temporary = trial_dir.join(format!(".{id}.metrics.{}.tmp", std::process::id()));
    let file = std::fs::File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
    let mut writer = ParquetWriter::new(&file).batched(&metrics_schema())?;
    let mut batch = Batch::default();
    let mut written = 0usize;
    let mut failed: Option<PolarsError> = None;
    points::for_each(trial_dir, |p| {
        batch.push(p);
        if batch.len() >= ROW_GROUP && failed.is_none() {
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
    file.sync_all()?;
    if written == 0 {
        let _ = std::fs::remove_file(&temporary);
        let _ = std::fs::remove_file(&target);
        return Ok(());
    }
    std::fs::rename(&temporary, &target).with_context(|| format!("replacing {}", target.display()))?;
    Ok(())
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

/// Whether trial `id`'s trials part is at least as new as its record.
pub fn up_to_date(root: &Path, id: &str) -> bool {
    let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(compaction::holding(root, names::TRIALS_TABLE, id)), modified(root.join(names::TRIALS_DIR).join(id).join(names::RECORD))) {
        (Some(part), Some(record)) => part >= record,
        (_, None) => true,
        (None, Some(_)) => false,
    }
}

/// A row's text cell.
pub fn text<'a>(row: &'a Row, name: &str) -> Option<&'a str> {
    match row.get(name) {
        Some(Cell::Text(s)) => Some(s),
        _ => None,
    }
}
