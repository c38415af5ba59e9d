//! `bertlab status RUN_DIR [--format table|json]`: where each trial of a
//! run folder stands (its status, step of total, owner and heartbeat, how
//! long it has run, its last checkpoint and its age, the attempts and the
//! retries of dead workers, and for `--launcher slurm` its array task and
//! that task's state in squeue) and the totals, for people or scripts. A
//! trial whose owner is gone shows as `interrupted`; a submitted trial
//! whose task has not started yet, as `queued` (or `not started` once its
//! task is gone). Brings the folder's tables
//! up to date on the way, as `report` does.
use super::OutputFormat;
use crate::launch::slurm::{self, queue};
use anyhow::Result;
use std::collections::HashMap;
use clap::Args;
use runfolder::{TrialState, TrialStatus};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub struct StatusArgs {
    /// A run folder, e.g. runs/quickstart.
    run_dir: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    format: OutputFormat,
}

pub fn status(args: StatusArgs) -> Result<i32> {
    let folder = crate::store::existing(&args.run_dir)?;
    let updated = folder.bring_tables_up_to_date()?;
    let trials = folder.trials()?;
    let now = runfolder::record::now_ms();
    let slurm = SlurmView::of(&args.run_dir)?;
    let queued = slurm.queued(&trials);
    let waiting = queued.iter().filter(|id| slurm.unstarted(id) == QUEUED).count();
    match args.format {
        OutputFormat::Json => {
            let mut rows: Vec<serde_json::Value> = trials.iter().map(|t| as_json(t, now, &slurm)).collect();
            rows.extend(queued.iter().map(|id| json!({ "trial_id": id, "status": slurm.unstarted(id), "slurm_task": slurm.task(id), "slurm_state": slurm.state(id) })));
            let mut totals = totals(&trials);
            if !slurm.tasks.is_empty() {
                totals[QUEUED] = waiting.into();
            }
            let out = json!({ "run_dir": args.run_dir, "trials": rows, "totals": totals, "tables_updated": updated });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        OutputFormat::Table => {
            println!("| trial | experiment | status | step | owner | heartbeat | running for | checkpoint | attempts | retries | slurm |");
            println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
            for t in &trials {
                let record = &t.record;
                let heartbeat = t.holder.as_ref().map_or("-".into(), |h| format!("{:.0}s ago", h.heartbeat_age_s));
                let checkpoint = record.checkpoint.map_or("-".into(), |c| format!("step {}, {} ago", c.step, duration(age_s(c.written_ms, now))));
                println!(
                    "| {} | {} | {} | {}/{} | {} | {heartbeat} | {} | {checkpoint} | {} | {} | {} |",
                    record.trial_id,
                    record.experiment,
                    t.status,
                    record.step,
                    record.steps,
                    record.owner,
                    duration(running_for(t, now)),
                    record.attempts,
                    record.retries,
                    slurm.cell(&record.trial_id)
                );
            }
            for id in &queued {
                println!("| {id} | - | {} | - | - | - | - | - | - | - | {} |", slurm.unstarted(id), slurm.cell(id));
            }
            let mut counts: Vec<String> = totals(&trials).as_object().into_iter().flatten().map(|(k, v)| format!("{v} {k}")).collect();
            if !slurm.tasks.is_empty() {
                counts.push(format!("{waiting} {QUEUED}"));
                counts.push(format!("{} {NOT_STARTED}", queued.len() - waiting));
            }
            println!("{} trials: {}", trials.len() + queued.len(), counts.join(", "));
        }
    }
    Ok(0)
}

fn age_s(since_ms: i64, now: i64) -> f64 {
    (now - since_ms).max(0) as f64 / 1000.0
}

/// Seconds the latest attempt has run (to its last record, if it ended).
fn running_for(trial: &TrialState, now: i64) -> f64 {
    let end = if trial.status == TrialStatus::Running { now } else { trial.record.updated_ms };
    (end - trial.record.started_ms).max(0) as f64 / 1000.0
}

fn as_json(trial: &TrialState, now: i64, slurm: &SlurmView) -> serde_json::Value {
    let record = &trial.record;
    json!({
        "slurm_task": slurm.task(&record.trial_id),
        "slurm_state": slurm.state(&record.trial_id),
        "trial_id": record.trial_id,
        "experiment": record.experiment,
        "status": trial.status,
        "step": record.step,
        "steps": record.steps,
        "owner": record.owner.to_string(),
        "heartbeat_age_s": trial.holder.as_ref().map(|h| h.heartbeat_age_s),
        "running_s": running_for(trial, now),
        "attempts": record.attempts,
        "retries": record.retries,
        "checkpoint_step": record.checkpoint.map(|c| c.step),
        "checkpoint_age_s": record.checkpoint.map(|c| age_s(c.written_ms, now)),
    })
}

/// A submitted trial whose array task squeue lists but that has no record yet.
const QUEUED: &str = "queued";
/// A submitted trial without a record whose task is gone (cancelled).
const NOT_STARTED: &str = "not started";

/// The Slurm side of a run folder: each submitted trial's array task, and
/// the state squeue gives the tasks it still lists.
struct SlurmView {
    tasks: HashMap<String, String>,
    live: HashMap<String, String>,
}

impl SlurmView {
    fn of(run_dir: &std::path::Path) -> Result<SlurmView> {
        let submissions = slurm::submissions(run_dir)?;
        let live = match queue::live(&slurm::job_ids(&submissions)) {
            Ok(live) => live,
            Err(e) => {
                eprintln!("warning: the Slurm tasks' states are unknown: {e:#}");
                HashMap::new()
            }
        };
        Ok(SlurmView { tasks: slurm::task_of_trial(&submissions), live })
    }

    fn task(&self, trial: &str) -> Option<&String> {
        self.tasks.get(trial)
    }

    /// The task's squeue state; `None` once squeue no longer lists it.
    fn state(&self, trial: &str) -> Option<&String> {
        self.task(trial).and_then(|task| self.live.get(task))
    }

    fn cell(&self, trial: &str) -> String {
        match (self.task(trial), self.state(trial)) {
            (Some(task), Some(state)) => format!("{task} {state}"),
            (Some(task), None) => format!("{task} ended"),
            (None, _) => "-".into(),
        }
    }

    /// What a submitted trial without a record is.
    fn unstarted(&self, trial: &str) -> &'static str {
        if self.state(trial).is_some() { QUEUED } else { NOT_STARTED }
    }

    /// Submitted trials without a record, in submission order.
    fn queued(&self, trials: &[TrialState]) -> Vec<String> {
        let mut ids: Vec<&String> = self.tasks.keys().filter(|id| !trials.iter().any(|t| &t.record.trial_id == *id)).collect();
        ids.sort_by_key(|id| &self.tasks[*id]);
        ids.into_iter().cloned().collect()
    }
}

/// Trials by status, every status named.
fn totals(trials: &[TrialState]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for status in [TrialStatus::Completed, TrialStatus::Running, TrialStatus::Interrupted, TrialStatus::Pruned, TrialStatus::Failed] {
        out.insert(status.as_str().into(), trials.iter().filter(|t| t.status == status).count().into());
    }
    out.into()
}

fn duration(seconds: f64) -> String {
    match seconds {
        s if s < 60.0 => format!("{s:.1}s"),
        s if s < 3600.0 => format!("{}m{:02}s", (s / 60.0) as u64, s as u64 % 60),
        s => format!("{}h{:02}m", (s / 3600.0) as u64, (s as u64 % 3600) / 60),
    }
}
