//! What a report says, independent of its format: the summary, the
//! configuration table, failed trials, charts, baselines and provenance.
//! [`crate::html`] and [`crate::markdown`] lay the same content out.
use runfolder::names::column;
use crate::charts::{self, Axis, Categories, Heatmap, Line, Lines, Marks};
use crate::configs::{Configuration, Configurations, Level};
use crate::curves::{self, Curve};
use crate::format;
use crate::run_info::{Baseline, RunInfo};
use crate::tables::Runs;
use anyhow::Result;
use std::collections::BTreeMap;

/// One table cell: its text, and machine-readable values for sorting and
/// for tests (`data-*` attributes in HTML).
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub text: String,
    pub data: Vec<(&'static str, String)>,
}

impl Cell {
    pub fn text(text: impl Into<String>) -> Cell {
        Cell { text: text.into(), data: Vec::new() }
    }

    pub(crate) fn number(text: impl Into<String>, sort: f64) -> Cell {
        Cell { text: text.into(), data: vec![("sort", sort.to_string())] }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    /// Per row: the configuration label, for `data-config`.
    pub labels: Vec<String>,
}

pub struct Chart {
    /// File name stem beside `report.md`.
    pub name: String,
    pub title: String,
    pub svg: String,
}

pub struct Section {
    pub id: &'static str,
    pub heading: &'static str,
    /// Sentences above the charts (what to read from them, or why a chart
    /// is missing).
    pub notes: Vec<String>,
    pub charts: Vec<Chart>,
}

pub struct Content {
    pub title: String,
    pub summary: Vec<String>,
    pub configurations: Configurations,
    pub table: Table,
    pub failed: Table,
    pub sections: Vec<Section>,
    pub baselines: Option<Table>,
    /// Fine-tuning: the best score per checkpoint and task, and the GLUE score.
    pub selection: Option<Table>,
    pub provenance: Table,
}

/// Configurations beyond this many are drawn with curves of
/// [`POINTS_WHEN_MANY`] points instead of [`POINTS`].
const MANY: usize = 30;
const POINTS: usize = 150;
const POINTS_WHEN_MANY: usize = 40;

pub fn build(runs: &Runs) -> Result<Content> {
    let first = runs.infos.iter().flatten().next();
    let metric = first.map(|i| i.experiment.metric.clone()).unwrap_or_else(|| "eval/loss".into());
    let maximize = first.is_some_and(RunInfo::maximize);
    let configs = Configurations::group(&runs.trials, &metric, maximize)?;

    let mut names: Vec<String> = runs.infos.iter().flatten().map(|i| i.experiment.name.clone()).collect();
    names.dedup();
    let title = if names.is_empty() { runs.dirs[0].display().to_string() } else { names.join(" + ") };

    let mut wanted = vec!["eval/loss", "train/loss"];
    if !wanted.contains(&metric.as_str()) {
        wanted.push(&metric);
    }
    let curves = curves::read(runs, &configs, &wanted, if configs.rows.len() > MANY { POINTS_WHEN_MANY } else { POINTS })?;
    let palette = Palette::choose(&configs);

    let mut sections = vec![curve_section(&configs, &curves, &palette, &metric)?];
    sections.push(heatmap_section(&configs, first.and_then(|i| i.report.heatmap.clone()))?);
    sections.push(marginal_section(&configs)?);
    sections.push(scaling_section(&configs, &palette)?);
    sections.extend(crate::spending::section(runs, &metric, maximize)?);

    let baselines: Vec<Baseline> = runs.infos.iter().flatten().flat_map(|i| i.baseline.clone()).collect();
    let selection = crate::selection::table(&configs, &baselines, runs);
    let compared = selection.as_ref().map(|s| s.compared.as_slice()).unwrap_or_default();
    let baselines = Some(baseline_table(&configs, &baselines, runs, compared)).filter(|t| !t.rows.is_empty());
    Ok(Content {
        title,
        summary: summary(&configs),
        table: configuration_table(&configs),
        failed: failed_table(&configs),
        sections,
        baselines,
        selection: selection.map(|s| s.table),
        provenance: provenance_table(runs),
        configurations: configs,
    })
}

fn goal(maximize: bool) -> &'static str {
    if maximize {
        "higher is better"
    } else {
        "lower is better"
    }
}

