//! `bertlab sync RUN_DIR`: delivers to MLflow the trials a run could not
//! (its `tracking-spool/`), sending only what the server lacks.
use crate::track;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct SyncArgs {
    /// A run folder, e.g. runs/quickstart.
    run_dir: PathBuf,
}

pub fn sync(args: SyncArgs) -> Result<i32> {
    // An old-layout folder moves to the per-trial one first.
    crate::store::existing(&args.run_dir)?;
    match track::deliver_spool(&args.run_dir) {
        None => {
            println!("nothing to deliver: every trial of {} is in MLflow", args.run_dir.display());
            Ok(0)
        }
        Some(Ok(done)) => {
            let left = track::pending(&args.run_dir);
            println!("delivered {} trials ({} points); {left} still waiting", done.trials, done.points);
            Ok(i32::from(left > 0))
        }
        Some(Err(e)) => {
            eprintln!("error: {e}; the spool is kept, run `bertlab sync` again later");
            Ok(1)
        }
    }
}
