//! `report.md`: the report as GitHub-flavoured Markdown, with its charts
//! as SVG files in a folder beside it.
use crate::content::{Content, Table};
use anyhow::{Context, Result};
use std::path::Path;

/// Writes `path` and its charts into `<stem>-charts/` next to it.
pub fn write(content: &Content, path: &Path) -> Result<()> {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "report".into());
    let folder = format!("{stem}-charts");
    let charts = path.with_file_name(&folder);
    std::fs::create_dir_all(&charts).with_context(|| format!("creating {}", charts.display()))?;
    let mut out = vec![format!("# {}", content.title), String::new()];
    out.extend(content.summary.iter().cloned());
    out.push(String::new());
    out.push("## Configurations".into());
    out.push(String::new());
    out.push(table(&content.table));
    if !content.failed.rows.is_empty() {
        out.extend(["".into(), "## Failed trials".into(), "".into(), table(&content.failed)]);
    }
    if let Some(selection) = &content.selection {
        out.extend(["".into(), "## Model selection".into(), "".into(), crate::html::SELECTION_NOTE.into(), "".into(), table(selection)]);
    }
    if let Some(baselines) = &content.baselines {
        out.extend(["".into(), "## Baselines".into(), "".into(), table(baselines)]);
    }
    for section in &content.sections {
        out.extend(["".into(), format!("## {}", section.heading), "".into()]);
        out.extend(section.notes.iter().map(|n| format!("{n}\n")));
        for chart in &section.charts {
            let file = format!("{}.svg", chart.name);
            runfolder::atomic::write(&charts.join(&file), chart.svg.as_bytes())?;
            out.push(format!("![{}]({folder}/{file})", chart.title));
        }
    }
    out.extend(["".into(), "## Provenance".into(), "".into(), table(&content.provenance), String::new()]);
    runfolder::atomic::write(path, out.join("\n").as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// A GitHub-flavoured table; `|` in cells is escaped.
pub fn table(table: &Table) -> String {
    let line = |cells: Vec<&str>| format!("| {} |", cells.iter().map(|c| c.replace('|', "\\|").replace('\n', " ")).collect::<Vec<_>>().join(" | "));
    let mut out = vec![line(table.header.iter().map(String::as_str).collect()), line(vec!["---"; table.header.len()])];
    out.extend(table.rows.iter().map(|r| line(r.iter().map(|c| c.text.as_str()).collect())));
    out.join("\n")
}
