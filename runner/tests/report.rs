//! Reports on a real small sweep: one row per configuration whose mean and
//! standard deviation over seeds agree with polars on the tables, inline
//! charts, baselines, no network references, the same table in Markdown,
//! merged reports of several run folders, and the page rendered by a real
//! headless Chromium.
mod common;

use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One sweep shared by the tests here: 2 widths × 2 depths × 2 seeds, with
/// a baseline that matches the narrow configurations and one that matches
/// nothing.
fn sweep() -> &'static Path {
    static SWEEP: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &SWEEP
        .get_or_init(|| {
            // In the target folder: a static is never dropped, so it is not
            // removed after the tests.
            let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            let out = dir.path().join("out");
            let extra = r#"
[sweep.grid]
"model.hidden" = [32, 48]
"model.layers" = [1, 2]

[[baseline]]
name = "Narrow reference"
source = "made up for the test"
match = { "model.hidden" = 32 }
metrics = { "eval/loss" = 7.0 }

[[baseline]]
name = "Nothing like it"
source = "also made up"
match = { "model.hidden" = 999 }
metrics = { "eval/loss" = 1.0 }
"#;
            let text = experiment("reported", "steps = 20\neval_every = 10", extra).replace("name = \"reported\"", "name = \"reported\"\nseeds = [0, 1]");
            let file = write(dir.path(), "reported.toml", &text);
            let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out));
            assert_eq!(r.code, 0, "{}", r.stderr);
            (dir, out)
        })
        .1
        .as_path()
}

fn html_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The rows of the table with `id` in the page: `data-config` and the
/// cells' text, with each cell's `data-*` attributes.
struct HtmlRow {
    config: String,
    cells: Vec<(String, HashMap<String, String>)>,
}

fn html_rows(html: &str, id: &str) -> Vec<HtmlRow> {
    let start = html.find(&format!("<table id=\"{id}\"")).unwrap_or_else(|| panic!("no table {id}"));
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    let body = &table[table.find("<tbody>").unwrap()..];
    let attribute = |tag: &str, name: &str| tag.split(&format!("{name}=\"")).nth(1).map(|r| r[..r.find('"').unwrap()].to_string());
    body.split("<tr")
        .skip(1)
        .map(|row| {
            let tag = &row[..row.find('>').unwrap()];
            let cells = row
                .split("<td")
                .skip(1)
                .map(|cell| {
                    let open = &cell[..cell.find('>').unwrap()];
                    let text = &cell[cell.find('>').unwrap() + 1..cell.find("</td>").unwrap()];
                    let data = open.split(" data-").skip(1).filter_map(|a| a.split_once("=\"").map(|(k, v)| (k.to_string(), v.trim_end_matches('"').to_string()))).collect();
                    (unescape(text), data)
                })
                .collect();
            HtmlRow { config: attribute(tag, "data-config").map(|c| unescape(&c)).unwrap_or_default(), cells }
        })
        .collect()
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
}

/// `eval/loss` mean, sample std and count per (hidden, layers) of the
/// completed trials, computed here from the table as the test's own oracle.
fn expected(trials_path: &Path) -> HashMap<(i64, i64), (f64, f64, u32)> {
    let frame = read_table(trials_path);
    let status = strings(&frame, "status");
    let (hidden, layers, loss) = (floats(&frame, "model.hidden"), floats(&frame, "model.layers"), floats(&frame, "eval/loss"));
    let mut groups: HashMap<(i64, i64), Vec<f64>> = HashMap::new();
    for row in (0..frame.height()).filter(|&r| status[r] == "completed") {
        groups.entry((hidden[row] as i64, layers[row] as i64)).or_default().push(loss[row]);
    }
    groups
        .into_iter()
        .map(|(config, values)| {
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            (config, (mean, std, values.len() as u32))
        })
        .collect()
}

/// `layers=1, hidden=32` → (32, 1).
fn parse_label(label: &str) -> (i64, i64) {
    let value = |name: &str| label.split(", ").find_map(|p| p.strip_prefix(&format!("{name}="))).unwrap().parse().unwrap();
    (value("hidden"), value("layers"))
}

