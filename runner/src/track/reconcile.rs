//! Delivery of spooled trials: for each, find (or create) its MLflow run by
//! the `bertlab.trial_id` tag, read what the server already holds, and send
//! only the params and metric points it lacks, then the status. Comparing
//! with the server instead of remembering what was sent is what makes it
//! idempotent: a crash between sending and marking, or a second `sync`,
//! never logs a point twice.
use super::client::{CallError, Client, KeyValue, Metric};
use super::spool::{Spool, Target};
use crate::store::table::{Cell, Table};
use std::collections::HashSet;
use std::path::Path;

/// What a delivery did.
#[derive(Debug, Default, PartialEq)]
pub struct Delivered {
    pub trials: usize,
    pub points: usize,
}

pub fn deliver(client: &Client, run_dir: &Path) -> Result<Delivered, CallError> {
    let spool = Spool::in_run(run_dir);
    let pending = spool.pending();
    let mut delivered = Delivered::default();
    if pending.is_empty() {
        return Ok(delivered);
    }
    let target = spool.target().unwrap_or(Target { uri: client.uri().into(), experiment: String::new(), parent_run_id: None });
    let trials = Table::read(&run_dir.join("trials.parquet")).map_err(local)?;
    let metrics = Table::read(&run_dir.join("metrics.parquet")).map_err(local)?;
    let experiment_id = client.experiment_id(&target.experiment)?;
    for trial_id in pending {
        let Some(row) = trials.find(|r| text(r.get("trial_id")) == Some(trial_id.as_str())) else {
            // Started but never recorded (a crash mid-trial): nothing to send yet.
            continue;
        };
        let status = text(row.get("status")).unwrap_or("running").to_string();
        let run_id = match client.runs_tagged(&experiment_id, "bertlab.trial_id", &trial_id)?.first() {
            Some(run) => run["info"]["run_id"].as_str().unwrap_or_default().to_string(),
            None => {
                let mut tags = vec![KeyValue { key: "bertlab.trial_id".into(), value: trial_id.clone() }];
                if let Some(parent) = &target.parent_run_id {
                    tags.push(KeyValue { key: "mlflow.parentRunId".into(), value: parent.clone() });
                }
                client.create_run(&experiment_id, &trial_id, super::now_ms(), &tags)?
            }
        };
        let points: Vec<Metric> = metrics
            .rows()
            .iter()
            .filter(|r| text(r.get("trial_id")) == Some(trial_id.as_str()))
            .filter_map(|r| {
                let value = float(r.get("value"))?;
                Some(Metric {
                    key: text(r.get("key"))?.to_string(),
                    value,
                    timestamp: super::now_ms(),
                    step: int(r.get("step"))?,
                })
            })
            .filter(|m| m.value.is_finite())
            .collect();
        let missing = missing_points(client, &run_id, points)?;
        let params = missing_params(client, &run_id, &trial_params(run_dir, &trial_id))?;
        client.log_batch(&run_id, &missing, &params, &[])?;
        delivered.points += missing.len();
        match status.as_str() {
            "completed" => client.finish_run(&run_id, "FINISHED", super::now_ms())?,
            "failed" => {
                let error = text(row.get("error")).unwrap_or_default().chars().take(5000).collect();
                client.log_batch(&run_id, &[], &[], &[KeyValue { key: "bertlab.error".into(), value: error }])?;
                client.finish_run(&run_id, "FAILED", super::now_ms())?
            }
            _ => continue, // still running elsewhere: keep it pending
        }
        spool.clear(&trial_id);
        delivered.trials += 1;
    }
    Ok(delivered)
}

/// The points the run does not hold yet, by (key, step).
fn missing_points(client: &Client, run_id: &str, points: Vec<Metric>) -> Result<Vec<Metric>, CallError> {
    let keys: HashSet<String> = points.iter().map(|p| p.key.clone()).collect();
    let mut held: HashSet<(String, i64)> = HashSet::new();
    for key in keys {
        held.extend(client.metric_history(run_id, &key)?.into_iter().map(|m| (m.key, m.step)));
    }
    Ok(points.into_iter().filter(|p| !held.contains(&(p.key.clone(), p.step))).collect())
}

/// Params the run does not hold yet (MLflow refuses to change a param).
fn missing_params(client: &Client, run_id: &str, params: &[KeyValue]) -> Result<Vec<KeyValue>, CallError> {
    let run = client.run(run_id)?;
    let held: HashSet<&str> = run["data"]["params"].as_array().map(|ps| ps.iter().filter_map(|p| p["key"].as_str()).collect()).unwrap_or_default();
    Ok(params.iter().filter(|p| !held.contains(p.key.as_str())).cloned().collect())
}

/// The trial's resolved configuration, from its `config.toml`, flattened
/// as the live sender does.
fn trial_params(run_dir: &Path, trial_id: &str) -> Vec<KeyValue> {
    let file = run_dir.join("trials").join(trial_id).join("config.toml");
    let Some(table) = std::fs::read_to_string(file).ok().and_then(|t| t.parse::<toml::Table>().ok()) else { return Vec::new() };
    let json = serde_json::to_value(table).unwrap_or_default();
    let config = serde_json::json!({
        "plugin": json["experiment"]["model"],
        "seed": json["experiment"]["seeds"][0],
        "model": json["model"],
        "data": json["data"],
        "train": json["train"],
    });
    super::flatten_config(&config)
}

fn text(cell: Option<&Cell>) -> Option<&str> {
    match cell {
        Some(Cell::Text(s)) => Some(s),
        _ => None,
    }
}

fn float(cell: Option<&Cell>) -> Option<f64> {
    match cell {
        Some(Cell::Float(f)) => Some(*f),
        Some(Cell::Int(i)) => Some(*i as f64),
        _ => None,
    }
}

fn int(cell: Option<&Cell>) -> Option<i64> {
    match cell {
        Some(Cell::Int(i)) => Some(*i),
        _ => None,
    }
}

fn local(e: anyhow::Error) -> CallError {
    CallError { call: "reading the run folder".into(), message: format!("{e:#}"), code: None }
}

