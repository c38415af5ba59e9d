//! `run --launcher slurm --wait`: follows the sweep's array tasks with the
//! usual display (a bar per running trial at the step its record says, a
//! line per trial that ends) by reading the shared run folder, until
//! squeue has listed none of the jobs' tasks for a few seconds. Ctrl-C
//! stops following, not the jobs.
use super::queue;
use crate::launch::SweepDisplay;
use anyhow::Result;
use indicatif::ProgressBar;
use runfolder::{Cell, RunFolder, TrialStatus};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_secs(2);
/// How long squeue must list none of the tasks before they count as
/// ended: a task being requeued can drop out of its listing for a moment.
const ENDED_AFTER: Duration = Duration::from_secs(6);

/// How following ended.
pub enum Followed {
    /// No task of the jobs is left.
    JobsEnded,
    /// A signal stopped the following; the jobs go on.
    Stopped,
}

/// `sweep`: the sweep's trials as they stand (a search's grow as its
/// workers suggest them).
pub fn follow(run_dir: &Path, job_ids: &[String], sweep: &dyn Fn() -> Result<Vec<String>>, display: &dyn SweepDisplay) -> Result<Followed> {
    let folder = RunFolder::open(run_dir)?;
    let mut settled: HashMap<String, TrialStatus> = HashMap::new();
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let mut none_since: Option<Instant> = None;
    loop {
        // Asked first: a task that ended before this look has its record written.
        let live = queue::live(job_ids)?;
        for id in sweep()? {
            let Some(state) = folder.trial(&id) else { continue };
            let record = &state.record;
            match state.status {
                TrialStatus::Completed | TrialStatus::Failed if settled.get(&id) != Some(&state.status) => {
                    if let Some(bar) = bars.remove(id.as_str()) {
                        bar.finish_and_clear();
                    }
                    let word = if state.status == TrialStatus::Completed { "done " } else { "FAIL " };
                    let detail = match (state.status, record.row.get("eval/loss"), record.row.get(runfolder::names::column::ERROR)) {
                        (TrialStatus::Completed, Some(Cell::Float(loss)), _) => format!(": eval/loss {loss:.4}"),
                        (TrialStatus::Failed, _, Some(Cell::Text(error))) => format!(": {error}"),
                        _ => String::new(),
                    };
                    display.line(&format!("{word} {id} {}{detail}", record.label));
                    if settled.insert(id.clone(), state.status).is_none() {
                        display.advance();
                    }
                }
                // Left at a rung: its bar goes (a promotion brings it back).
                TrialStatus::Pruned => {
                    if let Some(bar) = bars.remove(&id) {
                        bar.finish_and_clear();
                        display.line(&format!("rung  {id} {} pruned at step {}", record.label, record.step));
                    }
                }
                TrialStatus::Running => {
                    let label = format!("{id} {}", record.label);
                    let bar = bars.entry(id).or_insert_with(|| display.trial_bar(&label, record.steps as u64));
                    bar.set_position(record.step as u64);
                }
                _ => {}
            }
        }
        none_since = if live.is_empty() { none_since.or(Some(Instant::now())) } else { None };
        if none_since.is_some_and(|since| since.elapsed() >= ENDED_AFTER) {
            bars.values().for_each(ProgressBar::finish_and_clear);
            return Ok(Followed::JobsEnded);
        }
        if crate::signals::requested().is_some() {
            bars.values().for_each(ProgressBar::finish_and_clear);
            return Ok(Followed::Stopped);
        }
        std::thread::sleep(POLL);
    }
}
