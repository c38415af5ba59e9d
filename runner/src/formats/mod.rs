//! The layouts of labelled-example files bertlab reads (`data.format`): a
//! file type ([`FileLayout`]) or a GLUE task as distributed ([`glue`]), and
//! the columns in them ([`Column`]). Below both `config`, which checks a
//! format's name when a file is loaded, and `data`, which reads the files.
pub mod glue;

use std::borrow::Cow;

/// Where a value sits in a row: a header name, or a position for files
/// without a header (GLUE's CoLA).
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Fixed in the code (GLUE's layouts) or given in the experiment file.
    Name(Cow<'static, str>),
    Index(usize),
}

impl Column {
    /// A column name fixed in the code.
    pub const fn named(name: &'static str) -> Column {
        Column::Name(Cow::Borrowed(name))
    }

    /// The column as an error message names it.
    pub fn describe(&self) -> String {
        match self {
            Column::Name(name) => format!("`{name}`"),
            Column::Index(i) => format!("number {}", i + 1),
        }
    }
}

/// How a file is laid out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FileLayout {
    Csv,
    /// Tab-separated, unquoted; `header` says whether the first line names
    /// the columns (all but GLUE's CoLA).
    Tsv { header: bool },
    Jsonl,
    Parquet,
}

impl FileLayout {
    /// The layout a format name or file extension stands for (`tsv` is
    /// read with a header).
    pub fn named(name: &str) -> Option<FileLayout> {
        match name.to_lowercase().as_str() {
            "csv" => Some(FileLayout::Csv),
            "tsv" => Some(FileLayout::Tsv { header: true }),
            "jsonl" => Some(FileLayout::Jsonl),
            "parquet" => Some(FileLayout::Parquet),
            _ => None,
        }
    }
}

/// `data.format`.
pub enum Format {
    File(FileLayout),
    Glue(&'static glue::GlueTask),
}

impl Format {
    pub fn parse(name: &str) -> Result<Format, String> {
        if let Some(layout) = FileLayout::named(name) {
            return Ok(Format::File(layout));
        }
        let known = || glue::names().join(", ");
        match name.strip_prefix("glue/") {
            Some(task) => glue::find(task).map(Format::Glue).ok_or_else(|| format!("`{task}` is not a GLUE task ({})", known())),
            None => Err(format!("`{name}` is not one of csv, tsv, jsonl, parquet, glue/<task> (tasks: {})", known())),
        }
    }
}
