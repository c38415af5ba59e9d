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

    /// The cache's folder, which processes on other machines share
    /// through `BERTLAB_CACHE_DIR`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of entry `key` of `kind`, e.g. `tokenizers/3fa2....json`.
    pub fn entry(&self, kind: &str, key: &str, extension: &str) -> PathBuf {
        self.root.join(kind).join(format!("{key}.{extension}"))
    }

    /// Writes through `write` to a temporary file beside `path`, then
    /// moves it there unless an entry is there already: the first writer
    /// wins, so processes that computed an entry at the same time all read
    /// back the same one (a trained vocabulary differs from one training to
    /// the next, see [`super::tokenizer`]).
    pub fn store(&self, path: &Path, write: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let dir = path.parent().expect("cache entries live in a folder");
        std::fs::create_dir_all(dir)?;
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("tmp");
        let temp = tempfile::Builder::new().suffix(&format!(".{extension}")).tempfile_in(dir)?;
        write(temp.path())?;
        match temp.persist_noclobber(path) {
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => Ok(other.map(|_| ())?),
        }
    }
}

/// Hex SHA-256 of the parts, each length-prefixed so ("ab","c") != ("a","bc").
pub fn key(parts: &[&[u8]]) -> String {
    let mut key = Key::new();
    parts.iter().for_each(|part| key.part(part));
    key.finish()
}

/// [`key`] built one part at a time, a part read from a file as it streams
/// by: a corpus is keyed without holding all its files in memory.
pub struct Key(Sha256);

impl Key {
    pub fn new() -> Key {
        Key(Sha256::new())
    }

    pub fn part(&mut self, part: &[u8]) {
        self.0.update((part.len() as u64).to_le_bytes());
        self.0.update(part);
    }

    /// The whole of `file` as one part, read in blocks.
    pub fn file_part(&mut self, file: &Path) -> std::io::Result<()> {
        let file = std::fs::File::open(file)?;
        let length = file.metadata()?.len();
        self.0.update(length.to_le_bytes());
        let read = std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, file), &mut self.0)?;
        if read != length {
            return Err(std::io::Error::other(format!("changed while being read ({length} bytes, then {read})")));
        }
        Ok(())
    }

    pub fn finish(self) -> String {
        self.0.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_streamed_keys_as_its_bytes_given_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.bin");
        // Over one read block, so the file is hashed in pieces.
        let bytes: Vec<u8> = (0..(3 << 19) as u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &bytes).unwrap();
        let mut streamed = Key::new();
        streamed.part(b"first");
        streamed.file_part(&file).unwrap();
        assert_eq!(streamed.finish(), key(&[b"first", &bytes]));
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
    }
}
