//! Calling Slurm's client commands (`sbatch`, `squeue`, `scontrol`,
//! `scancel`): their output on success, one line naming the command and
//! what it said otherwise.
use anyhow::{anyhow, Result};
use std::process::Command;

/// Runs `program args`; its standard output when it succeeds.
pub fn run(program: &str, args: &[String]) -> Result<String> {
    let output = Command::new(program).args(args).output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("`{program}` was not found: --launcher slurm needs Slurm's commands on PATH (run it on a login node of the cluster)"),
        _ => anyhow!("cannot run `{program}`: {e}"),
    })?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr).trim().replace('\n', "; ");
        return Err(anyhow!("`{program} {}` failed ({}): {said}", args.join(" "), output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