#[test]
fn the_report_has_one_row_per_configuration_with_the_mean_and_std_of_its_trials() {
    let out = sweep();
    let html = html_of(&out.join("report.html"));
    let rows = html_rows(&html, "configuration-table");
    let expected = expected(&out.join("trials.parquet"));
    assert_eq!(rows.len(), 4, "2 widths × 2 depths");
    assert_eq!(expected.len(), 4);
    for row in &rows {
        let (_, data) = row.cells.iter().find(|(_, d)| d.get("key").map(String::as_str) == Some("eval/loss")).expect("an eval/loss cell");
        let (mean, std, n) = expected[&parse_label(&row.config)];
        let got = |k: &str| data[k].parse::<f64>().unwrap();
        assert!((got("mean") - mean).abs() < 1e-12, "{}: {} vs {mean}", row.config, got("mean"));
        assert!((got("std") - std).abs() < 1e-12, "{}: {} vs {std}", row.config, got("std"));
        assert_eq!(got("n") as u32, n);
        assert_eq!(n, 2, "both seeds completed");
    }
    // Best first: the ranking metric's means never decrease down the table.
    let means: Vec<f64> = rows.iter().map(|r| r.cells.iter().find_map(|(_, d)| d.get("mean").filter(|_| d.get("key").map(String::as_str) == Some("eval/loss"))).unwrap().parse().unwrap()).collect();
    assert!(means.windows(2).all(|w| w[0] <= w[1]), "{means:?}");

    // The summary names the best configuration and the runner-up.
    assert!(html.contains(&format!("Best by eval/loss (lower is better): {}", rows[0].config)), "summary missing");
    assert!(html.contains("ahead of the runner-up"));
}

#[test]
fn the_report_has_inline_charts_baselines_and_no_network_reference() {
    let out = sweep();
    let html = html_of(&out.join("report.html"));
    let charts = html.matches("<svg ").count();
    assert!(charts >= 3, "{charts} inline SVG charts");
    for id in ["chart-eval-loss-by-step", "chart-train-loss-by-step", "chart-heatmap", "chart-marginal-model.hidden", "chart-scaling-parameters"] {
        assert!(html.contains(&format!("id=\"{id}\"")), "no {id}");
    }
    for forbidden in ["src=\"http", "href=\"http", "url(", "<link", "@import", "<script src", "<img"] {
        assert!(!html.contains(forbidden), "the page references the network: {forbidden}");
    }

    let baselines = html_rows(&html, "baseline-table");
    let narrow: Vec<&HtmlRow> = baselines.iter().filter(|r| r.cells[0].0 == "Narrow reference").collect();
    assert_eq!(narrow.len(), 2, "the two hidden=32 configurations");
    let table = html_rows(&html, "configuration-table");
    for row in narrow {
        assert!(row.config.contains("hidden=32"), "{}", row.config);
        let measured: f64 = row.cells[5].1["sort"].parse().unwrap();
        let difference: f64 = row.cells[6].1["sort"].parse().unwrap();
        assert!((difference - (measured - 7.0)).abs() < 1e-12);
        let same = table.iter().find(|r| r.config == row.config).unwrap();
        let mean: f64 = same.cells.iter().find_map(|(_, d)| d.get("mean").filter(|_| d.get("key").map(String::as_str) == Some("eval/loss"))).unwrap().parse().unwrap();
        assert_eq!(measured, mean);
    }
    assert!(baselines.iter().any(|r| r.cells[0].0 == "Nothing like it" && r.cells[2].0 == "no matching configuration"));

    let info = std::fs::read_to_string(out.join("run.toml")).unwrap();
    assert!(info.contains("metric = \"eval/loss\"") && info.contains("libtorch = \"2.11.0") && info.contains("devices = [\"cpu\"]"), "{info}");
    assert!(html.contains("id=\"provenance\"") && html.contains("2.11.0"));
}

#[test]
fn the_markdown_report_has_the_same_configuration_table_and_its_charts_beside_it() {
    let out = sweep();
    let html_table = html_rows(&html_of(&out.join("report.html")), "configuration-table");
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    let rows = markdown_rows(&markdown, "Configurations");
    assert_eq!(rows.len(), html_table.len());
    for (md, html) in rows.iter().zip(&html_table) {
        let cells: Vec<String> = html.cells.iter().map(|(t, _)| t.clone()).collect();
        assert_eq!(md, &cells);
    }
    let charts: Vec<&str> = markdown.lines().filter_map(|l| l.strip_prefix("![")).map(|l| &l[l.find("](").unwrap() + 2..l.len() - 1]).collect();
    assert!(charts.len() >= 3, "{markdown}");
    for chart in charts {
        let svg = std::fs::read_to_string(out.join(chart)).unwrap_or_else(|e| panic!("{chart}: {e}"));
        assert!(svg.starts_with("<svg"), "{chart}");
    }
    assert!(markdown.contains("## Baselines") && markdown.contains("| Narrow reference |"));
}

