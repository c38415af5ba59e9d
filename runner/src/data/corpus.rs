//! Reads the documents of a corpus given as glob patterns: `.txt`
//! (documents separated by blank lines), `.jsonl` (one object per line with
//! a text field), `.parquet` and `.arrow` (a text column, read with polars;
//! `.arrow` is the Arrow IPC stream format that Hugging Face `datasets`
//! writes, one row a document), folders that `save_to_disk` wrote, and
//! `hf:` ids of the `datasets` cache ([`super::datasets_cache`]). The text
//! field or column is `text` unless `data.text_column` names another.
use super::{cache, datasets_cache, text_file};
use crate::config::DataSection;
use crate::error::InputError;
use polars::prelude::{IpcStreamReader, ParquetReader, SerReader, DataFrame};
use std::path::{Path, PathBuf};

const KEY: &str = "data.corpus";

pub struct Corpus {
    pub files: Vec<PathBuf>,
    pub documents: Vec<String>,
    /// Hash of the files' contents in order (and of the column read, when
    /// not the default): the cache key of everything derived from this
    /// corpus.
    pub fingerprint: String,
}

pub fn read(data: &DataSection) -> Result<Corpus, InputError> {
    let files = expand(&data.corpus)?;
    let column = data.corpus_column();
    let mut documents = Vec::new();
    let mut key = cache::Key::new();
    for file in &files {
        let read = match extension(file).as_str() {
            // An Arrow file streams: neither hashing nor reading holds it whole.
            "arrow" => {
                key.file_part(file).map_err(|e| file_error(file, format!("cannot read: {e}")))?;
                arrow_documents(file, column)?
            }
            format @ ("txt" | "jsonl" | "parquet") => {
                let bytes = text_file::bytes(file).map_err(|e| e.key(KEY))?;
                key.part(&bytes);
                match format {
                    "txt" => text_documents(file, &bytes)?,
                    "jsonl" => jsonl_documents(file, &bytes, column)?,
                    _ => parquet_documents(file, bytes, column)?,
                }
            }
            other => return Err(file_error(file, format!("unsupported corpus format `.{other}` (use .txt, .jsonl, .parquet or .arrow)"))),
        };
        documents.extend(read.into_iter().filter(|d| !d.trim().is_empty()));
    }
    if documents.is_empty() {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        return Err(InputError::new(format!("the corpus is empty: no text in {}", names.join(", "))).key(KEY));
    }
    // Another column of the same files is another corpus; the default
    // leaves the keys of earlier runs as they were.
    if data.text_column.is_some() {
        key.part(b"text_column");
        key.part(column.as_bytes());
    }
    Ok(Corpus { files, documents, fingerprint: key.finish() })
}

