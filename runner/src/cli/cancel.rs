//! `bertlab cancel RUN_DIR`: cancels the run folder's Slurm jobs, queued
//! and running tasks alike. Running tasks get SIGTERM and checkpoint on the
//! way out (the job is marked cancelled first, so they do not requeue
//! themselves); submitting the experiment again resumes their trials.
use crate::launch::slurm::{self, commands, queue};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct CancelArgs {
    /// A run folder its trials were submitted from with --launcher slurm.
    run_dir: PathBuf,
}

pub fn cancel(args: CancelArgs) -> Result<i32> {
    let submissions = slurm::submissions(&args.run_dir)?;
    if submissions.is_empty() {
        return Err(crate::error::InputError::new(format!("no Slurm job was submitted for {} (`bertlab run FILE --launcher slurm` submits)", args.run_dir.display())).into());
    }
    let live = queue::live(&slurm::job_ids(&submissions))?;
    let mut jobs: Vec<String> = live.keys().filter_map(|task| task.split_once('_')).map(|(job, _)| job.to_string()).collect();
    jobs.sort();
    jobs.dedup();
    if jobs.is_empty() {
        println!("nothing to cancel: no task of the {} jobs submitted for {} is queued or running", submissions.len(), args.run_dir.display());
        return Ok(0);
    }
    slurm::mark_cancelled(&args.run_dir, &jobs)?;
    commands::run("scancel", &jobs)?;
    println!(
        "cancelled Slurm jobs {} ({} tasks); running trials checkpoint on the way out, and submitting the experiment again resumes them",
        jobs.join(", "),
        live.len()
    );
    Ok(0)
}
