//! `trials/<id>/record.json`: one trial's own record, written by the one
//! process that holds its claim, replaced whole (write, sync, rename) at its
//! start, at every flush of its points and at its end. Small by design: the
//! row the trials table gets and the thinned curves the reports draw.
use crate::curves::Curves;
use crate::status::TrialStatus;
use crate::table::Row;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Who trained (or trains) a trial's latest attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
}

/// `host:pid`, or `-` for a trial moved from the old layout (no owner known).
impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host.as_str() {
            "" => f.write_str("-"),
            host => write!(f, "{host}:{}", self.pid),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    pub trial_id: String,
    pub experiment: String,
    /// How people tell it apart: its swept values and seed.
    #[serde(default)]
    pub label: String,
    /// The resolved configuration it trains with (what MLflow gets as
    /// params, live or synced later).
    #[serde(default)]
    pub config: serde_json::Value,
    /// `running` until the trial ends, or `interrupted` when it was stopped
    /// on purpose (a signal, a failed write) with its checkpoint kept. A
    /// reader also shows a `running` trial whose owner is gone as
    /// `interrupted`.
    pub status: TrialStatus,
    /// How many times training started.
    pub attempts: u32,
    pub owner: Owner,
    /// When the first attempt started, the latest one, and the last write,
    /// in epoch ms.
    pub created_ms: i64,
    pub started_ms: i64,
    pub updated_ms: i64,
    /// The step reached, of `steps`.
    pub step: i64,
    pub steps: i64,
    /// The trial's row of the trials table (its status cell included).
    pub row: Row,
    #[serde(default)]
    pub curves: Curves,
    /// The last checkpoint put in place, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointMark>,
    /// Workers that died training it and were replaced (`run --retries`).
    #[serde(default)]
    pub retries: u32,
}

/// Where a trial's last checkpoint stands: the step it holds and when it
/// was put in place (epoch ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMark {
    pub step: i64,
    pub written_ms: i64,
}

pub fn read(dir: &Path) -> Option<TrialRecord> {
    let text = std::fs::read(dir.join(crate::names::RECORD)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Replaces the record atomically and durably.
pub fn write(dir: &Path, record: &TrialRecord) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    crate::atomic::write(&dir.join(crate::names::RECORD), &bytes)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}
