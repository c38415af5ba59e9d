//! Reports of one or more run folders: which configuration won, by how
//! much and how surely across seeds, the learning curves, a heatmap over
//! two swept keys, each key's marginal effect, scaling with parameters and
//! FLOPs, published baselines alongside, fine-tuning's model selection
//! ([`selection`]), what early stopping and a search spent ([`spending`]),
//! and where the numbers came from.
//!
//! [`tables`] reads the Parquet tables with polars, [`configs`] groups
//! trials into configurations, [`curves`] averages their series,
//! [`content`] decides what the report says, and [`html`] and
//! [`markdown`] write it; [`charts`] draws the SVGs.
pub mod charts;
pub mod configs;
pub mod content;
pub mod curves;
pub mod format;
pub mod html;
pub mod markdown;
pub mod run_info;
pub mod selection;
pub mod spending;
pub mod tables;

use anyhow::{Context, Result};
pub use run_info::{Baseline, ReportOptions, RunInfo};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub struct Report {
    /// For the terminal: the summary and the ranked configurations that
    /// the trials in focus belong to.
    pub summary: String,
    pub html: PathBuf,
    pub markdown: PathBuf,
}

/// Rows of the configuration table printed to the terminal.
const TERMINAL_ROWS: usize = 20;

/// Writes `html` and, beside it, the Markdown report (same name, `.md`)
/// with its charts, from the run folders `dirs`. `focus`, when given,
/// limits the terminal summary to the configurations of these trials (the
/// sweep just run); the files always cover every trial.
pub fn write(dirs: &[PathBuf], html: &Path, focus: Option<&HashSet<String>>) -> Result<Report> {
    let runs = tables::load(dirs)?;
    let content = content::build(&runs)?;
    if let Some(folder) = html.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    }
    // Replaced whole: runs sharing a folder may write it at once.
    runfolder::atomic::write(html, html::render(&content).as_bytes()).with_context(|| format!("writing {}", html.display()))?;
    let markdown = html.with_extension("md");
    markdown::write(&content, &markdown)?;
    Ok(Report { summary: terminal_summary(&content, focus), html: html.to_owned(), markdown })
}

fn terminal_summary(content: &content::Content, focus: Option<&HashSet<String>>) -> String {
    let configs = &content.configurations;
    let shown = |i: usize| focus.is_none_or(|ids| configs.rows[i].trial_ids.iter().any(|id| ids.contains(id)));
    let keep: Vec<usize> = (0..content.table.rows.len()).filter(|&i| shown(i)).collect();
    let mut table = content.table.clone();
    table.rows = keep.iter().take(TERMINAL_ROWS).map(|&i| content.table.rows[i].clone()).collect();
    table.labels = keep.iter().take(TERMINAL_ROWS).map(|&i| content.table.labels[i].clone()).collect();
    let mut out = format!("{}\n\n{}", content.summary.join("\n"), markdown::table(&table));
    let hidden = content.table.rows.len() - table.rows.len();
    if hidden > 0 {
        out.push_str(&format!("\n({hidden} more configurations are in the report.)"));
    }
    out
}
