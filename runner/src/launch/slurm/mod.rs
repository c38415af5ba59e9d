//! A sweep as Slurm job arrays (`--launcher slurm`). Submission ([`submit`])
//! writes a batch script ([`script`]) whose array tasks each run one trial
//! with `bertlab run --slurm-task` into the shared run folder, through the
//! same claims and per-trial records as every other process there, so
//! nothing is merged afterwards. What was submitted is kept in the run
//! folder's `slurm/` ([`Submission`]); which tasks still live comes from
//! `squeue` ([`queue`]), never from accounting. A task warned of its time
//! limit, or preempted, checkpoints and requeues itself ([`task`]). With
//! early stopping or a search, what trains next is decided as the sweep
//! goes, so the array's tasks are workers instead: each runs the sweep's
//! queue as a local run does, sharing its decision logs with the others.
pub mod commands;
pub mod follow;
pub mod queue;
pub mod script;
pub mod submit;
pub mod task;

use anyhow::{Context, Result};
use runfolder::names;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One job array, as `slurm/submissions.jsonl` keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    pub job_id: String,
    /// The batch script, re-submittable by hand.
    pub script: PathBuf,
    /// The trial of each array task, by task index; none for an array of
    /// workers.
    pub trials: Vec<String>,
    /// With early stopping or a search: the array's tasks are this many
    /// workers, each training what the sweep gives it next.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub workers: usize,
    pub submitted_ms: i64,
}

impl Submission {
    /// `JOB_TASK`, Slurm's name for the array task of trial `index`.
    pub fn task(&self, index: usize) -> String {
        format!("{}_{index}", self.job_id)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The run folder's `slurm/` folder.
pub fn dir(run_dir: &Path) -> PathBuf {
    run_dir.join(names::SLURM_DIR)
}

/// Every array submitted for the run folder, oldest first.
pub fn submissions(run_dir: &Path) -> Result<Vec<Submission>> {
    let path = dir(run_dir).join(names::SLURM_SUBMISSIONS);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    // A line cut short by a crash mid-append is skipped: its array was
    // submitted, but its tasks' claims still keep its trials from running twice.
    Ok(text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect())
}

fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("opening {}", path.display()))?;
    file.write_all(format!("{line}\n").as_bytes()).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", path.display()))
}

fn record(run_dir: &Path, submission: &Submission) -> Result<()> {
    append_line(&dir(run_dir).join(names::SLURM_SUBMISSIONS), &serde_json::to_string(submission)?)
}

/// For each trial, the array task it was last given to.
pub fn task_of_trial(submissions: &[Submission]) -> HashMap<String, String> {
    let mut tasks = HashMap::new();
    for submission in submissions {
        for (index, trial) in submission.trials.iter().enumerate() {
            tasks.insert(trial.clone(), submission.task(index));
        }
    }
    tasks
}

/// The job ids of every submission.
pub fn job_ids(submissions: &[Submission]) -> Vec<String> {
    submissions.iter().map(|s| s.job_id.clone()).collect()
}

/// Marks `job_ids` cancelled, before `scancel` reaches their tasks: a task
/// stopped by SIGTERM requeues itself unless its job is listed here.
pub fn mark_cancelled(run_dir: &Path, job_ids: &[String]) -> Result<()> {
    append_line(&dir(run_dir).join(names::SLURM_CANCELLED), &job_ids.join("\n"))
}

/// Whether `bertlab cancel` cancelled job `job_id`.
pub fn cancelled(run_dir: &Path, job_id: &str) -> bool {
    std::fs::read_to_string(dir(run_dir).join(names::SLURM_CANCELLED)).is_ok_and(|text| text.lines().any(|line| line == job_id))
}
