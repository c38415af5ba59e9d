//! Running a sweep's trials: skip those completed in an earlier run, then
//! train the rest one after another in this process ([`local`]) or several
//! at once in worker processes ([`workers`], speaking [`protocol`]). Either
//! way [`session`] records each trial the same way.
pub mod local;
pub mod protocol;
pub mod session;
pub mod workers;

use crate::store::{Store, COMPLETED};
use anyhow::Result;
pub use session::{Job, Sinks, SweepDisplay, Tally};

/// Runs `jobs`, at most `parallel` at a time; `fresh` runs completed ones
/// again.
pub fn run(jobs: &[Job], store: &mut Store, fresh: bool, parallel: usize, sinks: &Sinks) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut pending = Vec::new();
    for job in jobs {
        let trial = &job.trial;
        if !fresh && store.status(&trial.id).as_deref() == Some(COMPLETED) {
            sinks.display.line(&format!("skip  {} {} (completed in an earlier run)", trial.id, trial.label()));
            tally.skipped += 1;
            sinks.display.advance();
        } else {
            pending.push(job);
        }
    }
    if parallel <= 1 {
        local::run(&pending, store, sinks, &mut tally)?;
    } else {
        workers::run(&pending, parallel, store, sinks, &mut tally)?;
    }
    Ok(tally)
}
