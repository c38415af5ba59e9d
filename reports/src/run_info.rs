//! `run.toml` in a run folder: what a report needs besides the tables —
//! the ranking metric and goal, the baselines to show, the chart choices,
//! and where the numbers came from. `bertlab run` rewrites it at every
//! execution; `bertlab report` reads it back.
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const FILE: &str = runfolder::names::RUN_INFO;

/// A published result shown beside the measured configurations it
/// `match`es (`[[baseline]]` in an experiment file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub name: String,
    /// Where the numbers were published.
    #[serde(default)]
    pub source: String,
    /// Dotted keys and the values a configuration must have to stand
    /// beside this baseline; empty matches every configuration.
    #[serde(rename = "match", default)]
    pub matches: BTreeMap<String, serde_json::Value>,
    /// Metric names (as in `trials.parquet`, `params` included) and the
    /// published values.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// `[report]` in an experiment file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportOptions {
    /// The two swept keys of the heatmap, rows then columns; by default
    /// the two swept keys with the most levels.
    pub heatmap: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentInfo {
    pub name: String,
    /// The experiment file, as given on the command line.
    pub file: String,
    /// The model plugin.
    pub model: String,
    pub metric: String,
    /// `minimize` or `maximize`.
    pub goal: String,
}

/// What produced the numbers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Provenance {
    pub bertlab: String,
    pub git_commit: Option<String>,
    pub libtorch: String,
    /// The devices the trials of the last execution ran on.
    pub devices: Vec<String>,
    /// When the last execution finished, RFC 3339 UTC.
    pub date: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub experiment: ExperimentInfo,
    #[serde(default)]
    pub report: ReportOptions,
    #[serde(default)]
    pub baseline: Vec<Baseline>,
    #[serde(default)]
    pub provenance: Provenance,
    /// `[launch]` as the last execution resolved it (where the trials
    /// trained); the report does not read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<toml::Value>,
}

impl RunInfo {
    pub fn maximize(&self) -> bool {
        self.experiment.goal == "maximize"
    }

    /// The run's `run.toml`, or `None` for a folder written before it
    /// existed.
    pub fn read(run_dir: &Path) -> Result<Option<RunInfo>> {
        let path = run_dir.join(FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).map(Some).with_context(|| format!("{}: not a bertlab run.toml", path.display()))
    }

    /// Writes `run.toml` atomically (a temporary file, then a rename).
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let text = toml::to_string(self).context("serialising run.toml")?;
        let path = run_dir.join(FILE);
        let text = format!("# Written by bertlab run; read by bertlab report.\n{text}");
        runfolder::atomic::write(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_info_round_trips_through_toml() {
        let info = RunInfo {
            experiment: ExperimentInfo { name: "e".into(), file: "e.toml".into(), model: "bert".into(), metric: "eval/loss".into(), goal: "minimize".into() },
            report: ReportOptions { heatmap: Some(vec!["model.layers".into(), "model.hidden".into()]) },
            baseline: vec![Baseline {
                name: "BERT-Mini".into(),
                source: "Turc et al. 2019".into(),
                matches: BTreeMap::from([("model.layers".to_string(), 4.into())]),
                metrics: BTreeMap::from([("glue/score".to_string(), 65.8)]),
            }],
            provenance: Provenance { bertlab: "0.1.0".into(), git_commit: None, libtorch: "2.11.0".into(), devices: vec!["cpu".into()], date: "2026-11-26T00:00:00Z".into() },
            launch: Some(toml::Value::Table(toml::Table::from_iter([("launcher".to_string(), toml::Value::String("slurm".into()))]))),
        };
        let dir = std::env::temp_dir().join(format!("bertlab-run-info-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        info.write(&dir).unwrap();
        let back = RunInfo::read(&dir).unwrap().unwrap();
        assert_eq!(back.baseline, info.baseline);
        assert_eq!(back.report, info.report);
        assert_eq!(back.launch, info.launch);
        assert!(!back.maximize());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
