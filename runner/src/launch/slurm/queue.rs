//! Which array tasks of a run folder's jobs Slurm still holds, and in what
//! state, from `squeue` (accounting, which many clusters lack, is not
//! asked). A task squeue no longer lists has ended.
use super::commands;
use anyhow::Result;
use std::collections::HashMap;

/// `JOB_TASK` to its state (`PENDING`, `RUNNING`, `COMPLETING`, ...) for
/// every task of `job_ids` that squeue lists.
pub fn live(job_ids: &[String]) -> Result<HashMap<String, String>> {
    if job_ids.is_empty() {
        return Ok(HashMap::new());
    }
    // This user's tasks, one line each (`-r` splits pending arrays): asking
    // for ids squeue has forgotten would be an error.
    let out = commands::run("squeue", &["--noheader".into(), "--array".into(), "--me".into(), "--format=%i|%T".into()])?;
    Ok(parse(&out, job_ids))
}

fn parse(out: &str, job_ids: &[String]) -> HashMap<String, String> {
    out.lines()
        .filter_map(|line| line.trim().split_once('|'))
        .filter(|(task, _)| task.split_once('_').is_some_and(|(job, _)| job_ids.iter().any(|id| id == job)))
        .map(|(task, state)| (task.to_string(), state.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_given_jobs_tasks() {
        let out = "12_0|RUNNING\n12_1|PENDING\n13_0|RUNNING\n14|RUNNING\n";
        let live = super::parse(out, &["12".into(), "14".into()]);
        assert_eq!(live.len(), 2);
        assert_eq!(live["12_1"], "PENDING");
    }
}
