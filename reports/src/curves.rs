//! Learning curves: for each configuration, a metric's mean over its
//! completed trials at every recorded step, with the training tokens and
//! wall time reached there, thinned for drawing.
use runfolder::names::column;
use crate::configs::{Configurations, COMPLETED};
use crate::tables::{Runs, RUN};
use anyhow::Result;
use polars::prelude::*;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub step: f64,
    /// Training tokens seen at this step (`None` for runs recorded before
    /// the trials table had `tokens`).
    pub tokens: Option<f64>,
    pub wall_s: f64,
    pub value: f64,
}

pub struct Curve {
    /// The configuration's position in [`Configurations::rows`].
    pub config: usize,
    pub points: Vec<Point>,
}

/// The curves of `keys` (`eval/loss`, `train/loss`), each at most
/// `max_points` long.
pub fn read(runs: &Runs, configs: &Configurations, keys: &[&str], max_points: usize) -> Result<BTreeMap<String, Vec<Curve>>> {
    // Completed trials by (trial id, run): their configuration and tokens.
    let trials = &runs.trials;
    let ids = trials.column(column::TRIAL_ID)?.str()?;
    let trial_runs = trials.column(RUN)?.u32()?;
    let status = trials.column(column::STATUS)?.str()?;
    let tokens = match trials.column(column::TOKENS) {
        Ok(c) => c.cast(&DataType::Float64)?,
        Err(_) => Column::full_null("tokens".into(), trials.height(), &DataType::Float64),
    };
    let tokens = tokens.f64()?;
    let mut completed: HashMap<(&str, u32), (usize, Option<f64>)> = HashMap::new();
    for row in 0..trials.height() {
        let (Some(id), Some(run)) = (ids.get(row), trial_runs.get(row)) else { continue };
        if let (Some(COMPLETED), Some(&config)) = (status.get(row), configs.of_trial.get(id)) {
            completed.insert((id, run), (config, tokens.get(row)));
        }
    }

    let metrics = &runs.metrics;
    let (trial, run) = (metrics.column(column::TRIAL_ID)?.str()?, metrics.column(RUN)?.u32()?);
    let (step, key) = (metrics.column(column::STEP)?.i64()?, metrics.column(column::KEY)?.str()?);
    let (value, wall) = (metrics.column(column::VALUE)?.f64()?, metrics.column(column::WALL_S)?.f64()?);
    // Every step trains on the same number of tokens, so a trial's tokens
    // at a step are its total times the step over its last step.
    let mut last_step: HashMap<(&str, u32), i64> = HashMap::new();
    for row in 0..metrics.height() {
        if let (Some(t), Some(r), Some(s)) = (trial.get(row), run.get(row), step.get(row)) {
            let last = last_step.entry((t, r)).or_insert(s);
            *last = (*last).max(s);
        }
    }
    // Per (configuration, key, step): the means of value, wall time and
    // tokens over the completed trials that recorded it.
    let mut sums: BTreeMap<(usize, &str, i64), [Mean; 3]> = BTreeMap::new();
    for row in 0..metrics.height() {
        let Some(k) = key.get(row).filter(|k| keys.contains(k)) else { continue };
        let (Some(t), Some(r), Some(s)) = (trial.get(row), run.get(row), step.get(row)) else { continue };
        let Some(&(config, total)) = completed.get(&(t, r)) else { continue };
        let tokens_at = total.map(|total| s as f64 * total / last_step[&(t, r)] as f64);
        let [v, w, n] = sums.entry((config, k, s)).or_default();
        v.add(value.get(row));
        w.add(wall.get(row));
        n.add(tokens_at);
    }

    let mut curves: BTreeMap<String, Vec<Curve>> = BTreeMap::new();
    for ((config, key, step), [value, wall, tokens]) in sums {
        let Some(value) = value.get() else { continue };
        let series = curves.entry(key.to_string()).or_default();
        if series.last().is_none_or(|curve| curve.config != config) {
            series.push(Curve { config, points: Vec::new() });
        }
        let point = Point { step: step as f64, tokens: tokens.get().filter(|t| t.is_finite()), wall_s: wall.get().unwrap_or(f64::NAN), value };
        series.last_mut().expect("pushed above").points.push(point);
    }
    for series in curves.values_mut() {
        for curve in series.iter_mut() {
            curve.points = thin(&curve.points, max_points);
        }
    }
    Ok(curves)
}

/// A running mean that, like a table's, skips missing values.
#[derive(Default)]
struct Mean {
    sum: f64,
    count: u32,
}

impl Mean {
    fn add(&mut self, value: Option<f64>) {
        if let Some(v) = value {
            self.sum += v;
            self.count += 1;
        }
    }

    fn get(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// At most `max` points: consecutive points averaged in equal buckets,
/// which also smooths a noisy training loss. The first and last points
/// are kept as they are.
pub fn thin(points: &[Point], max: usize) -> Vec<Point> {
    if points.len() <= max || max < 3 {
        return points.to_vec();
    }
    let inner = &points[1..points.len() - 1];
    let buckets = max - 2;
    let mut out = vec![points[0]];
    for b in 0..buckets {
        let slice = &inner[b * inner.len() / buckets..(b + 1) * inner.len() / buckets];
        if slice.is_empty() {
            continue;
        }
        let n = slice.len() as f64;
        let mean = |f: &dyn Fn(&Point) -> f64| slice.iter().map(f).sum::<f64>() / n;
        let tokens = slice.iter().map(|p| p.tokens).sum::<Option<f64>>().map(|t| t / n);
        out.push(Point { step: mean(&|p| p.step), tokens, wall_s: mean(&|p| p.wall_s), value: mean(&|p| p.value) });
    }
    out.push(points[points.len() - 1]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_ends_and_averages_between() {
        let points: Vec<Point> = (0..=100).map(|s| Point { step: s as f64, tokens: Some(10.0 * s as f64), wall_s: s as f64, value: s as f64 }).collect();
        let thinned = thin(&points, 12);
        assert_eq!(thinned.len(), 12);
        assert_eq!(thinned[0], points[0]);
        assert_eq!(thinned[11], points[100]);
        // A linear series stays on its line.
        assert!(thinned.iter().all(|p| (p.value - p.step).abs() < 1e-9 && (p.tokens.unwrap() - 10.0 * p.step).abs() < 1e-9));
        assert_eq!(thin(&points[..5], 12).len(), 5);
    }
}