#[test]
fn report_merges_run_folders_given_by_glob_into_one_comparison() {
    let dir = tempfile::tempdir().unwrap();
    for hidden in [32, 48] {
        let text = experiment(&format!("part{hidden}"), "steps = 6\neval_every = 0", "").replace("hidden = 32", &format!("hidden = {hidden}"));
        let file = write(dir.path(), &format!("part{hidden}.toml"), &text);
        let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(dir.path().join(format!("runs/part{hidden}"))));
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let target = dir.path().join("compare/both.html");
    let r = run(bertlab().arg("report").arg(dir.path().join("runs/*")).arg("--out").arg(&target));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = html_rows(&html_of(&target), "configuration-table");
    // Nothing was swept inside either run; across them the experiment and
    // the width differ.
    let labels: Vec<&str> = rows.iter().map(|r| r.config.as_str()).collect();
    assert_eq!(labels.len(), 2, "{labels:?}");
    assert!(labels.iter().any(|l| l.contains("experiment=part32") && l.contains("hidden=32")), "{labels:?}");
    assert!(dir.path().join("compare/both.md").is_file() && dir.path().join("compare/both-charts").is_dir());
    assert!(html_of(&target).contains("part32 + part48"));

    let missing = run(bertlab().arg("report").arg(dir.path().join("nothing-here")));
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(missing.stderr.contains("no such run folder"), "{}", missing.stderr);
}

/// Renders `page` with headless Chromium at 1280 px wide into `png`
/// (scripts/screenshot.sh; `make test` installs Debian's chromium) and
/// returns the console messages the page produced.
fn render(page: &Path, png: &Path) -> Vec<String> {
    let browser = std::env::var("BERTLAB_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&browser).is_file(), "{browser} is missing: `make test` installs Debian's chromium (scripts/setup-browser.sh)");
    let output = std::process::Command::new("bash")
        .arg(workspace_root().join("scripts/screenshot.sh"))
        .arg(page)
        .arg(png)
        .arg("2400")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chromium failed: {stderr}");
    stderr.lines().filter(|l| l.contains(":INFO:CONSOLE")).map(str::to_string).collect()
}

/// Share of pixels that differ from the top-left one, and distinct colours.
/// Decoded by Pillow in the project's venv (mlflow brings it): a PNG crate
/// here would build flate2's SIMD checksum with other features than the
/// binary does, and `make test` would then rebuild polars and tch after
/// `make run` (issue 22).
fn ink(png: &Path) -> (f64, usize) {
    const COUNT: &str = "import sys; from PIL import Image\n\
        im = Image.open(sys.argv[1]).convert('RGBA'); assert im.width == 1280, im.width\n\
        counts = dict((c, n) for n, c in im.getcolors(im.width * im.height))\n\
        print(1 - counts[im.getpixel((0, 0))] / (im.width * im.height), len(counts))";
    let output = std::process::Command::new(venv_python()).args(["-c", COUNT]).arg(png).output().unwrap();
    assert!(output.status.success(), "decoding {}: {}", png.display(), String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (share, colours) = stdout.trim().split_once(' ').unwrap();
    (share.parse().unwrap(), colours.parse().unwrap())
}

#[test]
fn headless_chromium_renders_the_report_without_console_errors() {
    let out = sweep();
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("report.png");
    let console = render(&out.join("report.html"), &png);
    assert!(console.is_empty(), "console messages: {console:?}");
    let (share, colours) = ink(&png);
    assert!(share > 0.05, "the page looks blank: {share:.3} of pixels drawn");
    assert!(colours > 50, "only {colours} colours: no charts drawn?");

    // The checks can fail: a page with a script error is caught.
    let broken = write(dir.path(), "broken.html", "<!doctype html><p>x</p><script>missingFunction();</script>");
    let console = render(&broken, &dir.path().join("broken.png"));
    assert!(console.iter().any(|l| l.contains("missingFunction")), "{console:?}");
    let blank = write(dir.path(), "blank.html", "<!doctype html><body></body>");
    render(&blank, &dir.path().join("blank.png"));
    assert!(ink(&dir.path().join("blank.png")).0 < 0.01);
}
