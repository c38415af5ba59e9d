//! Learning curves: for each configuration, a metric's mean over its
//! completed trials at every recorded step, with the training tokens and
//! wall time reached there, thinned for drawing.
use crate::configs::{Configurations, COMPLETED};
use crate::tables::{Runs, RUN};
use anyhow::Result;
use polars::prelude::*;
use std::collections::BTreeMap;

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
    let trials = &runs.trials;
    let ids = trials.column("trial_id")?.str()?;
    let config: Vec<Option<u32>> = ids.iter().map(|id| id.and_then(|id| configs.of_trial.get(id)).map(|&i| i as u32)).collect();
    let tokens = match trials.column("tokens") {
        Ok(c) => c.cast(&DataType::Float64)?,
        Err(_) => Column::full_null("tokens".into(), trials.height(), &DataType::Float64),
    };
    let completed = DataFrame::new(trials.height(), vec![
        trials.column("trial_id")?.clone(),
        trials.column(RUN)?.clone(),
        trials.column("status")?.clone(),
        Column::new("config".into(), config),
        tokens.with_name("tokens".into()),
    ])?
    .lazy()
    .filter(col("status").eq(lit(COMPLETED)));

    let on = || [col("trial_id"), col(RUN)];
    let wanted = keys.iter().map(|k| col("key").eq(lit(*k))).reduce(|a, b| a.or(b)).unwrap_or(lit(false));
    let last_step = runs.metrics.clone().group_by([col("trial_id"), col(RUN)]).agg([col("step").max().alias("last_step")]);
    let means = runs
        .metrics
        .clone()
        .filter(wanted)
        .join(completed, on(), on(), JoinArgs::new(JoinType::Inner))
        .join(last_step, on(), on(), JoinArgs::new(JoinType::Inner))
        // Every step trains on the same number of tokens.
        .with_column((col("step").cast(DataType::Float64) * col("tokens") / col("last_step").cast(DataType::Float64)).alias("tokens_at"))
        .group_by([col("config"), col("key"), col("step")])
        .agg([col("value").mean(), col("wall_s").mean(), col("tokens_at").mean()])
        .sort(["config", "key", "step"], SortMultipleOptions::default())
        .collect()?;

    let config = means.column("config")?.u32()?;
    let key = means.column("key")?.str()?;
    let step = means.column("step")?.cast(&DataType::Float64)?;
    let (step, value, wall, tokens) = (step.f64()?, means.column("value")?.f64()?, means.column("wall_s")?.f64()?, means.column("tokens_at")?.f64()?);
    let mut curves: BTreeMap<String, Vec<Curve>> = BTreeMap::new();
    for row in 0..means.height() {
        let (Some(c), Some(k), Some(s), Some(v)) = (config.get(row), key.get(row), step.get(row), value.get(row)) else { continue };
        let series = curves.entry(k.to_string()).or_default();
        if series.last().is_none_or(|curve| curve.config != c as usize) {
            series.push(Curve { config: c as usize, points: Vec::new() });
        }
        let point = Point { step: s, tokens: tokens.get(row).filter(|t| t.is_finite()), wall_s: wall.get(row).unwrap_or(f64::NAN), value: v };
        series.last_mut().expect("pushed above").points.push(point);
    }
    for series in curves.values_mut() {
        for curve in series.iter_mut() {
            curve.points = thin(&curve.points, max_points);
        }
    }
    Ok(curves)
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