fn summary(configs: &Configurations) -> Vec<String> {
    let metric = &configs.metric;
    let describe = |c: &Configuration| {
        let s = c.stats[metric];
        format!("{} ({}, n = {})", c.label, format::mean_std(metric, s.mean, s.std), c.completed)
    };
    let scored: Vec<&Configuration> = configs.rows.iter().filter(|c| c.score(metric).is_some()).collect();
    let mut lines = vec![match scored.as_slice() {
        [] => format!("No configuration has `{metric}` yet."),
        [best] => format!("Best by {metric} ({}): {}.", goal(configs.maximize), describe(best)),
        [best, second, ..] => {
            let (a, b) = (best.stats[metric], second.stats[metric]);
            let margin = (a.mean - b.mean).abs();
            let spread = match (a.std, b.std) {
                (Some(x), Some(y)) if x + y > 0.0 => {
                    let pooled = ((x * x + y * y) / 2.0).sqrt();
                    format!(" The margin is {:.1}× the standard deviation across seeds.", margin / pooled)
                }
                _ => " One seed each: run more seeds to see whether the margin holds.".to_string(),
            };
            format!(
                "Best by {metric} ({}): {}, {} ahead of the runner-up {}.{spread}",
                goal(configs.maximize),
                describe(best),
                format::result(metric, margin),
                describe(second)
            )
        }
    }];
    let count = |f: fn(&Configuration) -> u32| configs.rows.iter().map(f).sum::<u32>();
    let (completed, failed, pruned, unfinished) = (count(|c| c.completed), count(|c| c.failed), count(|c| c.pruned), count(|c| c.unfinished));
    let mut tally = format!("{} configurations; {completed} of {} trials completed", configs.rows.len(), completed + failed + pruned + unfinished);
    if failed > 0 {
        tally.push_str(&format!(", {failed} failed"));
    }
    if pruned > 0 {
        tally.push_str(&format!(", {pruned} pruned by early stopping"));
    }
    if unfinished > 0 {
        tally.push_str(&format!(", {unfinished} unfinished (interrupted or still running)"));
    }
    lines.push(tally + ".");
    lines
}

fn configuration_table(configs: &Configurations) -> Table {
    let mut header = vec!["#".to_string()];
    header.extend(configs.short_names());
    header.push("n".into());
    header.extend(configs.results.iter().cloned());
    header.extend(["params".to_string(), "FLOPs".to_string(), "status".to_string()]);
    let mut table = Table { header, ..Default::default() };
    for (rank, c) in configs.rows.iter().enumerate() {
        let mut row = vec![Cell::number((rank + 1).to_string(), (rank + 1) as f64)];
        row.extend(c.levels.iter().map(|l| match l.as_f64() {
            Some(v) => Cell::number(l.to_string(), v),
            None => Cell::text(l.to_string()),
        }));
        row.push(Cell::number(c.completed.to_string(), c.completed as f64));
        for r in &configs.results {
            row.push(match c.stats.get(r) {
                Some(s) => {
                    let mut cell = Cell::number(format::mean_std(r, s.mean, s.std), s.mean);
                    cell.data.push(("key", r.clone()));
                    cell.data.push(("mean", s.mean.to_string()));
                    cell.data.push(("std", s.std.map(|v| v.to_string()).unwrap_or_default()));
                    cell.data.push(("n", c.completed.to_string()));
                    cell
                }
                None => Cell::text(""),
            });
        }
        let optional = |v: Option<f64>| v.map(|v| Cell::number(format::si(v), v)).unwrap_or_default();
        row.push(optional(c.params));
        row.push(optional(c.flops));
        row.push(Cell::text(status(c)));
        table.rows.push(row);
        table.labels.push(c.label.clone());
    }
    table
}

fn status(c: &Configuration) -> String {
    let mut parts = Vec::new();
    for (n, word) in [(c.completed, "completed"), (c.failed, "failed"), (c.pruned, "pruned"), (c.unfinished, "unfinished")] {
        if n > 0 {
            parts.push(format!("{n} {word}"));
        }
    }
    parts.join(", ")
}

fn failed_table(configs: &Configurations) -> Table {
    let mut table = Table { header: ["configuration", "trial", "seed", "error"].map(String::from).to_vec(), ..Default::default() };
    for f in &configs.failed {
        let label = configs.rows.get(f.config).map(|c| c.label.clone()).unwrap_or_default();
        table.rows.push(vec![Cell::text(label.clone()), Cell::text(&f.trial_id), Cell::text(f.seed.to_string()), Cell::text(&f.error)]);
        table.labels.push(label);
    }
    table
}

