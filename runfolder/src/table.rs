//! A small row-oriented table that reads and writes Parquet through polars.
//! Rows may differ in columns (a sweep adds a swept key, a failed trial has
//! no metrics); a frame takes the union, in order of first appearance, with
//! nulls where a row has no value, and types each column from its values
//! ([`ColumnType::of`]) or from a schema the caller gives.
use anyhow::{Context, Result};
use polars::prelude::{AnyValue, Column, DataFrame, DataType, ParquetReader, ParquetWriter, PlSmallStr, SerReader};
use serde::ser::SerializeMap;
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

/// A row is a JSON object in a trial's record, its columns in order.
impl serde::Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (column, cell) in &self.0 {
            match cell {
                Cell::Null => map.serialize_entry(column, &serde_json::Value::Null)?,
                Cell::Int(i) => map.serialize_entry(column, i)?,
                Cell::Float(f) => map.serialize_entry(column, f)?,
                Cell::Text(t) => map.serialize_entry(column, t)?,
                Cell::Bool(b) => map.serialize_entry(column, b)?,
            }
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for Row {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Row, D::Error> {
        struct Cells;
        impl<'de> serde::de::Visitor<'de> for Cells {
            type Value = Row;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of column values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Row, A::Error> {
                let mut row = Row::default();
                while let Some((column, value)) = access.next_entry::<String, serde_json::Value>()? {
                    row.insert(column, Cell::from_json(&value));
                }
                Ok(row)
            }
        }
        deserializer.deserialize_map(Cells)
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

    /// The columns of every row, each typed by its cells.
    pub fn columns(&self) -> Vec<(String, ColumnType)> {
        let mut names: Vec<&str> = Vec::new();
        for row in &self.rows {
            for (name, _) in &row.0 {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        names.iter().map(|&name| (name.to_string(), ColumnType::of(self.rows.iter().filter_map(|r| r.get(name))))).collect()
    }

    pub fn to_frame(&self) -> Result<DataFrame> {
        self.to_frame_as(&self.columns())
    }

    /// The rows as a frame of exactly `columns`, with these types.
    pub fn to_frame_as(&self, columns: &[(String, ColumnType)]) -> Result<DataFrame> {
        let columns = columns
            .iter()
            .map(|(name, kind)| {
                let cells: Vec<&Cell> = self.rows.iter().map(|r| r.get(name).unwrap_or(&Cell::Null)).collect();
                column_of(name, *kind, &cells)
            })
            .collect();
        Ok(DataFrame::new(self.rows.len(), columns)?)
    }

    /// Writes `frame` to `path` through a temporary file in `scratch` (on
    /// the same filesystem), synced, then renamed into place: a reader sees
    /// the old file or the new one, never a part of one.
    pub fn write_frame(frame: &mut DataFrame, path: &Path, scratch: &Path) -> Result<()> {
        let temporary = scratch.join(format!(".{}.{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("table"), std::process::id()));
        let written = (|| -> Result<()> {
            let file = std::fs::File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
            ParquetWriter::new(&file).finish(frame).with_context(|| format!("writing {}", path.display()))?;
            file.sync_all()?;
            std::fs::rename(&temporary, path).with_context(|| format!("replacing {}", path.display()))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written
    }
}

/// The type of a table column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ColumnType {
    Text,
    Float,
    Int,
    Bool,
}

impl ColumnType {
    /// Typed by its cells: text if any is text (or booleans mix with
    /// numbers), else float if any is a float (integers widen), else
    /// integer, else boolean; a column of nulls is text.
    pub fn of<'a>(cells: impl Iterator<Item = &'a Cell> + Clone) -> ColumnType {
        let any = |f: fn(&Cell) -> bool| cells.clone().any(f);
        if any(|c| matches!(c, Cell::Text(_))) || (any(|c| matches!(c, Cell::Bool(_))) && any(|c| matches!(c, Cell::Int(_) | Cell::Float(_)))) {
            ColumnType::Text
        } else if any(|c| matches!(c, Cell::Float(_))) {
            ColumnType::Float
        } else if any(|c| matches!(c, Cell::Int(_))) {
            ColumnType::Int
        } else if any(|c| matches!(c, Cell::Bool(_))) {
            ColumnType::Bool
        } else {
            ColumnType::Text
        }
    }

    /// The type that holds values of both (integers widen to floats,
    /// anything else mixed becomes text).
    pub fn join(self, other: ColumnType) -> ColumnType {
        match (self, other) {
            (a, b) if a == b => a,
            (ColumnType::Int, ColumnType::Float) | (ColumnType::Float, ColumnType::Int) => ColumnType::Float,
            _ => ColumnType::Text,
        }
    }

    pub fn of_dtype(dtype: &DataType) -> ColumnType {
        match dtype {
            DataType::Boolean => ColumnType::Bool,
            DataType::Float32 | DataType::Float64 => ColumnType::Float,
            t if t.is_integer() => ColumnType::Int,
            _ => ColumnType::Text,
        }
    }
}

fn column_of(name: &str, kind: ColumnType, cells: &[&Cell]) -> Column {
    let name = PlSmallStr::from(name);
    if kind == ColumnType::Text {
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
    } else if kind == ColumnType::Float {
        let values: Vec<Option<f64>> = cells
            .iter()
            .map(|c| match c {
                Cell::Float(f) => Some(*f),
                Cell::Int(i) => Some(*i as f64),
                _ => None,
            })
            .collect();
        Column::new(name, values)
    } else if kind == ColumnType::Int {
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
        Table::write_frame(&mut table.to_frame().unwrap(), &path, dir.path()).unwrap();

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
