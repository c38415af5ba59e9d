//! Text files as the corpus and the labelled-example readers take them:
//! read and checked as UTF-8, and JSON Lines parsed line by line, every
//! error naming the file (and the line).
use crate::error::InputError;
use serde_json::Value;
use std::path::Path;

fn fail(file: &Path, message: String) -> InputError {
    InputError::new(message).in_file(file)
}

/// The file's bytes.
pub fn bytes(file: &Path) -> Result<Vec<u8>, InputError> {
    std::fs::read(file).map_err(|e| fail(file, format!("cannot read: {e}")))
}

/// `bytes` of `file` as text.
pub fn utf8<'a>(file: &Path, bytes: &'a [u8]) -> Result<&'a str, InputError> {
    std::str::from_utf8(bytes).map_err(|e| fail(file, format!("not UTF-8 text: {e}")))
}

/// Each non-blank line of JSON Lines `text` as a value, with its 1-based
/// line number; an error for a line that is not JSON.
pub fn json_lines<'a>(file: &'a Path, text: &'a str) -> impl Iterator<Item = Result<(usize, Value), InputError>> + 'a {
    text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(move |(index, line)| {
        let value = serde_json::from_str(line).map_err(|e| at_line(file, index + 1, format!("invalid JSON: {e}")))?;
        Ok((index + 1, value))
    })
}

/// An error about `line` of `file`.
pub fn at_line(file: &Path, line: usize, message: String) -> InputError {
    fail(file, message).at_line(Some(line))
}
