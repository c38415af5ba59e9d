//! Reports of a run: reads `trials.parquet` with polars and renders the
//! trial table, ranked by the experiment's metric, as `report.md` and a
//! self-contained `report.html` (inline CSS, nothing fetched).
//!
//! This is the first cut: one ranked table and the best trial. Charts,
//! seed aggregation and baselines build on the same reading of the tables.
use anyhow::{Context, Result};
use polars::prelude::{AnyValue, DataFrame, ParquetReader, SerReader};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub struct Report {
    /// The ranked table of the sweep just run, as Markdown, for the
    /// terminal; the files hold every trial in the run folder.
    pub summary: String,
    pub markdown: PathBuf,
    pub html: PathBuf,
}

/// Columns shown after the swept keys, when present.
const RESULT_COLUMNS: [&str; 6] = ["eval/loss", "eval/accuracy", "train/loss", "perf/tokens_per_s", "params", "wall_s"];

/// Writes the report of every trial in `run_dir`; the terminal summary
/// keeps only the trials in `sweep` (the ones the current file asked for),
/// so trials left by an earlier version of the file do not crowd it.
pub fn write(run_dir: &Path, title: &str, metric: &str, maximize: bool, sweep: &HashSet<String>) -> Result<Report> {
    let path = run_dir.join("trials.parquet");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let frame = ParquetReader::new(file).finish().with_context(|| format!("reading {}", path.display()))?;
    let table = ranked_table(&frame, metric, maximize)?;

    let best = best_line(&table, metric, maximize);
    let markdown_path = run_dir.join("report.md");
    std::fs::write(&markdown_path, format!("# {title}\n\n{best}\n\n{}\n", markdown(&table)))?;
    let html_path = run_dir.join("report.html");
    std::fs::write(&html_path, html(title, &best, &table))?;

    let current = table.only(sweep);
    let mut summary = format!("{}\n\n{}", best_line(&current, metric, maximize), markdown(&current));
    let others = table.rows.len() - current.rows.len();
    if others > 0 {
        summary.push_str(&format!("\n({others} more trials from earlier versions of the experiment are in the report.)"));
    }
    Ok(Report { summary, markdown: markdown_path, html: html_path })
}

/// Header and cell text, best trial first, failed trials last.
struct TextTable {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// The ranking metric's value per row, when the trial has one.
    scores: Vec<Option<f64>>,
    ids: Vec<String>,
}

impl TextTable {
    /// The rows whose trial id is in `ids`, order kept.
    fn only(&self, ids: &HashSet<String>) -> TextTable {
        let keep: Vec<usize> = (0..self.ids.len()).filter(|&i| ids.contains(&self.ids[i])).collect();
        TextTable {
            header: self.header.clone(),
            rows: keep.iter().map(|&i| self.rows[i].clone()).collect(),
            scores: keep.iter().map(|&i| self.scores[i]).collect(),
            ids: keep.iter().map(|&i| self.ids[i].clone()).collect(),
        }
    }
}

fn ranked_table(frame: &DataFrame, metric: &str, maximize: bool) -> Result<TextTable> {
    let names: Vec<String> = frame.get_column_names().iter().map(|s| s.to_string()).collect();
    let swept: Vec<&String> = names.iter().filter(|n| n.starts_with("model.") || n.starts_with("data.") || n.starts_with("train.")).collect();
    let mut header: Vec<String> = vec!["trial_id".into()];
    header.extend(swept.iter().map(|s| s.to_string()));
    header.push("seed".into());
    header.push("status".into());
    header.extend(RESULT_COLUMNS.iter().filter(|c| names.iter().any(|n| n == *c)).map(|c| c.to_string()));
    if names.iter().any(|n| n == "error") {
        header.push("error".into());
    }

    let cell = |column: &str, i: usize| -> Result<String> {
        let value = frame.column(column)?.get(i)?;
        Ok(match value {
            AnyValue::Null => String::new(),
            AnyValue::Float64(v) => format_number(column, v),
            other => other.get_str().map(str::to_owned).unwrap_or_else(|| other.to_string()),
        })
    };
    let score = |i: usize| -> Option<f64> {
        let column = frame.column(metric).ok()?;
        match column.get(i).ok()? {
            AnyValue::Float64(v) if v.is_finite() => Some(v),
            _ => None,
        }
    };
    let mut order: Vec<usize> = (0..frame.height()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| score(i).map(|s| if maximize { -s } else { s });
        match (key(a), key(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.cmp(&b),
        }
    });
    let mut table = TextTable { header: header.clone(), rows: Vec::new(), scores: Vec::new(), ids: Vec::new() };
    for i in order {
        table.rows.push(header.iter().map(|c| cell(c, i)).collect::<Result<_>>()?);
        table.scores.push(score(i));
        table.ids.push(cell("trial_id", i)?);
    }
    Ok(table)
}

fn format_number(column: &str, v: f64) -> String {
    match column {
        "perf/tokens_per_s" => format!("{v:.0}"),
        "wall_s" => format!("{v:.1}"),
        _ => format!("{v:.4}"),
    }
}

fn best_line(table: &TextTable, metric: &str, maximize: bool) -> String {
    let scored: Vec<(usize, f64)> = table.scores.iter().enumerate().filter_map(|(i, s)| s.map(|s| (i, s))).collect();
    match scored.as_slice() {
        [] => format!("No trial has `{metric}` yet."),
        [(i, s)] => format!("Best by {metric} ({}): trial {} with {s:.4}.", goal(maximize), table.ids[*i]),
        [(i, s), (_, runner_up), ..] => format!(
            "Best by {metric} ({}): trial {} with {s:.4}, {:.4} ahead of the runner-up.",
            goal(maximize),
            table.ids[*i],
            (s - runner_up).abs()
        ),
    }
}

fn goal(maximize: bool) -> &'static str {
    if maximize {
        "higher is better"
    } else {
        "lower is better"
    }
}

fn markdown(table: &TextTable) -> String {
    let line = |cells: &[String]| format!("| {} |", cells.iter().map(|c| c.replace('|', "\\|")).collect::<Vec<_>>().join(" | "));
    let mut out = vec![line(&table.header), line(&vec!["---".to_string(); table.header.len()])];
    out.extend(table.rows.iter().map(|r| line(r)));
    out.join("\n")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html(title: &str, best: &str, table: &TextTable) -> String {
    let header: String = table.header.iter().map(|h| format!("<th>{}</th>", escape(h))).collect();
    let rows: String = table
        .rows
        .iter()
        .map(|r| format!("<tr>{}</tr>\n", r.iter().map(|c| format!("<td>{}</td>", escape(c))).collect::<String>()))
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
:root {{ color-scheme: light dark; font-family: system-ui, sans-serif; }}
body {{ margin: 2rem; }}
table {{ border-collapse: collapse; font-variant-numeric: tabular-nums; }}
th, td {{ padding: 0.3rem 0.7rem; border-bottom: 1px solid #8884; text-align: right; }}
th {{ position: sticky; top: 0; background: Canvas; }}
tbody tr:first-child {{ font-weight: bold; }}
</style></head>
<body>
<h1>{title}</h1>
<p>{best}</p>
<table><thead><tr>{header}</tr></thead>
<tbody>
{rows}</tbody></table>
</body></html>
"#,
        title = escape(title),
        best = escape(best),
    )
}