/// How curves and points are coloured: by the swept key with the fewest
/// levels (so the legend stays short), one colour per level.
struct Palette {
    key: Option<usize>,
    levels: Vec<Level>,
    short: String,
}

impl Palette {
    fn choose(configs: &Configurations) -> Palette {
        let key = (0..configs.keys.len()).min_by_key(|&k| configs.levels(k).len());
        let short = key.map(|k| configs.short_names()[k].clone()).unwrap_or_default();
        Palette { levels: key.map(|k| configs.levels(k)).unwrap_or_default(), key, short }
    }

    fn color(&self, c: &Configuration) -> plotters::style::RGBColor {
        let i = self.key.and_then(|k| self.levels.iter().position(|l| *l == c.levels[k])).unwrap_or(0);
        charts::color(i, self.levels.len().max(1))
    }

    fn legend(&self) -> Vec<(String, plotters::style::RGBColor)> {
        let n = self.levels.len();
        if n > 12 {
            // A ramp: its ends say what it means.
            return vec![(format!("{}={}", self.short, self.levels[0]), charts::color(0, n)), (format!("{}={}", self.short, self.levels[n - 1]), charts::color(n - 1, n))];
        }
        self.levels.iter().enumerate().map(|(i, l)| (format!("{}={l}", self.short), charts::color(i, n))).collect()
    }
}

fn curve_section(configs: &Configurations, curves: &BTreeMap<String, Vec<Curve>>, palette: &Palette, metric: &str) -> Result<Section> {
    let mut section = Section { id: "curves", heading: "Learning curves", notes: Vec::new(), charts: Vec::new() };
    if configs.rows.len() > MANY {
        section.notes.push(format!("{} configurations: each curve is thinned to {POINTS_WHEN_MANY} points (bucket means).", configs.rows.len()));
    }
    let mut draw = |key: &str, x: &str, pick: fn(&curves::Point) -> Option<f64>, unit: &str| -> Result<()> {
        let Some(series) = curves.get(key) else { return Ok(()) };
        let lines: Vec<Line> = series
            .iter()
            .map(|curve| Line { color: palette.color(&configs.rows[curve.config]), points: curve.points.iter().filter_map(|p| pick(p).map(|x| (x, p.value))).collect() })
            .filter(|l| !l.points.is_empty())
            .collect();
        if lines.is_empty() {
            return Ok(());
        }
        let title = format!("{key} against {x}");
        let spec = Lines { title: title.clone(), x: Axis { label: unit.to_string(), log: false }, y: key.to_string(), lines, legend: palette.legend(), marks: Marks::Line };
        section.charts.push(Chart { name: format!("{}-by-{}", key.replace('/', "-"), x.replace(' ', "-")), title, svg: charts::lines(&spec)? });
        Ok(())
    };
    let step: fn(&curves::Point) -> Option<f64> = |p| Some(p.step);
    draw("eval/loss", "step", step, "step")?;
    draw("train/loss", "step", step, "step")?;
    if metric != "eval/loss" && metric != "train/loss" {
        draw(metric, "step", step, "step")?;
    }
    draw("eval/loss", "tokens", |p| p.tokens, "training tokens")?;
    draw("eval/loss", "wall time", |p| Some(p.wall_s), "wall time (s)")?;
    if section.charts.is_empty() {
        section.notes.push("No completed trial has recorded metrics yet.".into());
    }
    Ok(section)
}

