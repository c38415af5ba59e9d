//! `report.html`: one self-contained page — inline CSS, inline SVG charts,
//! a few lines of inline script to sort tables and show long ones whole;
//! nothing is fetched from the network. Light or dark follows the reader's
//! system.
use crate::content::{Cell, Content, Table};
use crate::format::escape;

/// What the model selection table shows, above it.
pub const SELECTION_NOTE: &str = "Per starting checkpoint and task, the best eval/score (the task's GLUE metrics averaged, out of 100) over the configurations tried; the GLUE score averages the tasks. Difference = measured − published.";

/// Rows shown before "show all" in long tables.
const SHOWN: usize = 50;

pub fn render(content: &Content) -> String {
    let mut body = String::new();
    body.push_str(&format!("<h1>{}</h1>\n", escape(&content.title)));
    for line in &content.summary {
        body.push_str(&format!("<p class=\"summary\">{}</p>\n", escape(line)));
    }
    let mut nav = vec![("configurations", "Configurations")];
    if !content.failed.rows.is_empty() {
        nav.push(("failed", "Failed trials"));
    }
    if content.selection.is_some() {
        nav.push(("selection", "Model selection"));
    }
    if content.baselines.is_some() {
        nav.push(("baselines", "Baselines"));
    }
    nav.extend(content.sections.iter().map(|s| (s.id, s.heading)));
    nav.push(("provenance", "Provenance"));
    body.push_str(&format!("<nav>{}</nav>\n", nav.iter().map(|(id, h)| format!("<a href=\"#{id}\">{h}</a>")).collect::<Vec<_>>().join(" · ")));

    body.push_str("<h2 id=\"configurations\">Configurations</h2>\n");
    body.push_str("<p class=\"note\">Mean ± sample standard deviation over the seeds that completed (n). Click a column to sort.</p>\n");
    body.push_str(&table("configuration-table", &content.table));
    if !content.failed.rows.is_empty() {
        body.push_str("<h2 id=\"failed\">Failed trials</h2>\n");
        body.push_str(&table("failed-table", &content.failed));
    }
    if let Some(selection) = &content.selection {
        body.push_str("<h2 id=\"selection\">Model selection</h2>\n");
        body.push_str(&format!("<p class=\"note\">{}</p>\n", escape(SELECTION_NOTE)));
        body.push_str(&table("selection-table", selection));
    }
    if let Some(baselines) = &content.baselines {
        body.push_str("<h2 id=\"baselines\">Baselines</h2>\n");
        body.push_str("<p class=\"note\">Published numbers beside the configurations they match; difference = measured − published.</p>\n");
        body.push_str(&table("baseline-table", baselines));
    }
    for section in &content.sections {
        body.push_str(&format!("<h2 id=\"{}\">{}</h2>\n", section.id, section.heading));
        for note in &section.notes {
            body.push_str(&format!("<p class=\"note\">{}</p>\n", escape(note)));
        }
        if !section.charts.is_empty() {
            let small = if section.id == "marginal" { " small" } else { "" };
            body.push_str(&format!("<div class=\"charts{small}\">\n"));
            for chart in &section.charts {
                body.push_str(&format!("<figure id=\"chart-{}\">{}</figure>\n", chart.name, chart.svg));
            }
            body.push_str("</div>\n");
        }
    }
    body.push_str("<h2 id=\"provenance\">Provenance</h2>\n");
    body.push_str(&table("provenance-table", &content.provenance));
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{} — bertlab report</title>\n<style>{STYLE}</style></head>\n<body>\n{body}<script>{SCRIPT}</script>\n</body></html>\n",
        escape(&content.title)
    )
}

fn table(id: &str, table: &Table) -> String {
    let header: String = table.header.iter().map(|h| format!("<th>{}</th>", escape(h))).collect();
    let mut rows = String::new();
    for (i, (row, label)) in table.rows.iter().zip(&table.labels).enumerate() {
        let extra = if i >= SHOWN { " class=\"extra\"" } else { "" };
        let config = if label.is_empty() { String::new() } else { format!(" data-config=\"{}\"", escape(label)) };
        rows.push_str(&format!("<tr{extra}{config}>{}</tr>\n", row.iter().map(cell).collect::<String>()));
    }
    let more = if table.rows.len() > SHOWN {
        format!("<button type=\"button\" class=\"show-all\" data-table=\"{id}\">Show all {} rows</button>\n", table.rows.len())
    } else {
        String::new()
    };
    format!("<div class=\"scroll\"><table id=\"{id}\" class=\"sortable\"><thead><tr>{header}</tr></thead>\n<tbody>\n{rows}</tbody></table></div>\n{more}")
}

fn cell(cell: &Cell) -> String {
    let data: String = cell.data.iter().map(|(k, v)| format!(" data-{k}=\"{}\"", escape(v))).collect();
    format!("<td{data}>{}</td>", escape(&cell.text))
}

const STYLE: &str = r#"
:root { color-scheme: light dark; font-family: system-ui, sans-serif; line-height: 1.45; }
body { margin: 1.5rem auto; padding: 0 1.5rem; max-width: 1400px; background: Canvas; color: CanvasText; }
h1 { margin-bottom: 0.3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #8884; padding-bottom: 0.2rem; }
nav { margin: 0.8rem 0; }
a { color: #4e79a7; }
.summary { font-size: 1.05rem; margin: 0.3rem 0; }
.note { color: #888; font-size: 0.9rem; margin: 0.3rem 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 0.92rem; }
th, td { padding: 0.3rem 0.7rem; border-bottom: 1px solid #8883; text-align: right; white-space: nowrap; }
#failed-table td:last-child { white-space: normal; text-align: left; }
th { position: sticky; top: 0; background: Canvas; cursor: pointer; user-select: none; }
th.asc::after { content: " ▲"; } th.desc::after { content: " ▼"; }
#configuration-table tbody tr:first-child { font-weight: 600; }
tr.extra { display: none; } table.all tr.extra { display: table-row; }
button.show-all { margin: 0.6rem 0; padding: 0.3rem 0.8rem; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 1rem; }
.charts.small { grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); }
figure { margin: 0; }
svg.chart { width: 100%; height: auto; }
"#;

/// Sorting by a column (numbers by `data-sort`, text otherwise) and
/// "show all" for long tables.
const SCRIPT: &str = r#"
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var ascending = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(ascending ? "asc" : "desc");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var key = function (row) {
        var cell = row.cells[column];
        if (!cell) return "";
        var n = parseFloat(cell.getAttribute("data-sort"));
        return isNaN(n) ? cell.textContent : n;
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var order = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
        return ascending ? order : -order;
      });
      rows.forEach(function (row, i) { row.classList.toggle("extra", i >= 50); body.appendChild(row); });
    });
  });
});
document.querySelectorAll("button.show-all").forEach(function (button) {
  button.addEventListener("click", function () {
    document.getElementById(button.getAttribute("data-table")).classList.add("all");
    button.remove();
  });
});
"#;
