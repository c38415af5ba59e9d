//! `runs/<name>/tracking-spool/`: which trials MLflow may not have in full
//! yet, and where they were meant to go. The records themselves are already
//! durable in each trial's folder (its record and `points.tsv`), so the
//! spool keeps one marker file per trial rather than a second copy of every
//! point; delivery compares with what the server holds and sends only what
//! is missing.
use super::client::KeyValue;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use runfolder::names::TRACKING_SPOOL as FOLDER;
const TARGET: &str = "target.json";
const PARENT_LOCK: &str = ".parent-lock";

/// Where the spooled trials are to be delivered, and the sweep's parent
/// run they nest under: one per run folder, shared by every process that
/// runs trials in it and by `sync`, which makes it if no run could.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Target {
    pub uri: String,
    pub experiment: String,
    /// The sweep's parent run, once the server had created it.
    pub parent_run_id: Option<String>,
    /// The parent run's name and tags (the trial runs carry the tags too).
    #[serde(default)]
    pub sweep_name: String,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn in_run(run_dir: &Path) -> Spool {
        Spool { dir: run_dir.join(FOLDER) }
    }

    pub fn set_target(&self, target: &Target) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let temporary = self.dir.join(format!("{TARGET}.tmp"));
        std::fs::write(&temporary, serde_json::to_string_pretty(target).expect("a target serialises"))?;
        std::fs::rename(temporary, self.dir.join(TARGET))
    }

    /// Waits for, and holds while it lives, the lock under which the
    /// folder's parent run is looked up or made.
    pub fn lock_parent(&self) -> std::io::Result<runfolder::claim::Claim> {
        runfolder::claim::wait_for(&self.dir.join(PARENT_LOCK))
    }

    pub fn target(&self) -> Option<Target> {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join(TARGET)).ok()?).ok()
    }

    /// Marks a trial as not yet confirmed in MLflow.
    pub fn mark(&self, trial_id: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::write(self.dir.join(format!("{trial_id}.pending")), b"")
    }

    /// Claims the streaming of a trial's records for this process's
    /// tracker, until the claim is dropped: a delivery by another process
    /// sharing the folder leaves the trial alone meanwhile, even once its
    /// record says it ended (the records may still be on their way).
    pub fn streaming(&self, trial_id: &str) -> Option<runfolder::claim::Claim> {
        let dir = self.dir.join(format!("{trial_id}.streaming"));
        std::fs::create_dir_all(&dir).ok()?;
        match runfolder::claim::try_claim(&dir).ok()? {
            runfolder::claim::Attempt::Mine(claim) => Some(claim),
            runfolder::claim::Attempt::Theirs(_) => None,
        }
    }

    /// Whether a live tracker, in any process, streams the trial's records.
    pub fn streamed_elsewhere(&self, trial_id: &str) -> bool {
        runfolder::claim::holder(&self.dir.join(format!("{trial_id}.streaming"))).is_some()
    }

    pub fn clear(&self, trial_id: &str) {
        let _ = std::fs::remove_file(self.dir.join(format!("{trial_id}.pending")));
    }

    pub fn pending(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut ids: Vec<String> =
            entries.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".pending").map(String::from)).collect();
        ids.sort();
        ids
    }
}