/// The metric's configuration means, grouped by `key_of`.
fn averaged<K: PartialEq + Clone>(configs: &Configurations, key_of: impl Fn(&Configuration) -> K) -> Vec<(K, Vec<f64>)> {
    let mut groups: Vec<(K, Vec<f64>)> = Vec::new();
    for c in &configs.rows {
        let Some(score) = c.score(&configs.metric) else { continue };
        let key = key_of(c);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, scores)) => scores.push(score),
            None => groups.push((key, vec![score])),
        }
    }
    groups
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn heatmap_section(configs: &Configurations, chosen: Option<Vec<String>>) -> Result<Section> {
    let mut section = Section { id: "heatmap", heading: "Heatmap", notes: Vec::new(), charts: Vec::new() };
    let axes: Option<(usize, usize)> = match chosen {
        Some(keys) => {
            let found: Vec<Option<usize>> = keys.iter().map(|k| configs.keys.iter().position(|c| c == k)).collect();
            match found.as_slice() {
                [Some(y), Some(x)] => Some((*y, *x)),
                _ => {
                    section.notes.push(format!("[report] heatmap = {keys:?}: both keys must vary in this report (varying: {:?}).", configs.keys));
                    None
                }
            }
        }
        None => {
            let mut by_levels: Vec<usize> = (0..configs.keys.len()).collect();
            by_levels.sort_by_cached_key(|&k| std::cmp::Reverse(configs.levels(k).len()));
            match by_levels.as_slice() {
                [a, b, ..] => Some((*a.min(b), *a.max(b))),
                _ => {
                    section.notes.push("A heatmap needs two swept keys; this report has fewer.".into());
                    None
                }
            }
        }
    };
    let Some((y, x)) = axes else { return Ok(section) };
    let (ys, xs) = (configs.levels(y), configs.levels(x));
    let groups = averaged(configs, |c| (c.levels[y].clone(), c.levels[x].clone()));
    let cells = ys
        .iter()
        .map(|ly| xs.iter().map(|lx| groups.iter().find(|((a, b), _)| a == ly && b == lx).map(|(_, s)| mean(s))).collect())
        .collect();
    let names = configs.short_names();
    section.notes.push("Blue is best, red worst.".into());
    if configs.keys.len() > 2 {
        section.notes.push(format!("Each cell averages the configurations that share its {} and {}.", names[y], names[x]));
    }
    let title = format!("{} by {} and {}", configs.metric, names[y], names[x]);
    let spec = Heatmap {
        title: title.clone(),
        x: configs.keys[x].clone(),
        y: configs.keys[y].clone(),
        x_levels: xs.iter().map(Level::to_string).collect(),
        y_levels: ys.iter().map(Level::to_string).collect(),
        cells,
        maximize: configs.maximize,
    };
    section.charts.push(Chart { name: "heatmap".into(), title, svg: charts::heatmap(&spec)? });
    Ok(section)
}

fn marginal_section(configs: &Configurations) -> Result<Section> {
    let mut section = Section {
        id: "marginal",
        heading: "Marginal effects",
        notes: vec![format!("{} at each value of one swept key, averaged over the other keys; bars show the spread (standard deviation) of the averaged configurations, or across seeds where one configuration has the value.", configs.metric)],
        charts: Vec::new(),
    };
    let names = configs.short_names();
    for (k, key) in configs.keys.iter().enumerate() {
        let mut groups = averaged(configs, |c| c.levels[k].clone());
        groups.sort_by(|a, b| a.0.order(&b.0));
        let values = groups
            .iter()
            .map(|(level, scores)| {
                let m = mean(scores);
                let spread = if scores.len() > 1 {
                    (scores.iter().map(|s| (s - m).powi(2)).sum::<f64>() / (scores.len() - 1) as f64).sqrt()
                } else {
                    configs.rows.iter().find(|c| c.levels[k] == *level).and_then(|c| c.stats.get(&configs.metric)).and_then(|s| s.std).unwrap_or(0.0)
                };
                Some((m, spread))
            })
            .collect();
        let title = format!("{} by {}", configs.metric, names[k]);
        let spec = Categories { title: title.clone(), x: key.clone(), y: configs.metric.clone(), levels: groups.iter().map(|(l, _)| l.to_string()).collect(), values };
        section.charts.push(Chart { name: format!("marginal-{}", key.replace('/', "-")), title, svg: charts::categories(&spec)? });
    }
    if configs.keys.is_empty() {
        section.notes = vec!["Nothing was swept.".into()];
    }
    Ok(section)
}

fn scaling_section(configs: &Configurations, palette: &Palette) -> Result<Section> {
    let mut section = Section { id: "scaling", heading: "Scaling", notes: Vec::new(), charts: Vec::new() };
    let mut scatter = |what: &str, unit: &str, pick: fn(&Configuration) -> Option<f64>| -> Result<()> {
        let lines: Vec<Line> = configs
            .rows
            .iter()
            .filter_map(|c| Some(Line { color: palette.color(c), points: vec![(pick(c)?, c.score(&configs.metric)?)] }))
            .collect();
        if lines.is_empty() {
            return Ok(());
        }
        let title = format!("{} against {what}", configs.metric);
        let spec = Lines { title: title.clone(), x: Axis { label: format!("{unit} (log scale)"), log: true }, y: configs.metric.clone(), lines, legend: palette.legend(), marks: Marks::Points };
        section.charts.push(Chart { name: format!("scaling-{}", what.replace(' ', "-")), title, svg: charts::lines(&spec)? });
        Ok(())
    };
    scatter("parameters", "parameters", |c| c.params)?;
    scatter("training FLOPs", "training FLOPs", |c| c.flops)?;
    if section.charts.is_empty() {
        section.notes.push("No completed configuration records its parameter count or FLOPs.".into());
    }
    Ok(section)
}

