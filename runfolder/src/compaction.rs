//! Keeps the tables' folders from filling with tiny files: a sweep of
//! 100,000 short trials would otherwise leave 100,000 parts per table,
//! which every reader opens one by one. Each small part a trial writes is
//! noted in a ledger (in the tables lock's folder); when [`LOOSE_LIMIT`] are
//! loose, they are merged into one `batch-*.parquet` and removed, and each
//! of their trials notes which batch holds it (`trials/<id>/batches.json`).
//! A trial written again first takes its rows out of its batch. Each step
//! reads and writes a bounded number of parts, whatever the folder holds:
//! parts above [`SMALL_PART`] stay on their own, a batch holds at most
//! [`LOOSE_LIMIT`] trials. Runs under the tables lock.
use crate::names::{self, column};
use crate::table::Table;
use anyhow::{Context, Result};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Loose small parts of a table that trigger a compaction.
pub const LOOSE_LIMIT: usize = 64;
/// Parts at least this big are never merged.
pub const SMALL_PART: u64 = 4 << 20;
const LEDGER: &str = "loose";
const INDEX: &str = "batches.json";

fn index_path(root: &Path, id: &str) -> PathBuf {
    root.join(names::TRIALS_DIR).join(id).join(INDEX)
}

/// Table name to the batch that holds the trial's rows.
fn index(root: &Path, id: &str) -> BTreeMap<String, String> {
    std::fs::read(index_path(root, id)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

fn set_index(root: &Path, id: &str, index: &BTreeMap<String, String>) -> Result<()> {
    let path = index_path(root, id);
    if index.is_empty() {
        let _ = std::fs::remove_file(&path);
        return Ok(());
    }
    crate::atomic::write(&path, &serde_json::to_vec(index)?).with_context(|| format!("writing {}", path.display()))
}

/// Takes trial `id`'s rows out of the batch of `table` holding them, before
/// the trial gets a new part.
pub(crate) fn release(root: &Path, table: &str, id: &str) -> Result<()> {
    let mut held = index(root, id);
    let Some(batch) = held.remove(table) else { return Ok(()) };
    let path = root.join(table).join(&batch);
    if path.is_file() {
        let frame = crate::tables::read_part(&path)?;
        let keep = frame.column(column::TRIAL_ID)?.str()?.not_equal(id);
        let mut rest = frame.filter(&keep)?;
        if rest.height() == 0 {
            std::fs::remove_file(&path)?;
        } else {
            Table::write_frame(&mut rest, &path, &root.join(names::TABLES_LOCK))?;
        }
    }
    set_index(root, id, &held)
}

/// Notes trial `id`'s new part of `table`, and compacts the table's loose
/// small parts once there are enough.
pub(crate) fn note(root: &Path, table: &str, id: &str) -> Result<()> {
    let part = crate::tables::part(root, table, id);
    if std::fs::metadata(&part).map_or(true, |m| m.len() >= SMALL_PART) {
        return Ok(());
    }
    let ledger = root.join(names::TABLES_LOCK).join(LEDGER);
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&ledger)?;
    writeln!(file, "{table}\t{id}")?;
    let entries = std::fs::read_to_string(&ledger)?;
    let loose: Vec<&str> = entries.lines().filter_map(|l| l.strip_prefix(table)?.strip_prefix('\t')).collect();
    if loose.len() >= LOOSE_LIMIT {
        compact(root, table, &loose)?;
        let others: String = entries.lines().filter(|l| !l.starts_with(&format!("{table}\t"))).map(|l| format!("{l}\n")).collect();
        crate::atomic::write(&ledger, others.as_bytes())?;
    }
    Ok(())
}

/// Merges the loose parts of trials `ids` into one batch.
fn compact(root: &Path, table: &str, ids: &[&str]) -> Result<()> {
    let mut merged: Vec<&str> = Vec::new();
    let mut frames = Vec::new();
    for &id in ids {
        let part = crate::tables::part(root, table, id);
        if merged.contains(&id) || !part.is_file() {
            continue;
        }
        let mut held = index(root, id);
        if let Some(batch) = held.get(table) {
            if root.join(table).join(batch).is_file() {
                // Merged by a compaction cut short before it removed the part.
                std::fs::remove_file(&part)?;
                continue;
            }
            // Cut short before its batch appeared: the part is the rows.
            held.remove(table);
            set_index(root, id, &held)?;
        }
        frames.push(crate::tables::read_part(&part)?);
        merged.push(id);
    }
    if frames.is_empty() {
        return Ok(());
    }
    let mut batch = polars::functions::concat_df_diagonal(&frames)?;
    let name = format!("batch-{}-{}.parquet", crate::record::now_ms(), std::process::id());
    // The trials name their batch before it appears and lose their own
    // parts after: a crash at any point leaves each row in one file, which
    // the next compaction tells from the index.
    for &id in &merged {
        let mut held = index(root, id);
        held.insert(table.to_string(), name.clone());
        set_index(root, id, &held)?;
    }
    Table::write_frame(&mut batch, &root.join(table).join(&name), &root.join(names::TABLES_LOCK))?;
    for &id in &merged {
        std::fs::remove_file(crate::tables::part(root, table, id))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim::Attempt;
    use crate::writer::{Start, TrialWriter};
    use crate::{Cell, MetricPoint, Row, RunFolder, TrialStatus};

    fn record_trial(folder: &RunFolder, id: &str, value: f64) {
        let Attempt::Mine(claim) = folder.claim(id).unwrap() else { panic!() };
        let row = Row::from([("trial_id".into(), Cell::Text(id.into())), ("experiment".into(), Cell::Text("x".into()))]);
        let start = Start { trial_id: id.into(), experiment: "x".into(), label: id.into(), config: serde_json::Value::Null, steps: 3, row: row.clone(), resume_from: None };
        let mut writer = TrialWriter::start(folder.root.clone(), claim, start).unwrap();
        for step in 1..=3 {
            writer.point(MetricPoint { step, key: "train/loss".into(), value, wall_s: 0.0 });
        }
        let mut row = row;
        row.insert("eval/loss".into(), Cell::Float(value));
        writer.finish(TrialStatus::Completed, row).unwrap().unwrap();
    }

    /// Every row of a table folder, as (trial id, value column).
    fn rows(folder: &RunFolder, table: &str, value: &str) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for part in crate::tables::parts(&folder.root.join(table)).unwrap() {
            let frame = crate::tables::read_part(&part).unwrap();
            let ids = frame.column(column::TRIAL_ID).unwrap().str().unwrap().clone();
            let values = frame.column(value).unwrap().f64().unwrap().clone();
            out.extend(ids.iter().zip(values.iter()).map(|(i, v)| (i.unwrap().to_string(), v.unwrap())));
        }
        out.sort_by(|a, b| a.partial_cmp(b).unwrap());
        out
    }

    #[test]
    fn small_parts_merge_into_batches_and_a_trial_written_again_leaves_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let folder = RunFolder::open(dir.path()).unwrap();
        let ids: Vec<String> = (0..150).map(|i| format!("t{i:03}")).collect();
        for id in &ids {
            record_trial(&folder, id, 1.0);
        }
        for table in [names::TRIALS_TABLE, names::METRICS_TABLE] {
            let files = crate::tables::parts(&folder.root.join(table)).unwrap().len();
            assert_eq!(files, 2 + (150 - 2 * LOOSE_LIMIT), "{table}: two batches and the loose rest");
        }
        assert_eq!(rows(&folder, names::TRIALS_TABLE, "eval/loss"), ids.iter().map(|i| (i.clone(), 1.0)).collect::<Vec<_>>());
        assert_eq!(rows(&folder, names::METRICS_TABLE, "value").len(), 150 * 3);

        // t005 is in the first batch; trained again, its new rows replace the old.
        assert!(index(&folder.root, "t005").get(names::METRICS_TABLE).is_some_and(|b| b.starts_with("batch-")));
        record_trial(&folder, "t005", 2.0);
        let trials = rows(&folder, names::TRIALS_TABLE, "eval/loss");
        assert_eq!(trials.len(), 150);
        assert_eq!(trials.iter().find(|(i, _)| i == "t005").unwrap().1, 2.0);
        let metrics = rows(&folder, names::METRICS_TABLE, "value");
        assert_eq!(metrics.len(), 150 * 3);
        assert_eq!(metrics.iter().filter(|(i, v)| i == "t005" && *v == 2.0).count(), 3);
        assert!(folder.bring_tables_up_to_date().unwrap() == 0, "batched trials are up to date");
    }
}
