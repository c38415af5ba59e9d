//! Trials grouped into configurations: trials that differ only by seed
//! are one configuration, named by the keys that vary across the report
//! (a config diff, not the full config). Each configuration gets the mean,
//! sample standard deviation and count of every result over its completed
//! trials.
use runfolder::names::column;
use crate::format;
use anyhow::Result;
use polars::prelude::*;
use std::collections::{BTreeMap, HashMap};

pub const COMPLETED: &str = runfolder::TrialStatus::Completed.as_str();
pub const FAILED: &str = runfolder::TrialStatus::Failed.as_str();
pub const PRUNED: &str = runfolder::TrialStatus::Pruned.as_str();

/// Results summarised per configuration, when the trials table has them;
/// the ranking metric comes first.
const RESULTS: [&str; 5] = ["eval/loss", "eval/accuracy", "train/loss", "perf/tokens_per_s", column::WALL_S];

/// One value of a swept key.
#[derive(Debug, Clone, PartialEq)]
pub enum Level {
    Number(f64),
    Text(String),
    Missing,
}

impl Level {
    fn from_any(value: AnyValue) -> Level {
        match value {
            AnyValue::Null => Level::Missing,
            AnyValue::Boolean(b) => Level::Text(b.to_string()),
            AnyValue::String(s) => Level::Text(s.to_string()),
            AnyValue::StringOwned(s) => Level::Text(s.to_string()),
            other => other.extract::<f64>().map(Level::Number).unwrap_or_else(|| Level::Text(other.to_string())),
        }
    }

    /// A value of a trial's resolved `config.toml`.
    pub fn from_toml(value: &toml::Value) -> Level {
        match value {
            toml::Value::Integer(i) => Level::Number(*i as f64),
            toml::Value::Float(f) => Level::Number(*f),
            toml::Value::String(s) => Level::Text(s.clone()),
            other => Level::Text(other.to_string()),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Level::Number(v) => Some(*v),
            _ => None,
        }
    }

    /// Numbers by value, then texts, then missing values: the order of a
    /// chart axis.
    pub fn order(&self, other: &Level) -> std::cmp::Ordering {
        use Level::*;
        match (self, other) {
            (Number(a), Number(b)) => a.total_cmp(b),
            (Text(a), Text(b)) => a.cmp(b),
            (Number(_), _) | (Text(_), Missing) => std::cmp::Ordering::Less,
            (Missing, Missing) => std::cmp::Ordering::Equal,
            _ => std::cmp::Ordering::Greater,
        }
    }

    /// Whether a value written in an experiment file (a baseline's `match`)
    /// is this level.
    pub fn equals_json(&self, value: &serde_json::Value) -> bool {
        match (self, value) {
            (Level::Number(a), serde_json::Value::Number(b)) => b.as_f64().is_some_and(|b| (a - b).abs() <= 1e-12 * a.abs().max(1.0)),
            (Level::Text(a), serde_json::Value::String(b)) => a == b,
            (Level::Text(a), serde_json::Value::Bool(b)) => *a == b.to_string(),
            _ => false,
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Level::Number(v) => f.write_str(&format::level(*v)),
            Level::Text(s) => f.write_str(s),
            Level::Missing => f.write_str("—"),
        }
    }
}

/// Mean and sample standard deviation (n − 1) over a configuration's
/// completed trials; `std` is `None` for a single trial.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: Option<f64>,
}

impl Stat {
    /// Of `values`; `None` for none, or a mean that is not a number.
    fn of(values: impl Iterator<Item = f64>) -> Option<Stat> {
        let values: Vec<f64> = values.collect();
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        if mean.is_nan() {
            return None;
        }
        let std = (values.len() > 1).then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()).filter(|s| !s.is_nan());
        Some(Stat { mean, std })
    }
}

