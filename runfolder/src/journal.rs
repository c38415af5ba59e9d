//! A decision log: one JSON line per decision, appended under a lock and
//! read back whole before each new one, so several processes sharing the
//! run folder (or a run killed and resumed) decide as one process would.
//! Early stopping's promotions and a search's suggestions are kept so.
use crate::claim::{self, Claim};
use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Journal {
    path: PathBuf,
    lock: PathBuf,
    /// The file, as last read, ends in a line a kill cut short.
    cut_short: bool,
}

impl Journal {
    /// The journal at `path`, its writes ordered by the claim `lock`.
    pub fn new(path: &Path, lock: &Path) -> Journal {
        Journal { path: path.to_path_buf(), lock: lock.to_path_buf(), cut_short: false }
    }

    /// Forgets every entry (`--fresh`).
    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Holds the lock until the claim is dropped: read, decide and append
    /// while holding it.
    pub fn lock(&self) -> Result<Claim> {
        claim::wait_for(&self.lock).with_context(|| format!("locking {}", self.path.display()))
    }

    /// Every entry so far, in order. A line cut short by a kill is the one
    /// that was being written: not yet a decision, so left out.
    pub fn read<T: DeserializeOwned>(&mut self) -> Result<Vec<T>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        self.cut_short = !text.is_empty() && !text.ends_with('\n');
        Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
    }

    /// Appends one entry, durably; call under the lock, after a
    /// [`Journal::read`].
    pub fn append<T: Serialize>(&mut self, entry: &T) -> Result<()> {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
        // A line a kill cut short stays a line of its own (reads skip it),
        // rather than swallowing the start of this one.
        let line = if self.cut_short { "\n" } else { "" }.to_string() + &serde_json::to_string(entry)? + "\n";
        self.cut_short = false;
        file.write_all(line.as_bytes()).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_cut_short_is_skipped_and_the_next_starts_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let mut journal = Journal::new(&path, &dir.path().join(".lock"));
        let _turn = journal.lock().unwrap();
        assert!(journal.read::<u32>().unwrap().is_empty());
        journal.append(&1u32).unwrap();
        // A kill in the middle of writing an object.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"trial").unwrap();
        assert_eq!(journal.read::<u32>().unwrap(), vec![1]);
        journal.append(&3u32).unwrap();
        assert_eq!(journal.read::<u32>().unwrap(), vec![1, 3]);
    }
}