/// Every file the patterns match, sorted within a pattern (a `save_to_disk`
/// folder gives its files in its order, an `hf:` id its split's); a pattern
/// that matches nothing is an error (a typo must not shrink the corpus
/// silently).
fn expand(patterns: &[String]) -> Result<Vec<PathBuf>, InputError> {
    let mut files = Vec::new();
    for pattern in patterns {
        let matched = if crate::hub::is_hub_id(pattern) {
            let split = datasets_cache::split_files(pattern)?;
            eprintln!("corpus {pattern}: {}", split.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "));
            split
        } else {
            matching(pattern)?
        };
        files.extend(matched.into_iter().filter(|p| !files.contains(p)).collect::<Vec<_>>());
    }
    Ok(files)
}

/// The files of one glob pattern; other folders than `save_to_disk` ones
/// are passed over.
fn matching(pattern: &str) -> Result<Vec<PathBuf>, InputError> {
    let paths = glob::glob(pattern).map_err(|e| InputError::new(format!("bad glob pattern `{pattern}`: {e}")).key(KEY))?;
    let mut paths: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
    paths.sort();
    let mut matched = Vec::new();
    for path in paths {
        if !path.is_dir() {
            matched.push(path);
        } else if let Some(saved) = datasets_cache::saved_split_files(&path)? {
            matched.extend(saved);
        }
    }
    if matched.is_empty() {
        if Path::new(pattern).is_dir() {
            return Err(InputError::new(format!("`{pattern}` is a folder but not one that `save_to_disk` wrote (no state.json): give its files, e.g. `{pattern}/*.txt`")).key(KEY));
        }
        return Err(InputError::new(format!(
            "`{pattern}` matches no files (relative to {})",
            std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| ".".into())
        ))
        .key(KEY));
    }
    Ok(matched)
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

fn jsonl_documents(file: &Path, bytes: &[u8], column: &str) -> Result<Vec<String>, InputError> {
    let text = text_file::utf8(file, bytes).map_err(|e| e.key(KEY))?;
    let mut documents = Vec::new();
    for parsed in text_file::json_lines(file, text) {
        let (line, value) = parsed.map_err(|e| e.key(KEY))?;
        match value.get(column) {
            Some(serde_json::Value::String(s)) => documents.push(s.clone()),
            _ => return Err(text_file::at_line(file, line, format!("expected an object with a string field `{column}`")).key(KEY)),
        }
    }
    Ok(documents)
}

fn parquet_documents(file: &Path, bytes: Vec<u8>, column: &str) -> Result<Vec<String>, InputError> {
    let mut reader = ParquetReader::new(std::io::Cursor::new(bytes));
    let schema = reader.schema().map_err(|e| file_error(file, format!("not a Parquet file: {e}")))?;
    has_column(file, column, schema.iter_names().map(|n| n.as_str()).collect())?;
    let frame = reader.with_columns(Some(vec![column.into()])).finish().map_err(|e| file_error(file, format!("cannot read column `{column}`: {e}")))?;
    strings(file, &frame, column)
}

/// The Arrow IPC stream format: batch by batch from the file, keeping only
/// the text column of each.
fn arrow_documents(file: &Path, column: &str) -> Result<Vec<String>, InputError> {
    let cannot_read = |e: std::io::Error| file_error(file, format!("cannot read: {e}"));
    let mut buffered = std::io::BufReader::new(std::fs::File::open(file).map_err(cannot_read)?);
    // The first bytes, looked at without being consumed.
    if std::io::BufRead::fill_buf(&mut buffered).map_err(cannot_read)?.starts_with(b"ARROW1") {
        return Err(file_error(file, "is an Arrow IPC file (Feather); bertlab reads the IPC stream format that `datasets` writes (pyarrow: `pa.ipc.new_stream`)".into()));
    }
    let mut reader = IpcStreamReader::new(buffered);
    let schema = reader.schema().map_err(|e| file_error(file, format!("not an Arrow IPC stream: {e}")))?;
    has_column(file, column, schema.iter_names().map(|n| n.as_str()).collect())?;
    let frame = reader.with_columns(Some(vec![column.into()])).finish().map_err(|e| file_error(file, format!("cannot read column `{column}`: {e}")))?;
    strings(file, &frame, column)
}

fn has_column(file: &Path, column: &str, names: Vec<&str>) -> Result<(), InputError> {
    if names.contains(&column) {
        return Ok(());
    }
    Err(file_error(file, format!("has no column `{column}` (it has: {}); data.text_column names the one holding the text", names.join(", "))))
}

/// The non-null strings of `column`.
fn strings(file: &Path, frame: &DataFrame, column: &str) -> Result<Vec<String>, InputError> {
    let values = frame.column(column).map_err(|e| file_error(file, e.to_string()))?;
    let text = values.str().map_err(|_| file_error(file, format!("column `{column}` is {}, not strings", values.dtype())))?;
    Ok(text.iter().flatten().map(str::to_owned).collect())
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
        assert_eq!(parquet_documents(Path::new("c.parquet"), bytes, "text").unwrap(), ["first document", "second one"]);
        let bytes = write(df!("text" => [1i64, 2]).unwrap());
        let err = parquet_documents(Path::new("c.parquet"), bytes, "text").unwrap_err();
        assert!(err.message.contains("not strings"), "{err}");
        let bytes = write(df!("body" => ["x"]).unwrap());
        let err = parquet_documents(Path::new("c.parquet"), bytes.clone(), "text").unwrap_err().message;
        assert!(err.contains("no column `text` (it has: body); data.text_column"), "{err}");
        assert_eq!(parquet_documents(Path::new("c.parquet"), bytes, "body").unwrap(), ["x"]);
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let err = jsonl_documents(Path::new("c.jsonl"), b"{\"text\": \"a\"}\n{\"body\": 1}\n", "text").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert_eq!(err.key.as_deref(), Some(KEY));
    }

    #[test]
    fn arrow_streams_give_their_column_and_arrow_files_are_named_as_such() {
        use polars::prelude::{df, IpcStreamWriter, SerWriter};
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.arrow");
        let mut frame = df!("id" => [1i64, 2, 3], "content" => [Some("a document"), None, Some("another")]).unwrap();
        IpcStreamWriter::new(std::fs::File::create(&file).unwrap()).finish(&mut frame).unwrap();
        assert_eq!(arrow_documents(&file, "content").unwrap(), ["a document", "another"]);
        let err = arrow_documents(&file, "text").unwrap_err().message;
        assert!(err.contains("no column `text` (it has: id, content)"), "{err}");
        std::fs::write(&file, b"ARROW1\0\0rest").unwrap();
        assert!(arrow_documents(&file, "text").unwrap_err().message.contains("Arrow IPC file (Feather)"));
    }
}
