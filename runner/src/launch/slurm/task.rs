//! Inside one array task (`bertlab run --slurm-task`): which task this is,
//! how many threads Slurm gave it, and, once its trial stopped on a signal
//! (SIGUSR1 before the time limit, SIGTERM from a preemption or a requeue)
//! with its checkpoint written, requeueing this array task alone
//! (`scontrol requeue JOB_TASK`, never the whole array) so it resumes when
//! it starts again. A task whose job `bertlab cancel` cancelled stays down.
use super::commands;
use anyhow::{anyhow, Result};
use std::path::Path;

pub struct Task {
    /// The array's job id (`SLURM_ARRAY_JOB_ID`).
    pub job_id: String,
    pub index: String,
}

impl Task {
    pub fn from_env() -> Result<Task> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
            (Some(job_id), Some(index)) => Ok(Task { job_id, index }),
            _ => Err(anyhow!("--slurm-task runs inside an array task of `bertlab run --launcher slurm` (SLURM_ARRAY_JOB_ID and SLURM_ARRAY_TASK_ID are not set)")),
        }
    }

    /// `JOB_TASK`.
    pub fn name(&self) -> String {
        format!("{}_{}", self.job_id, self.index)
    }

    /// The task's CPUs (`--cpus-per-task`), which libtorch's threads follow.
    pub fn cpus() -> Option<i32> {
        std::env::var("SLURM_CPUS_PER_TASK").ok()?.parse().ok().filter(|&n| n > 0)
    }

    /// Puts this task back in the queue after its trial was stopped on a
    /// signal; says what it did. A requeue Slurm started itself (preemption,
    /// `scontrol requeue`) makes ours fail harmlessly: the task is queued
    /// either way.
    pub fn requeue(&self, run_dir: &Path) -> String {
        if super::cancelled(run_dir, &self.job_id) {
            return format!("slurm task {} not requeued: its job was cancelled", self.name());
        }
        match commands::run("scontrol", &["requeue".into(), self.name()]) {
            Ok(_) => format!("slurm task {} requeued: it resumes from its checkpoint when it starts again", self.name()),
            Err(e) => format!("slurm task {} not requeued by itself ({e}); a requeue Slurm started goes on", self.name()),
        }
    }
}