#[derive(Debug, Clone)]
pub struct Configuration {
    /// `layers=4, hidden=256`: the varying keys' short names and levels.
    pub label: String,
    /// One level per varying key, in [`Configurations::keys`] order.
    pub levels: Vec<Level>,
    pub completed: u32,
    pub failed: u32,
    /// Trials early stopping left at a rung.
    pub pruned: u32,
    /// Trials still marked running: interrupted, or running now.
    pub unfinished: u32,
    pub stats: BTreeMap<String, Stat>,
    pub params: Option<f64>,
    /// Training FLOPs, mean over completed trials.
    pub flops: Option<f64>,
    pub trial_ids: Vec<String>,
}

impl Configuration {
    pub fn score(&self, metric: &str) -> Option<f64> {
        self.stats.get(metric).map(|s| s.mean).filter(|m| m.is_finite())
    }

    /// The value this configuration has for `key`: a varying key's level,
    /// or the value every trial shares.
    pub fn level<'a>(&'a self, all: &'a Configurations, key: &str) -> Option<&'a Level> {
        match all.keys.iter().position(|k| k == key) {
            Some(i) => Some(&self.levels[i]),
            None => all.constants.get(key),
        }
    }
}

pub struct FailedTrial {
    pub config: usize,
    pub trial_id: String,
    pub seed: i64,
    pub error: String,
}

pub struct Configurations {
    pub metric: String,
    pub maximize: bool,
    /// Swept keys whose value differs between configurations.
    pub keys: Vec<String>,
    /// Swept keys with one value across the whole report.
    pub constants: BTreeMap<String, Level>,
    /// Best first by the metric; configurations without it last.
    pub rows: Vec<Configuration>,
    /// The summarised results present, metric first.
    pub results: Vec<String>,
    pub failed: Vec<FailedTrial>,
    /// Trial id to its configuration's position in `rows`.
    pub of_trial: HashMap<String, usize>,
}

