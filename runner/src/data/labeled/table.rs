//! Reading the columns a fine-tuning task needs from a file of labelled
//! examples: `.csv` (with a header, quoted as spreadsheets and pandas write
//! it) and `.parquet` through polars, `.jsonl` (one object per line) with
//! serde, and `.tsv` as GLUE and Hugging Face write it: split on tabs, not
//! quoted at all (a `"` in a sentence is just a character).
use crate::data::text_file;
use crate::error::InputError;
use crate::formats::{Column, FileLayout};
use polars::prelude::{CsvReadOptions, DataFrame, DataType, ParquetReader, SerReader};
use std::path::Path;

/// One example's cells, in the order the columns were asked for, and the
/// line (or row, for Parquet) it came from, for error messages.
pub struct Record {
    pub line: usize,
    pub cells: Vec<String>,
}

/// What reading a file gave: its records, and how many rows lacked a
/// needed value and were skipped (GLUE's QQP has a few such rows).
pub struct Records {
    pub records: Vec<Record>,
    pub skipped: usize,
}

fn fail(file: &Path, message: String) -> InputError {
    InputError::new(message).in_file(file)
}

/// The `columns` of every row of `file`.
pub fn read(file: &Path, layout: FileLayout, columns: &[Column]) -> Result<Records, InputError> {
    let records = match layout {
        FileLayout::Tsv { header } => tsv(file, header, columns)?,
        FileLayout::Jsonl => jsonl(file, columns)?,
        FileLayout::Csv | FileLayout::Parquet => frame_records(file, &frame(file, layout)?, columns)?,
    };
    if records.records.is_empty() {
        return Err(fail(file, "has no examples".into()));
    }
    Ok(records)
}

fn tsv(file: &Path, header: bool, columns: &[Column]) -> Result<Records, InputError> {
    let bytes = text_file::bytes(file)?;
    let text = text_file::utf8(file, &bytes)?;
    // MRPC's files, as GLUE's download script writes them, open with a
    // byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate();
    let names: Vec<&str> = match header {
        true => lines.next().map(|(_, l)| l.split('\t').collect()).unwrap_or_default(),
        false => Vec::new(),
    };
    let positions = columns
        .iter()
        .map(|column| match column {
            Column::Index(i) => Ok(*i),
            Column::Name(name) => position(file, &names, name),
        })
        .collect::<Result<Vec<usize>, InputError>>()?;
    let mut out = Records { records: Vec::new(), skipped: 0 };
    for (index, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        match positions.iter().map(|&p| fields.get(p).map(|f| f.to_string())).collect::<Option<Vec<String>>>() {
            Some(cells) => out.records.push(Record { line: index + 1, cells }),
            None => out.skipped += 1,
        }
    }
    Ok(out)
}

fn position(file: &Path, names: &[&str], name: &str) -> Result<usize, InputError> {
    names.iter().position(|n| *n == name).ok_or_else(|| fail(file, format!("has no column `{name}` (its header: {})", names.join(", "))).at_line(Some(1)))
}

fn jsonl(file: &Path, columns: &[Column]) -> Result<Records, InputError> {
    let bytes = text_file::bytes(file)?;
    let mut out = Records { records: Vec::new(), skipped: 0 };
    for parsed in text_file::json_lines(file, text_file::utf8(file, &bytes)?) {
        let (line, value) = parsed?;
        let mut cells = Vec::with_capacity(columns.len());
        for column in columns {
            let cell = match column {
                Column::Name(name) => value.get(name.as_ref()),
                Column::Index(_) => None,
            };
            match cell {
                Some(serde_json::Value::String(s)) => cells.push(s.clone()),
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => cells.push(v.to_string()),
                _ => return Err(text_file::at_line(file, line, format!("has no string or number field {}", column.describe()))),
            }
        }
        out.records.push(Record { line, cells });
    }
    Ok(out)
}

fn frame(file: &Path, layout: FileLayout) -> Result<DataFrame, InputError> {
    let result = match layout {
        FileLayout::Parquet => std::fs::File::open(file).map_err(|e| e.to_string()).and_then(|f| ParquetReader::new(f).finish().map_err(|e| e.to_string())),
        _ => {
            // No schema inference: every column is read as text, so a label
            // column of integers and one of words are handled alike.
            CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(0))
                .try_into_reader_with_file_path(Some(file.to_owned()))
                .and_then(|reader| reader.finish())
                .map_err(|e| e.to_string())
        }
    };
    result.map_err(|e| fail(file, format!("cannot read: {e}")))
}

fn frame_records(file: &Path, frame: &DataFrame, columns: &[Column]) -> Result<Records, InputError> {
    let mut texts = Vec::with_capacity(columns.len());
    for column in columns {
        let name = match column {
            Column::Index(i) => frame.get_column_names().get(*i).map(|n| n.to_string()).unwrap_or_default(),
            Column::Name(name) => name.to_string(),
        };
        let found = frame.column(&name).map_err(|_| {
            let names: Vec<String> = frame.get_column_names().iter().map(|n| n.to_string()).collect();
            fail(file, format!("has no column {} (its columns: {})", column.describe(), names.join(", ")))
        })?;
        let as_text = found.cast(&DataType::String).map_err(|e| fail(file, format!("column `{name}`: {e}")))?;
        let values: Vec<Option<String>> = as_text.str().map_err(|e| fail(file, e.to_string()))?.iter().map(|v| v.map(str::to_owned)).collect();
        texts.push(values);
    }
    let mut out = Records { records: Vec::new(), skipped: 0 };
    for row in 0..frame.height() {
        match texts.iter().map(|column| column[row].clone()).collect::<Option<Vec<String>>>() {
            // Line numbers count the header line, as an editor shows them.
            Some(cells) => out.records.push(Record { line: row + 2, cells }),
            None => out.skipped += 1,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::{df, ParquetWriter};

    #[test]
    fn parquet_columns_are_read_by_name_and_numbers_become_labels() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("train.parquet");
        let mut frame = df!("id" => [7i64, 8, 9], "text" => ["one", "two", "three"], "score" => [0.5f64, 1.0, 4.25]).unwrap();
        ParquetWriter::new(std::fs::File::create(&file).unwrap()).finish(&mut frame).unwrap();
        let read = read(&file, FileLayout::Parquet, &[Column::named("text"), Column::named("score")]).unwrap();
        let cells: Vec<Vec<String>> = read.records.iter().map(|r| r.cells.clone()).collect();
        assert_eq!(cells, [["one", "0.5"], ["two", "1.0"], ["three", "4.25"]]);
        assert_eq!(read.records[2].line, 4, "rows count from 2, after a header, as in a CSV");
        let missing = super::read(&file, FileLayout::Parquet, &[Column::named("sentence")]).err().unwrap();
        assert!(missing.message.contains("no column `sentence` (its columns: id, text, score)"), "{missing}");
    }

    #[test]
    fn a_tsv_row_short_of_a_column_is_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("qqp.tsv");
        std::fs::write(&file, "id\tquestion1\tquestion2\tis_duplicate\n1\ta \"b\tc\t1\n2\tbroken row\n").unwrap();
        let read = read(&file, FileLayout::Tsv { header: true }, &[Column::named("question1"), Column::named("is_duplicate")]).unwrap();
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.records[0].cells, ["a \"b", "1"]);
        assert_eq!(read.skipped, 1);
    }
}
