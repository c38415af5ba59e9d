//! Reads the documents of a corpus given as glob patterns: `.txt`
//! (documents separated by blank lines), `.jsonl` (one object per line with
//! a `text` field) and `.parquet` (a `text` column, read with polars).
use super::text_file;
use crate::error::InputError;
use polars::prelude::{ParquetReader, SerReader};
use std::path::{Path, PathBuf};

const KEY: &str = "data.corpus";

pub struct Corpus {
    pub files: Vec<PathBuf>,
    pub documents: Vec<String>,
    /// Hash of the files' contents in order: the cache key of everything
    /// derived from this corpus.
    pub fingerprint: String,
}

pub fn read(patterns: &[String]) -> Result<Corpus, InputError> {
    let files = expand(patterns)?;
    let mut documents = Vec::new();
    let mut hashed: Vec<Vec<u8>> = Vec::new();
    for file in &files {
        let bytes = text_file::bytes(file).map_err(|e| e.key(KEY))?;
        let read = match extension(file).as_str() {
            "txt" => text_documents(file, &bytes)?,
            "jsonl" => jsonl_documents(file, &bytes)?,
            "parquet" => parquet_documents(file, bytes.clone())?,
            other => {
                return Err(file_error(file, format!("unsupported corpus format `.{other}` (use .txt, .jsonl or .parquet)")))
            }
        };
        documents.extend(read.into_iter().filter(|d| !d.trim().is_empty()));
        hashed.push(bytes);
    }
    if documents.is_empty() {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        return Err(InputError::new(format!("the corpus is empty: no text in {}", names.join(", "))).key(KEY));
    }
    let parts: Vec<&[u8]> = hashed.iter().map(Vec::as_slice).collect();
    Ok(Corpus { files, documents, fingerprint: super::cache::key(&parts) })
}

/// Every file the patterns match, sorted within a pattern; a pattern that
/// matches nothing is an error (a typo must not shrink the corpus silently).
fn expand(patterns: &[String]) -> Result<Vec<PathBuf>, InputError> {
    let mut files = Vec::new();
    for pattern in patterns {
        let paths = glob::glob(pattern)
            .map_err(|e| InputError::new(format!("bad glob pattern `{pattern}`: {e}")).key(KEY))?;
        let mut matched: Vec<PathBuf> = paths.filter_map(Result::ok).filter(|p| !p.is_dir()).collect();
        if matched.is_empty() {
            return Err(InputError::new(format!(
                "`{pattern}` matches no files (relative to {})",
                std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| ".".into())
            ))
            .key(KEY));
        }
        matched.sort();
        files.extend(matched.into_iter().filter(|p| !files.contains(p)).collect::<Vec<_>>());
    }
    Ok(files)
}

fn extension(file: &Path) -> String {
    file.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default()
}

fn file_error(file: &Path, message: String) -> InputError {
    InputError::new(message).key(KEY).in_file(file)
}

/// Documents are separated by one or more blank lines.
fn text_documents(file: &Path, bytes: &[u8]) -> Result<Vec<String>, InputError> {
    let text = text_file::utf8(file, bytes).map_err(|e| e.key(KEY))?;
    let mut documents = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            documents.push(std::mem::take(&mut current));
        } else {
            if !current.is_empty() {
                current.push('\n');
            }
            current.push_str(line);
        }
    }
    documents.push(current);
    Ok(documents)
}

fn jsonl_documents(file: &Path, bytes: &[u8]) -> Result<Vec<String>, InputError> {
    let text = text_file::utf8(file, bytes).map_err(|e| e.key(KEY))?;
    let mut documents = Vec::new();
    for parsed in text_file::json_lines(file, text) {
        let (line, value) = parsed.map_err(|e| e.key(KEY))?;
        match value.get("text") {
            Some(serde_json::Value::String(s)) => documents.push(s.clone()),
            _ => return Err(text_file::at_line(file, line, "expected an object with a string field `text`".into()).key(KEY)),
        }
    }
    Ok(documents)
}

fn parquet_documents(file: &Path, bytes: Vec<u8>) -> Result<Vec<String>, InputError> {
    let frame = ParquetReader::new(std::io::Cursor::new(bytes))
        .with_columns(Some(vec!["text".into()]))
        .finish()
        .map_err(|e| file_error(file, format!("cannot read a `text` column: {e}")))?;
    let column = frame.column("text").map_err(|e| file_error(file, e.to_string()))?;
    let strings = column.str().map_err(|_| file_error(file, format!("column `text` is {}, not strings", column.dtype())))?;
    Ok(strings.iter().flatten().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_separate_documents() {
        let docs = text_documents(Path::new("x.txt"), b"one\ntwo\n\n\nthree\n").unwrap();
        let docs: Vec<&String> = docs.iter().filter(|d| !d.is_empty()).collect();
        assert_eq!(docs, ["one\ntwo", "three"]);
    }

    #[test]
    fn parquet_documents_come_from_the_text_column_and_other_types_are_refused() {
        use polars::prelude::{df, ParquetWriter};
        let write = |mut frame: polars::prelude::DataFrame| {
            let mut bytes = Vec::new();
            ParquetWriter::new(&mut bytes).finish(&mut frame).unwrap();
            bytes
        };
        let bytes = write(df!("id" => [1i64, 2], "text" => ["first document", "second one"]).unwrap());
        assert_eq!(parquet_documents(Path::new("c.parquet"), bytes).unwrap(), ["first document", "second one"]);
        let bytes = write(df!("text" => [1i64, 2]).unwrap());
        let err = parquet_documents(Path::new("c.parquet"), bytes).unwrap_err();
        assert!(err.message.contains("not strings"), "{err}");
        let bytes = write(df!("body" => ["x"]).unwrap());
        assert!(parquet_documents(Path::new("c.parquet"), bytes).unwrap_err().message.contains("`text`"));
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let err = jsonl_documents(Path::new("c.jsonl"), b"{\"text\": \"a\"}\n{\"body\": 1}\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert_eq!(err.key.as_deref(), Some(KEY));
    }
}