impl Configurations {
    pub fn group(trials: &DataFrame, metric: &str, maximize: bool) -> Result<Configurations> {
        let names: Vec<String> = trials.get_column_names().iter().map(|s| s.to_string()).collect();
        let swept: Vec<String> = names.iter().filter(|n| ["experiment", "task"].contains(&n.as_str()) || ["model.", "data.", "train."].iter().any(|p| n.starts_with(p))).cloned().collect();
        let mut levels: BTreeMap<String, Vec<Level>> = BTreeMap::new();
        for key in &swept {
            let column = trials.column(key)?.as_materialized_series().clone();
            levels.insert(key.clone(), column.iter().map(Level::from_any).collect());
        }
        let varies = |values: &[Level]| values.iter().any(|v| v != &values[0]);
        let keys: Vec<String> = swept.iter().filter(|k| varies(&levels[*k])).cloned().collect();
        let constants = swept.iter().filter(|k| !varies(&levels[*k])).filter_map(|k| levels[k].first().map(|l| (k.clone(), l.clone()))).collect();

        let names_shown = short_names(&keys);
        let label_of = |row: usize| -> String {
            if keys.is_empty() {
                return "base configuration".into();
            }
            keys.iter().zip(&names_shown).map(|(k, short)| format!("{short}={}", levels[k][row])).collect::<Vec<_>>().join(", ")
        };
        let labels: Vec<String> = (0..trials.height()).map(label_of).collect();
        let mut levels_of: HashMap<String, Vec<Level>> = HashMap::new();
        for (row, label) in labels.iter().enumerate() {
            levels_of.entry(label.clone()).or_insert_with(|| keys.iter().map(|k| levels[k][row].clone()).collect());
        }

        let mut results: Vec<String> = vec![metric.to_string()];
        results.extend(RESULTS.iter().map(|s| s.to_string()).filter(|r| r != metric));
        results.retain(|r| names.contains(r));
        // Every other evaluation a trial recorded (fine-tuning's eval/f1,
        // eval/score, pretraining's eval/nsp_loss, ...), after the other
        // evaluations and before training's numbers.
        let more: Vec<String> = names.iter().filter(|n| n.starts_with("eval/") && !results.contains(n)).cloned().collect();
        let at = results.iter().skip(1).position(|r| !r.starts_with("eval/")).map_or(results.len(), |i| i + 1);
        results.splice(at..at, more);

        // Rows by configuration, in the order configurations first appear.
        let mut order: Vec<&str> = Vec::new();
        let mut members: HashMap<&str, Vec<usize>> = HashMap::new();
        for (row, label) in labels.iter().enumerate() {
            let rows = members.entry(label.as_str()).or_insert_with(|| {
                order.push(label);
                Vec::new()
            });
            rows.push(row);
        }
        let status = trials.column(column::STATUS)?.str()?;
        let ids = trials.column(column::TRIAL_ID)?.str()?;
        let numbers = |name: &str| -> Result<Option<Vec<Option<f64>>>> {
            if !names.iter().any(|n| n == name) {
                return Ok(None);
            }
            Ok(Some(trials.column(name)?.cast(&DataType::Float64)?.f64()?.iter().collect()))
        };
        let result_values: Vec<(String, Vec<Option<f64>>)> = results.iter().map(|r| Ok((r.clone(), numbers(r)?.expect("results are columns")))).collect::<Result<_>>()?;
        let (params, flops) = (numbers(column::PARAMS)?, numbers(column::FLOPS)?);
        let finite = |v: f64| Some(v).filter(|v| !v.is_nan());

        let mut rows = Vec::new();
        for label in order {
            let all = &members[label];
            let done: Vec<usize> = all.iter().copied().filter(|&row| status.get(row) == Some(COMPLETED)).collect();
            let failed = all.iter().filter(|&&row| status.get(row) == Some(FAILED)).count() as u32;
            let pruned = all.iter().filter(|&&row| status.get(row) == Some(PRUNED)).count() as u32;
            let mut stats = BTreeMap::new();
            for (r, values) in &result_values {
                if let Some(stat) = Stat::of(done.iter().filter_map(|&row| values[row])) {
                    stats.insert(r.clone(), stat);
                }
            }
            rows.push(Configuration {
                levels: levels_of.remove(label).unwrap_or_default(),
                label: label.to_string(),
                completed: done.len() as u32,
                failed,
                pruned,
                unfinished: all.len() as u32 - done.len() as u32 - failed - pruned,
                stats,
                params: params.as_ref().and_then(|p| all.iter().filter_map(|&row| p[row]).reduce(f64::max)).and_then(finite),
                flops: flops.as_ref().and_then(|f| Stat::of(done.iter().filter_map(|&row| f[row]))).map(|s| s.mean),
                trial_ids: all.iter().filter_map(|&row| ids.get(row)).map(str::to_string).collect(),
            });
        }
        rank(&mut rows, metric, maximize);

        let of_trial: HashMap<String, usize> = rows.iter().enumerate().flat_map(|(i, c)| c.trial_ids.iter().map(move |id| (id.clone(), i))).collect();
        let failed = failed_trials(trials, &of_trial)?;
        Ok(Configurations { metric: metric.to_string(), maximize, keys, constants, rows, results, failed, of_trial })
    }

    /// The distinct levels of varying key `k`, in axis order.
    pub fn levels(&self, k: usize) -> Vec<Level> {
        let mut levels: Vec<Level> = Vec::new();
        for c in &self.rows {
            if !levels.contains(&c.levels[k]) {
                levels.push(c.levels[k].clone());
            }
        }
        levels.sort_by(|a, b| a.order(b));
        levels
    }

    /// The keys' names as shown: the last segment (`layers`) where that is
    /// unambiguous, the dotted key otherwise.
    pub fn short_names(&self) -> Vec<String> {
        short_names(&self.keys)
    }
}

fn short_names(keys: &[String]) -> Vec<String> {
    let last = |k: &String| k.rsplit('.').next().unwrap_or(k).to_string();
    keys.iter()
        .map(|k| if keys.iter().filter(|o| last(o) == last(k)).count() == 1 { last(k) } else { k.clone() })
        .collect()
}

