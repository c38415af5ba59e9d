//! Submitting a sweep: one job array over the trials nothing owns. A trial
//! is left out when it is completed, failed (unless asked to retry those),
//! claimed by a live process (on any machine), or given to an array task
//! squeue still lists; so submitting again while jobs live adds only the
//! rest, and two submissions never queue one trial twice. With early
//! stopping or a search the array is of workers instead, submitted unless
//! an earlier array of workers still lives. Submissions of one run folder
//! take turns under a lock.
use super::{commands, queue, script::Script, Submission};
use crate::config::launch::SlurmSection;
use anyhow::{anyhow, Context, Result};
use runfolder::{claim, names, RunFolder, TrialStatus};
use std::path::{Path, PathBuf};

/// A submission to make.
pub struct Request<'a> {
    pub run_dir: &'a Path,
    /// Every trial of the sweep, in plan order.
    pub trials: &'a [String],
    pub slurm: &'a SlurmSection,
    pub job_name: String,
    /// `bertlab run ... --slurm-task`, without the trial.
    pub command: Vec<String>,
    pub exports: Vec<(String, String)>,
    pub workdir: PathBuf,
    pub retry_failed: bool,
    /// Each task's processes (`train.devices`): one rank of its trial each.
    pub ranks: usize,
    /// Early stopping or a search: submit this many workers.
    pub workers: Option<usize>,
    /// A search has suggestions left to make (beyond `trials`).
    pub search_left: bool,
}

/// What a submission did.
#[derive(Debug, Default)]
pub struct Submitted {
    /// The new array, if any trial needed one.
    pub submission: Option<Submission>,
    pub completed: usize,
    /// Failed trials left out (no `--retry-failed`).
    pub failed: usize,
    /// Trials early stopping left at a rung (an array of workers only).
    pub pruned: usize,
    /// Trials some live process or queued task owns, and who.
    pub owned: Vec<(String, String)>,
    /// The job whose workers still live, when it made a new one needless.
    pub workers_live: Option<String>,
}

pub fn submit(request: &Request) -> Result<Submitted> {
    let dir = super::dir(request.run_dir);
    std::fs::create_dir_all(dir.join(names::SLURM_LOGS)).with_context(|| format!("creating {}", dir.display()))?;
    let _turn = claim::wait_for(&dir.join(names::SLURM_LOCK)).with_context(|| format!("locking {}", dir.display()))?;
    let submissions = super::submissions(request.run_dir)?;
    let live = queue::live(&super::job_ids(&submissions))?;
    let task_of = super::task_of_trial(&submissions);
    let folder = RunFolder::open(request.run_dir)?;
    let mut submitted = Submitted::default();
    let mut pending = Vec::new();
    for id in request.trials {
        let state = folder.trial(id);
        match state.as_ref().map(|s| s.status) {
            Some(TrialStatus::Completed) => submitted.completed += 1,
            Some(TrialStatus::Failed) if !request.retry_failed => submitted.failed += 1,
            // Left at a rung: the workers that judged it decide whether it goes on.
            Some(TrialStatus::Pruned) if request.workers.is_some() => submitted.pruned += 1,
            _ => match (state.and_then(|s| s.holder), task_of.get(id).filter(|task| live.contains_key(*task))) {
                (Some(held), _) => submitted.owned.push((id.clone(), held.owner.to_string())),
                (None, Some(task)) => submitted.owned.push((id.clone(), format!("task {task} ({})", live[task].to_lowercase()))),
                (None, None) => pending.push(id.clone()),
            },
        }
    }
    if let Some(workers) = request.workers {
        // The workers decide what trains: any unfinished trial, or a
        // search with suggestions left (`trials` is what it made so far),
        // needs them, unless an array of them still runs.
        submitted.workers_live = submissions.iter().filter(|s| s.workers > 0).map(|s| s.job_id.clone()).find(|id| live.keys().any(|task| task.split('_').next() == Some(id.as_str())));
        if submitted.workers_live.is_some() || (pending.is_empty() && submitted.owned.is_empty() && !request.search_left) {
            return Ok(submitted);
        }
        return submit_array(request, &dir, submissions.len() + 1, workers, None, submitted);
    }
    if pending.is_empty() {
        return Ok(submitted);
    }
    let number = submissions.len() + 1;
    let trial_list = dir.join(format!("array-{number}.trials"));
    runfolder::atomic::write(&trial_list, (pending.join("\n") + "\n").as_bytes()).with_context(|| format!("writing {}", trial_list.display()))?;
    let tasks = pending.len();
    submit_array(request, &dir, number, tasks, Some((&trial_list, pending)), submitted)
}

/// Writes array `number`'s script (one task per trial of `trials`, or
/// `tasks` workers), submits it and records the submission.
fn submit_array(request: &Request, dir: &Path, number: usize, tasks: usize, trials: Option<(&Path, Vec<String>)>, mut submitted: Submitted) -> Result<Submitted> {
    let script_path = dir.join(format!("array-{number}.sbatch"));
    let script = Script {
        job_name: &request.job_name,
        tasks,
        ranks: request.ranks,
        logs: &dir.join(names::SLURM_LOGS),
        trial_list: trials.as_ref().map(|(list, _)| *list),
        workdir: &request.workdir,
        exports: &request.exports,
        command: &request.command,
    };
    runfolder::atomic::write(&script_path, script.render(request.slurm).as_bytes()).with_context(|| format!("writing {}", script_path.display()))?;
    let out = commands::run("sbatch", &["--parsable".into(), script_path.display().to_string()])?;
    // `--parsable` prints `JOBID` or `JOBID;CLUSTER`.
    let job_id = out.trim().split(';').next().filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
    let job_id = job_id.ok_or_else(|| anyhow!("sbatch did not print a job id: {out:?}"))?.to_string();
    let workers = if trials.is_some() { 0 } else { tasks };
    let trials = trials.map(|(_, ids)| ids).unwrap_or_default();
    let submission = Submission { job_id, script: script_path, trials, workers, submitted_ms: runfolder::record::now_ms() };
    super::record(request.run_dir, &submission)?;
    submitted.submission = Some(submission);
    Ok(submitted)
}