/// A value of `key` for a configuration: swept or shared values from the
/// trials table, else the first trial's resolved `config.toml` (a
/// baseline may match on a key nobody swept).
pub(crate) fn value_of(configs: &Configurations, c: &Configuration, key: &str, runs: &Runs) -> Option<Level> {
    if let Some(level) = c.level(configs, key) {
        return Some(level.clone());
    }
    runs.settings(c.trial_ids.first()?).get(key).map(Level::from_toml)
}

/// `selected`: checkpoints whose published GLUE score the model selection
/// table shows, so it is left out here.
fn baseline_table(configs: &Configurations, baselines: &[Baseline], runs: &Runs, selected: &[String]) -> Table {
    let header = ["baseline", "source", "configuration", "metric", "published", "measured", "difference"].map(String::from).to_vec();
    let mut table = Table { header, ..Default::default() };
    for baseline in baselines {
        let matching: Vec<&Configuration> = configs
            .rows
            .iter()
            .filter(|c| baseline.matches.iter().all(|(k, v)| value_of(configs, c, k, runs).is_some_and(|l| l.equals_json(v))))
            .collect();
        let named = |c: Option<&Configuration>, metric: &str, published: f64| -> Vec<Cell> {
            let measured = c.and_then(|c| match metric {
                column::PARAMS => c.params.map(|p| (p, None)),
                column::FLOPS => c.flops.map(|f| (f, None)),
                _ => c.stats.get(metric).map(|s| (s.mean, s.std)),
            });
            vec![
                Cell::text(&baseline.name),
                Cell::text(&baseline.source),
                Cell::text(c.map(|c| c.label.clone()).unwrap_or_else(|| "no matching configuration".into())),
                Cell::text(metric),
                Cell::number(format::result(metric, published), published),
                match measured {
                    Some((m, s)) => Cell::number(format::mean_std(metric, m, s), m),
                    None => Cell::text(if c.is_some() { "not measured" } else { "" }),
                },
                match measured {
                    Some((m, _)) => Cell::number(format!("{}{}", if m >= published { "+" } else { "−" }, format::result(metric, (m - published).abs())), m - published),
                    None => Cell::text(""),
                },
            ]
        };
        let shown_there = |metric: &str| metric == crate::selection::GLUE_SCORE && selected.iter().any(|c| crate::selection::matches(baseline, c));
        for (metric, &published) in baseline.metrics.iter().filter(|(m, _)| !shown_there(m)) {
            if matching.is_empty() {
                table.rows.push(named(None, metric, published));
                table.labels.push(String::new());
            }
            for c in &matching {
                table.rows.push(named(Some(c), metric, published));
                table.labels.push(c.label.clone());
            }
        }
    }
    table
}

fn provenance_table(runs: &Runs) -> Table {
    let header = ["run folder", "experiment", "file", "bertlab", "git commit", "libtorch", "devices", "date"].map(String::from).to_vec();
    let mut table = Table { header, ..Default::default() };
    for (dir, info) in runs.dirs.iter().zip(&runs.infos) {
        let mut row = vec![Cell::text(dir.display().to_string())];
        match info {
            Some(i) => {
                let p = &i.provenance;
                row.extend([
                    Cell::text(&i.experiment.name),
                    Cell::text(&i.experiment.file),
                    Cell::text(&p.bertlab),
                    Cell::text(p.git_commit.clone().unwrap_or_else(|| "not in a git tree".into())),
                    Cell::text(&p.libtorch),
                    Cell::text(p.devices.join(", ")),
                    Cell::text(&p.date),
                ]);
            }
            None => row.extend((0..7).map(|i| Cell::text(if i == 0 { "(no run.toml: recorded before bertlab wrote one)" } else { "" }))),
        }
        table.rows.push(row);
        table.labels.push(String::new());
    }
    table
}