/// Best first by the metric's mean; configurations without one keep their
/// order after the others.
fn rank(rows: &mut [Configuration], metric: &str, maximize: bool) {
    rows.sort_by(|a, b| {
        let key = |c: &Configuration| c.score(metric).map(|s| if maximize { -s } else { s });
        match (key(a), key(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    });
}

fn failed_trials(trials: &DataFrame, of_trial: &HashMap<String, usize>) -> Result<Vec<FailedTrial>> {
    let status = trials.column(column::STATUS)?.str()?;
    let ids = trials.column(column::TRIAL_ID)?.str()?;
    let seeds = trials.column(column::SEED)?.cast(&DataType::Int64)?;
    // A table whose trials all succeeded may store `error` as all-null of
    // another type.
    let errors = trials.column(column::ERROR).ok().map(|c| c.cast(&DataType::String)).transpose()?;
    let errors = errors.as_ref().map(|c| c.str()).transpose()?;
    let mut failed = Vec::new();
    for row in 0..trials.height() {
        if status.get(row) != Some(FAILED) {
            continue;
        }
        let id = ids.get(row).unwrap_or_default().to_string();
        failed.push(FailedTrial {
            config: of_trial.get(&id).copied().unwrap_or(0),
            seed: seeds.get(row)?.extract::<i64>().unwrap_or(0),
            error: errors.as_ref().and_then(|e| e.get(row)).unwrap_or("(no error recorded)").to_string(),
            trial_id: id,
        });
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trials() -> DataFrame {
        df!(
            "trial_id" => ["a", "b", "c", "d", "e"],
            "experiment" => ["x"; 5],
            "status" => ["completed", "completed", "completed", "failed", "completed"],
            "seed" => [0i64, 1, 0, 1, 0],
            "model.layers" => [2i64, 2, 4, 4, 4],
            "train.lr" => [1e-3, 1e-3, 1e-3, 1e-3, 1e-3],
            "eval/loss" => [Some(5.0), Some(6.0), Some(4.0), None, Some(4.5)],
            "params" => [10i64, 10, 20, 20, 20],
            "error" => [None, None, None, Some("diverged"), None],
        )
        .unwrap()
    }

    #[test]
    fn trials_that_differ_by_seed_are_one_configuration() {
        let mut frame = trials();
        // e differs from c only by seed 0 again: a duplicate id would not,
        // so give it a distinct swept value to stay a separate config.
        frame = frame.head(Some(4));
        let all = Configurations::group(&frame, "eval/loss", false).unwrap();
        assert_eq!(all.keys, vec!["model.layers"]);
        assert_eq!(all.constants["train.lr"], Level::Number(1e-3));
        assert_eq!(all.rows.len(), 2);
        // layers=4 has one completed trial (4.0), ranked first.
        assert_eq!(all.rows[0].label, "layers=4");
        assert_eq!(all.rows[0].stats["eval/loss"], Stat { mean: 4.0, std: None });
        assert_eq!((all.rows[0].completed, all.rows[0].failed), (1, 1));
        let two = &all.rows[1].stats["eval/loss"];
        assert_eq!(two.mean, 5.5);
        assert!((two.std.unwrap() - 0.5f64.sqrt()).abs() < 1e-12, "sample std: {two:?}");
        assert_eq!(all.failed.len(), 1);
        assert_eq!((all.failed[0].trial_id.as_str(), all.failed[0].error.as_str(), all.failed[0].config), ("d", "diverged", 0));
        assert_eq!(all.of_trial["a"], 1);
    }

    #[test]
    fn maximizing_ranks_the_largest_mean_first() {
        let all = Configurations::group(&trials(), "eval/loss", true).unwrap();
        assert_eq!(all.rows[0].label, "layers=2");
    }

    #[test]
    fn ambiguous_short_names_stay_dotted() {
        let keys = vec!["model.dropout".to_string(), "train.dropout".to_string(), "model.layers".to_string()];
        assert_eq!(short_names(&keys), vec!["model.dropout", "train.dropout", "layers"]);
    }
}
