//! Where early stopping and a search spent the sweep's steps: the steps
//! trained against every trial to its end ("31% of the steps of the full
//! grid"), the rung chart (each trial's metric at the rungs it reached,
//! joined where it was promoted), and a search's best so far against its
//! trials. Read from the run folders' decision logs
//! ([`runfolder::decisions`]); no section for a sweep that had neither.
use crate::charts::{self, Axis, Line, Lines, Marks};
use crate::configs::COMPLETED;
use crate::content::{Chart, Section};
use crate::format;
use crate::tables::Runs;
use anyhow::Result;
use polars::prelude::DataFrame;
use runfolder::decisions::{self, EarlyStopEntry, Suggestion};
use runfolder::names::column;
use std::collections::{BTreeMap, HashMap};

pub fn section(runs: &Runs, metric: &str, maximize: bool) -> Result<Option<Section>> {
    let mut reached: Vec<(String, i64, Option<f64>)> = Vec::new();
    let mut suggestions: Vec<Suggestion> = Vec::new();
    for dir in &runs.dirs {
        for entry in decisions::early_stop_log(dir).read::<EarlyStopEntry>()? {
            if let EarlyStopEntry::Reached { trial, rung, value } = entry {
                reached.push((trial, rung, value));
            }
        }
        suggestions.extend(decisions::search_log(dir).read::<Suggestion>()?);
    }
    if reached.is_empty() && suggestions.is_empty() {
        return Ok(None);
    }
    let finals = final_values(&runs.trials, metric)?;
    let mut section = Section { id: "spending", heading: "Search and early stopping", notes: Vec::new(), charts: Vec::new() };
    let (trained, full) = runs.steps.values().fold((0, 0), |(t, f), &(step, steps)| (t + step, f + steps));
    if full > 0 {
        let whole = if suggestions.is_empty() { "the full grid" } else { "its suggestions" };
        section.notes.push(format!(
            "The sweep trained {} steps: {:.0}% of the steps of {whole} ({} steps, every trial to its end).",
            format::thousands(trained),
            100.0 * trained as f64 / full as f64,
            format::thousands(full)
        ));
    }
    if !reached.is_empty() {
        section.charts.push(rung_chart(&reached, &finals, runs, metric)?);
        section.notes.push(format!(
            "Each line is a trial: its {metric} at every rung it reached, and at its end for those that got there; a trial goes on to the next rung when early stopping promotes it."
        ));
    }
    if !suggestions.is_empty() {
        let (chart, note) = best_so_far(&suggestions, &finals, metric, maximize)?;
        section.charts.push(chart);
        section.notes.push(note);
    }
    Ok(Some(section))
}

/// Each completed trial's final value of `metric`.
fn final_values(trials: &DataFrame, metric: &str) -> Result<HashMap<String, f64>> {
    let (Ok(ids), Ok(status), Ok(values)) = (trials.column(column::TRIAL_ID), trials.column(column::STATUS), trials.column(metric)) else {
        return Ok(HashMap::new());
    };
    let values = values.cast(&polars::prelude::DataType::Float64)?;
    let (ids, status, values) = (ids.str()?, status.str()?, values.f64()?);
    Ok(ids
        .iter()
        .zip(status.iter())
        .zip(values.iter())
        .filter_map(|((id, s), v)| (s == Some(COMPLETED)).then_some((id?.to_string(), v?)))
        .filter(|(_, v)| v.is_finite())
        .collect())
}

fn rung_chart(reached: &[(String, i64, Option<f64>)], finals: &HashMap<String, f64>, runs: &Runs, metric: &str) -> Result<Chart> {
    let mut by_trial: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for (trial, rung, value) in reached {
        if let Some(v) = value {
            by_trial.entry(trial).or_default().push((*rung as f64, *v));
        }
    }
    let (ended, stopped) = (charts::color(0, 2), charts::color(1, 2));
    let mut lines = Vec::new();
    for (trial, mut points) in by_trial {
        let end = finals.get(trial).zip(runs.steps.get(trial)).map(|(v, &(_, steps))| (steps as f64, *v));
        points.extend(end);
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        lines.push(Line { color: if end.is_some() { ended } else { stopped }, points });
    }
    let steps = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let (low, high) = (steps().fold(f64::INFINITY, f64::min), steps().fold(0.0, f64::max));
    // ASHA's rungs grow geometrically: on a log axis they are evenly spaced.
    let log = high >= 8.0 * low;
    let title = format!("{metric} at each rung");
    let x = Axis { label: if log { "step (log scale)".into() } else { "step".into() }, log };
    let legend = vec![("reached its end".to_string(), ended), ("stopped early".to_string(), stopped)];
    let spec = Lines { title: title.clone(), x, y: metric.to_string(), lines, legend, marks: Marks::Both };
    Ok(Chart { name: format!("{}-by-rung", metric.replace('/', "-")), title, svg: charts::lines(&spec)? })
}

/// The best value after each trial, in the order the search suggested
/// them (a suggestion's seeds one after another), counting the trials that
/// reached their end.
fn best_so_far(suggestions: &[Suggestion], finals: &HashMap<String, f64>, metric: &str, maximize: bool) -> Result<(Chart, String)> {
    let better = |a: f64, b: f64| if maximize { a > b } else { a < b };
    let mut best: Option<(f64, usize)> = None;
    let mut points = Vec::new();
    let trials: Vec<&String> = suggestions.iter().flat_map(|s| &s.trials).collect();
    for (i, trial) in trials.iter().enumerate() {
        if let Some(&value) = finals.get(*trial) {
            if best.is_none_or(|(b, _)| better(value, b)) {
                best = Some((value, i + 1));
            }
        }
        if let Some((b, _)) = best {
            points.push(((i + 1) as f64, b));
        }
    }
    let note = match best {
        Some((value, at)) => format!(
            "After {} trials ({} suggestions) the best {metric} is {} (trial {at} in the order suggested); the curve counts the trials that reached their end.",
            trials.len(),
            suggestions.len(),
            format::result(metric, value)
        ),
        None => format!("None of the {} suggestions' trials has reached its end yet.", suggestions.len()),
    };
    let title = format!("best {metric} so far");
    let spec = Lines {
        title: title.clone(),
        x: Axis { label: "trials, in the order suggested".into(), log: false },
        y: metric.to_string(),
        lines: vec![Line { color: charts::color(0, 1), points }],
        legend: Vec::new(),
        marks: Marks::Both,
    };
    Ok((Chart { name: format!("best-{}-so-far", metric.replace('/', "-")), title, svg: charts::lines(&spec)? }, note))
}
