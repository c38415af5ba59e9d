//! A small row-oriented table that reads and writes Parquet through polars.
//! Rows may differ in columns (a sweep adds a swept key, a failed trial has
//! no metrics); writing takes the union, in order of first appearance, with
//! nulls where a row has no value, and types each column from its values.
use anyhow::{Context, Result};
use polars::prelude::{AnyValue, Column, DataFrame, ParquetReader, ParquetWriter, PlSmallStr, SerReader};
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

impl Cell {
    pub fn from_json(value: &serde_json::Value) -> Cell {
        match value {
            serde_json::Value::Null => Cell::Null,
            serde_json::Value::Bool(b) => Cell::Bool(*b),
            serde_json::Value::Number(n) => n.as_i64().map(Cell::Int).unwrap_or_else(|| Cell::Float(n.as_f64().unwrap_or(f64::NAN))),
            serde_json::Value::String(s) => Cell::Text(s.clone()),
            other => Cell::Text(other.to_string()),
        }
    }

    fn from_any(value: AnyValue) -> Cell {
        match value {
            AnyValue::Null => Cell::Null,
            AnyValue::Boolean(b) => Cell::Bool(b),
            AnyValue::String(s) => Cell::Text(s.to_string()),
            AnyValue::StringOwned(s) => Cell::Text(s.to_string()),
            AnyValue::Float32(f) => Cell::Float(f as f64),
            AnyValue::Float64(f) => Cell::Float(f),
            other => other.extract::<i64>().map(Cell::Int).unwrap_or_else(|| Cell::Text(other.to_string())),
        }
    }
}

/// Cells by column name, in the order the columns were set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row(Vec<(String, Cell)>);

impl Row {
    pub fn iter(&self) -> impl Iterator<Item = &(String, Cell)> {
        self.0.iter()
    }

    pub fn get(&self, column: &str) -> Option<&Cell> {
        self.0.iter().find(|(c, _)| c == column).map(|(_, v)| v)
    }

    /// Sets a cell, keeping the column's position if it exists.
    pub fn insert(&mut self, column: String, value: Cell) {
        match self.0.iter_mut().find(|(c, _)| *c == column) {
            Some(slot) => slot.1 = value,
            None => self.0.push((column, value)),
        }
    }

    pub fn extend(&mut self, cells: impl IntoIterator<Item = (String, Cell)>) {
        for (c, v) in cells {
            self.insert(c, v);
        }
    }
}

impl<const N: usize> From<[(String, Cell); N]> for Row {
    fn from(cells: [(String, Cell); N]) -> Row {
        let mut row = Row::default();
        row.extend(cells);
        row
    }
}

#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// Reads a Parquet file; a missing file is an empty table.
    pub fn read(path: &Path) -> Result<Table> {
        if !path.exists() {
            return Ok(Table::default());
        }
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let frame = ParquetReader::new(file).finish().with_context(|| format!("reading {}", path.display()))?;
        let mut rows = vec![Row::default(); frame.height()];
        for column in frame.columns() {
            for (i, row) in rows.iter_mut().enumerate() {
                row.insert(column.name().to_string(), Cell::from_any(column.get(i)?.into_static()));
            }
        }
        Ok(Table { rows })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn find(&self, predicate: impl Fn(&Row) -> bool) -> Option<&Row> {
        self.rows.iter().find(|r| predicate(r))
    }

    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn retain(&mut self, keep: impl Fn(&Row) -> bool) {
        self.rows.retain(|r| keep(r));
    }

    /// Replaces the row with the same value in `key_column`, or appends.
    pub fn upsert(&mut self, key_column: &str, row: Row) {
        let key = row.get(key_column).cloned();
        match self.rows.iter_mut().find(|r| r.get(key_column).cloned() == key) {
            Some(existing) => *existing = row,
            None => self.rows.push(row),
        }
    }

    pub fn to_frame(&self) -> Result<DataFrame> {
        let mut names: Vec<&str> = Vec::new();
        for row in &self.rows {
            for (name, _) in &row.0 {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        let columns = names
            .iter()
            .map(|&name| {
                let cells: Vec<&Cell> = self.rows.iter().map(|r| r.get(name).unwrap_or(&Cell::Null)).collect();
                column_of(name, &cells)
            })
            .collect();
        Ok(DataFrame::new(self.rows.len(), columns)?)
    }

    /// Writes atomically: a temporary file in the same folder, then a rename.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut frame = self.to_frame()?;
        let dir = path.parent().context("table path has a folder")?;
        let mut temp = tempfile::Builder::new().suffix(".parquet.tmp").tempfile_in(dir)?;
        ParquetWriter::new(temp.as_file_mut()).finish(&mut frame).with_context(|| format!("writing {}", path.display()))?;
        temp.as_file().sync_all()?;
        temp.persist(path).with_context(|| format!("replacing {}", path.display()))?;
        Ok(())
    }
}

/// A column typed by its cells: text if any is text, else float if any is a
/// float (integers widen), else integer, else boolean.
fn column_of(name: &str, cells: &[&Cell]) -> Column {
    let any = |f: fn(&Cell) -> bool| cells.iter().any(|c| f(c));
    let name = PlSmallStr::from(name);
    if any(|c| matches!(c, Cell::Text(_))) || (any(|c| matches!(c, Cell::Bool(_))) && any(|c| matches!(c, Cell::Int(_) | Cell::Float(_)))) {
        let values: Vec<Option<String>> = cells
            .iter()
            .map(|c| match c {
                Cell::Null => None,
                Cell::Text(s) => Some(s.clone()),
                Cell::Int(i) => Some(i.to_string()),
                Cell::Float(f) => Some(f.to_string()),
                Cell::Bool(b) => Some(b.to_string()),
            })
            .collect();
        Column::new(name, values)
    } else if any(|c| matches!(c, Cell::Float(_))) {
        let values: Vec<Option<f64>> = cells
            .iter()
            .map(|c| match c {
                Cell::Float(f) => Some(*f),
                Cell::Int(i) => Some(*i as f64),
                _ => None,
            })
            .collect();
        Column::new(name, values)
    } else if any(|c| matches!(c, Cell::Int(_))) {
        let values: Vec<Option<i64>> = cells.iter().map(|c| if let Cell::Int(i) = c { Some(*i) } else { None }).collect();
        Column::new(name, values)
    } else {
        let values: Vec<Option<bool>> = cells.iter().map(|c| if let Cell::Bool(b) = c { Some(*b) } else { None }).collect();
        Column::new(name, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_ragged_rows_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let mut table = Table::default();
        table.push(Row::from([("id".into(), Cell::Text("a".into())), ("x".into(), Cell::Int(1))]));
        table.push(Row::from([("id".into(), Cell::Text("b".into())), ("x".into(), Cell::Float(0.5)), ("err".into(), Cell::Text("boom".into()))]));
        table.write(&path).unwrap();

        let back = Table::read(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.rows()[0].get("x"), Some(&Cell::Float(1.0)));
        assert_eq!(back.rows()[0].get("err"), Some(&Cell::Null));
        assert_eq!(back.rows()[1].get("err"), Some(&Cell::Text("boom".into())));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files left behind");
    }

    #[test]
    fn upsert_replaces_by_key() {
        let mut table = Table::default();
        table.upsert("id", Row::from([("id".into(), Cell::Int(1)), ("v".into(), Cell::Int(1))]));
        table.upsert("id", Row::from([("id".into(), Cell::Int(1)), ("v".into(), Cell::Int(2))]));
        assert_eq!(table.len(), 1);
        assert_eq!(table.rows()[0].get("v"), Some(&Cell::Int(2)));
    }
}
