//! A content-addressed cache directory for work worth keeping between trials
//! and runs: trained vocabularies and packed sequences. Entries are written
//! to a temporary name and renamed, so a crash or a concurrent run never
//! leaves a half-written entry.
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// `BERTLAB_CACHE_DIR`, else `$XDG_CACHE_HOME/bertlab`, else
    /// `~/.cache/bertlab`, else a folder in the system temp dir.
    pub fn from_env() -> Cache {
        let root = std::env::var_os("BERTLAB_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("bertlab")))
            .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/bertlab")))
            .unwrap_or_else(|| std::env::temp_dir().join("bertlab-cache"));
        Cache { root }
    }

    /// The path of entry `key` of `kind`, e.g. `tokenizers/3fa2....json`.
    pub fn entry(&self, kind: &str, key: &str, extension: &str) -> PathBuf {
        self.root.join(kind).join(format!("{key}.{extension}"))
    }

    /// Writes through `write` to a temporary file beside `path`, then renames.
    pub fn store(&self, path: &Path, write: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let dir = path.parent().expect("cache entries live in a folder");
        std::fs::create_dir_all(dir)?;
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("tmp");
        let temp = tempfile::Builder::new().suffix(&format!(".{extension}")).tempfile_in(dir)?;
        write(temp.path())?;
        temp.persist(path)?;
        Ok(())
    }
}

/// Hex SHA-256 of the parts, each length-prefixed so ("ab","c") != ("a","bc").
pub fn key(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
