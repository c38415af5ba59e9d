//! The run folder's format, and the one place that reads and writes it.
//! bertlab's runner, its MLflow tracking and its reports all go through
//! here; nothing else spells a file name, a column or a status.
//!
//! ```text
//! runs/<name>/
//!   trials/<trial_id>/        one folder per trial, written by its claim's holder
//!     claim.<n>               who trains it now ([`claim`])
//!     record.json             status, step reached, final row, thinned curves ([`record`])
//!     points.tsv              every metric point, appended ([`points`])
//!     checkpoint-<step>.safetensors  the whole training state at a step ([`checkpoints`])
//!     config.toml, log.txt    the resolved configuration; lines for people
//!   trials.parquet/<id>.parquet    the trials table, a part per trial ([`tables`]),
//!                  batch-*.parquet  small parts merged ([`compaction`])
//!   metrics.parquet/...            the metrics table, likewise
//!   .tables-lock/             orders changes to the parts
//!   early-stop.jsonl, search.jsonl  decisions, in order ([`decisions`])
//! ```
//!
//! Many processes, on one machine or several sharing the folder, can run
//! the same sweep: each trial is trained by whoever claims it, recorded in
//! its own folder, and the tables grow by parts, so no process rewrites
//! what another wrote and a kill loses only the points since the last
//! flush. What the filesystem must give: atomic exclusive create and
//! rename, and `fsync` that makes data durable (local disks, NFS v3+ with
//! `sync` exports or close-to-open consistency, Lustre, GPFS).
pub mod atomic;
pub mod checkpoints;
pub mod claim;
pub mod compaction;
pub mod curves;
pub mod decisions;
pub mod journal;
pub mod migrate;
pub mod names;
pub mod points;
pub mod record;
pub mod status;
pub mod table;
pub mod tables;
pub mod writer;

use anyhow::{Context, Result};
use claim::Held;
pub use points::MetricPoint;
pub use record::TrialRecord;
pub use status::TrialStatus;
use std::io::Write;
use std::path::{Path, PathBuf};
pub use table::{Cell, Row};
pub use writer::TrialWriter;

#[derive(Debug, Clone)]
pub struct RunFolder {
    pub root: PathBuf,
}

/// A trial as a reader sees it now: its record, its status with a gone
/// owner's `running` read as `interrupted`, and who holds it.
#[derive(Debug, Clone)]
pub struct TrialState {
    pub record: TrialRecord,
    pub status: TrialStatus,
    pub holder: Option<Held>,
}

impl TrialState {
    /// The record's row with the status as it stands now.
    pub fn row(&self) -> Row {
        let mut row = self.record.row.clone();
        row.insert(names::column::STATUS.into(), Cell::Text(self.status.as_str().into()));
        row
    }
}

impl RunFolder {
    /// Opens a run folder to write in, making it if needed and moving an
    /// old-layout folder to this one.
    pub fn open(root: &Path) -> Result<RunFolder> {
        std::fs::create_dir_all(root.join(names::TRIALS_DIR)).with_context(|| format!("creating {}", root.display()))?;
        migrate::migrate(root).with_context(|| format!("moving {} to the per-trial layout", root.display()))?;
        Ok(RunFolder { root: root.to_owned() })
    }

    /// A folder to read, made by `bertlab run` (now or before this layout).
    pub fn existing(root: &Path) -> Option<RunFolder> {
        (root.join(names::TRIALS_DIR).is_dir() || root.join(names::TRIALS_TABLE).exists()).then(|| RunFolder { root: root.to_owned() })
    }

    pub fn trial_dir(&self, id: &str) -> PathBuf {
        self.root.join(names::TRIALS_DIR).join(id)
    }

    /// Trial `id` as it stands, if it was ever started here.
    pub fn trial(&self, id: &str) -> Option<TrialState> {
        let dir = self.trial_dir(id);
        let record = record::read(&dir)?;
        let holder = claim::holder(&dir);
        let status = match record.status {
            TrialStatus::Running if holder.is_none() => TrialStatus::Interrupted,
            status => status,
        };
        Some(TrialState { record, status, holder })
    }

    /// Every trial with a record, in the order they were first started.
    pub fn trials(&self) -> Result<Vec<TrialState>> {
        let dir = self.root.join(names::TRIALS_DIR);
        let mut trials = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(trials),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            if let Some(trial) = entry?.file_name().to_str().and_then(|id| self.trial(id)) {
                trials.push(trial);
            }
        }
        trials.sort_by(|a, b| (a.record.created_ms, &a.record.trial_id).cmp(&(b.record.created_ms, &b.record.trial_id)));
        Ok(trials)
    }

    /// Tries to claim trial `id` for training (making its folder).
    pub fn claim(&self, id: &str) -> std::io::Result<claim::Attempt> {
        let dir = self.trial_dir(id);
        std::fs::create_dir_all(&dir)?;
        claim::try_claim(&dir)
    }

    /// Makes the table parts of every trial whose record is newer than
    /// them (trials running, cut short, or ended by a process killed before
    /// it wrote them); says how many.
    pub fn bring_tables_up_to_date(&self) -> Result<usize> {
        let mut updated = 0;
        for trial in self.trials()? {
            if tables::up_to_date(&self.root, &trial) {
                continue;
            }
            let _lock = tables::lock(&self.root)?;
            // Looked at again under the lock: its owner may have ended it
            // and written its parts since.
            let Some(now) = self.trial(&trial.record.trial_id) else { continue };
            if !tables::up_to_date(&self.root, &now) {
                let mut record = now.record.clone();
                record.row = now.row();
                tables::write_parts_locked(&self.root, &record)?;
                updated += 1;
            }
        }
        Ok(updated)
    }

    /// Writes trial `id`'s `config.toml` (a one-trial experiment file).
    pub fn write_config(&self, id: &str, text: &str) -> Result<()> {
        let dir = self.trial_dir(id);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(names::CONFIG);
        atomic::write(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
    }

    /// Trial `id`'s `config.toml`, parsed; `None` if missing or unreadable.
    pub fn read_config(&self, id: &str) -> Option<toml::Table> {
        toml::from_str(&std::fs::read_to_string(self.trial_dir(id).join(names::CONFIG)).ok()?).ok()
    }

    /// Appends a line to trial `id`'s `log.txt`. Logging must never fail a
    /// trial, so errors are ignored.
    pub fn log(&self, id: &str, line: &str) {
        let path = self.trial_dir(id).join(names::LOG);
        if let Ok(mut file) = std::fs::OpenOptions::new().append(true).create(true).open(path) {
            let _ = writeln!(file, "{line}");
        }
    }
}
