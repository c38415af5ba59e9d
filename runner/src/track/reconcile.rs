//! Delivery of spooled trials: for each, find (or create) its MLflow run by
//! the `bertlab.trial_id` tag, read what the server already holds, and send
//! only the params and metric points it lacks, then the status. Comparing
//! with the server instead of remembering what was sent is what makes it
//! idempotent: a crash between sending and marking, or a second `sync`,
//! never logs a point twice.
use super::client::{CallError, Client, KeyValue, Metric};
use super::spool::{Spool, Target};
use runfolder::names::column;
use runfolder::{tables, RunFolder, TrialStatus};
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
    let target = spool.target().unwrap_or(Target { uri: client.uri().into(), ..Target::default() });
    let folder = RunFolder { root: run_dir.to_owned() };
    let experiment_id = client.experiment_id(&target.experiment)?;
    // Nested as live runs are, under the folder's parent (made now if the
    // server was down for the whole sweep).
    let parent = super::sweep_parent(client, &spool, &experiment_id)?;
    for trial_id in pending {
        let Some(trial) = folder.trial(&trial_id) else {
            // Claimed but never started: nothing to send yet.
            continue;
        };
        if trial.status == TrialStatus::Running || spool.streamed_elsewhere(&trial_id) {
            // A live process (a Slurm task, another `run` on the folder)
            // trains it, or its tracker is still sending what it recorded:
            // delivering beside it would make a second run for the trial
            // or log its points twice. It stays pending.
            continue;
        }
        let run_id = match client.runs_tagged(&experiment_id, super::TRIAL_TAG, &trial_id)?.first() {
            Some(run) => run["info"]["run_id"].as_str().unwrap_or_default().to_string(),
            None => {
                let tags = super::trial_tags(&target.tags, &parent, &trial_id);
                client.create_run(&experiment_id, &super::run_name(&trial.record), trial.record.started_ms, &tags)?
            }
        };
        let mut points = Vec::new();
        runfolder::points::for_each(&folder.trial_dir(&trial_id), |p| {
            if p.value.is_finite() {
                points.push(Metric { key: p.key, value: p.value, timestamp: super::now_ms(), step: p.step });
            }
        })
        .map_err(|e| local(e.into()))?;
        let missing = missing_points(client, &run_id, points)?;
        let params = missing_params(client, &run_id, &super::params(&trial.record))?;
        client.log_batch(&run_id, &missing, &params, &[])?;
        delivered.points += missing.len();
        match trial.status {
            TrialStatus::Completed => client.finish_run(&run_id, "FINISHED", super::now_ms())?,
            TrialStatus::Failed => {
                let error = tables::text(&trial.record.row, column::ERROR).unwrap_or_default().chars().take(5000).collect();
                client.log_batch(&run_id, &[], &[], &[KeyValue { key: "bertlab.error".into(), value: error }])?;
                client.finish_run(&run_id, "FAILED", super::now_ms())?
            }
            // Left at a rung: ended as MLflow's runs stopped early are. A
            // promotion later goes on in the same run, FINISHED at its end.
            TrialStatus::Pruned => client.finish_run(&run_id, "KILLED", trial.record.updated_ms)?,
            // Cut short: kept pending until it ends.
            TrialStatus::Running | TrialStatus::Interrupted => continue,
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

fn local(e: anyhow::Error) -> CallError {
    CallError { call: "reading the run folder".into(), message: format!("{e:#}"), code: None }
}
