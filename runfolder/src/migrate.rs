//! Run folders made before per-trial records held two whole tables,
//! `trials.parquet` and `metrics.parquet`, as single files. Opening one
//! turns it into this layout once: each trial gets its record and points
//! from the old rows, the tables become folders of parts. The old files are
//! first renamed aside (`*.v1`), so a migration cut short is redone from
//! them on the next open, and removed only when it is complete.
use crate::curves::{Curves, Point};
use crate::names::{self, column};
use crate::points::{MetricPoint, PointLog};
use crate::record::{self, Owner, TrialRecord};
use crate::status::TrialStatus;
use crate::table::{Cell, Row, Table};
use crate::tables;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::Path;

const ASIDE: &str = "v1";

/// Migrates `root` if it has the old layout; says how many trials it moved.
pub fn migrate(root: &Path) -> Result<usize> {
    let trials_file = root.join(names::TRIALS_TABLE);
    let trials_aside = trials_file.with_extension(format!("parquet.{ASIDE}"));
    let metrics_file = root.join(names::METRICS_TABLE);
    let metrics_aside = metrics_file.with_extension(format!("parquet.{ASIDE}"));
    if !trials_file.is_file() && !trials_aside.is_file() {
        if metrics_aside.is_file() && !metrics_file.is_file() {
            let _ = std::fs::remove_file(&metrics_aside);
        }
        return Ok(0);
    }
    let _lock = tables::lock(root)?;
    for (file, aside) in [(&trials_file, &trials_aside), (&metrics_file, &metrics_aside)] {
        if file.is_file() {
            std::fs::rename(file, aside).with_context(|| format!("moving {} aside", file.display()))?;
        }
    }
    if !trials_aside.is_file() {
        return Ok(0); // another process finished it meanwhile
    }
    let trials = Table::read(&trials_aside)?;
    let metrics = if metrics_aside.is_file() { Table::read(&metrics_aside)? } else { Table::default() };
    let mut points: HashMap<String, Vec<MetricPoint>> = HashMap::new();
    for row in metrics.rows() {
        let (Some(id), Some(key)) = (tables::text(row, column::TRIAL_ID), tables::text(row, column::KEY)) else { continue };
        let number = |name| match row.get(name) {
            Some(Cell::Float(f)) => Some(*f),
            Some(Cell::Int(i)) => Some(*i as f64),
            _ => None,
        };
        let point = MetricPoint {
            step: number(column::STEP).unwrap_or_default() as i64,
            key: key.to_string(),
            value: number(column::VALUE).unwrap_or(f64::NAN),
            wall_s: number(column::WALL_S).unwrap_or_default(),
        };
        points.entry(id.to_string()).or_default().push(point);
    }
    let mut moved = 0;
    let now = record::now_ms();
    for (position, row) in trials.rows().iter().enumerate() {
        let Some(id) = tables::text(row, column::TRIAL_ID) else { continue };
        let dir = root.join(names::TRIALS_DIR).join(id);
        std::fs::create_dir_all(&dir)?;
        let _ = std::fs::remove_file(dir.join(names::POINTS));
        let mut log = PointLog::open(&dir, 1, 0)?;
        let mut curves = Curves::default();
        let mut last_step = 0;
        for point in points.remove(id).unwrap_or_default() {
            curves.push(&point.key, Point(point.step, point.value, point.wall_s));
            last_step = last_step.max(point.step);
            log.push(&point);
        }
        log.flush()?;
        let status = tables::text(row, column::STATUS).and_then(TrialStatus::parse).unwrap_or(TrialStatus::Running);
        let record = TrialRecord {
            trial_id: id.to_string(),
            experiment: tables::text(row, column::EXPERIMENT).unwrap_or_default().to_string(),
            label: String::new(),
            config: serde_json::Value::Null,
            status,
            attempts: 1,
            // Nobody holds it: an old `running` row reads as interrupted.
            owner: Owner { host: String::new(), pid: 0 },
            // Keeps the old table's order.
            created_ms: now - (trials.len() - position) as i64,
            started_ms: now,
            updated_ms: now,
            step: last_step,
            steps: last_step,
            row: Row::clone(row),
            curves,
            checkpoint: None,
            retries: 0,
        };
        record::write(&dir, &record)?;
        tables::write_parts_locked(root, &record)?;
        moved += 1;
    }
    // The trials file is what says a migration is unfinished: it goes
    // first, and a metrics file left by a crash here goes on the next open.
    std::fs::remove_file(&trials_aside)?;
    let _ = std::fs::remove_file(&metrics_aside);
    Ok(moved)
}
