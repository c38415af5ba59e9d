//! `bertlab status RUN_DIR [--format table|json]`: where each trial of a
//! run folder stands (its status, step of total, owner and heartbeat, how
//! long it has run, its last checkpoint and its age, the attempts and the
//! retries of dead workers) and the totals, for people or scripts. A trial whose
//! owner is gone shows as `interrupted`. Brings the folder's tables up to
//! date on the way, as `report` does.
use super::OutputFormat;
use anyhow::Result;
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
    match args.format {
        OutputFormat::Json => {
            let rows: Vec<serde_json::Value> = trials.iter().map(|t| as_json(t, now)).collect();
            let out = json!({ "run_dir": args.run_dir, "trials": rows, "totals": totals(&trials), "tables_updated": updated });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        OutputFormat::Table => {
            println!("| trial | experiment | status | step | owner | heartbeat | running for | checkpoint | attempts | retries |");
            println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
            for t in &trials {
                let record = &t.record;
                let heartbeat = t.holder.as_ref().map_or("-".into(), |h| format!("{:.0}s ago", h.heartbeat_age_s));
                let checkpoint = record.checkpoint.map_or("-".into(), |c| format!("step {}, {} ago", c.step, duration(age_s(c.written_ms, now))));
                println!(
                    "| {} | {} | {} | {}/{} | {} | {heartbeat} | {} | {checkpoint} | {} | {} |",
                    record.trial_id,
                    record.experiment,
                    t.status,
                    record.step,
                    record.steps,
                    record.owner,
                    duration(running_for(t, now)),
                    record.attempts,
                    record.retries
                );
            }
            let counts: Vec<String> = totals(&trials).as_object().into_iter().flatten().map(|(k, v)| format!("{v} {k}")).collect();
            println!("{} trials: {}", trials.len(), counts.join(", "));
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

fn as_json(trial: &TrialState, now: i64) -> serde_json::Value {
    let record = &trial.record;
    json!({
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

/// Trials by status, every status named.
fn totals(trials: &[TrialState]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for status in [TrialStatus::Completed, TrialStatus::Running, TrialStatus::Interrupted, TrialStatus::Failed] {
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
