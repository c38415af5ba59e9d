//! The error for rejected input: one line naming where the problem is (file,
//! line, key) and what it is. `main` turns it into exit code 2.
//!
//! Checks that know the key but not the files (a range check, a sweep
//! distribution, a derivation) return it keyed and unlocated
//! ([`InputError::at_key`]); the code holding the loaded files locates it
//! (`config::Loaded::locate` or the expansion's blame rule).
use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct InputError {
    /// The file the value came from, or another source (`--set`, an
    /// environment variable) in words.
    pub source: Option<String>,
    pub line: Option<usize>,
    /// Dotted key path, e.g. `train.steps` or `data.corpus`.
    pub key: Option<String>,
    pub message: String,
}

impl InputError {
    pub fn new(message: impl Into<String>) -> Self {
        InputError { source: None, line: None, key: None, message: message.into() }
    }

    /// What is wrong with the value at dotted `key`, not yet located.
    pub fn at_key(key: impl Into<String>, message: impl Into<String>) -> Self {
        InputError::new(message).key(key)
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn in_file(mut self, file: &Path) -> Self {
        self.source = Some(file.display().to_string());
        self
    }

    pub fn from_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn at_line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, self.line) {
            (Some(source), Some(line)) => write!(f, "{source}:{line}: ")?,
            (Some(source), None) => write!(f, "{source}: ")?,
            _ => {}
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for InputError {}
