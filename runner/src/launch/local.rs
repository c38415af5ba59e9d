//! Runs trials one after another in this process, and keeps going when one
//! fails (a NaN loss, a libtorch error, even a panic inside libtorch's
//! bindings), so one bad configuration never costs the rest of the sweep.
//! A stop request (a signal) ends the trial in training and starts no other.
use super::queue::{Ended, Queue};
use super::session::{Session, Sinks, Tally};
use crate::store::Store;
use crate::train;
use anyhow::Result;
use std::panic::{self, AssertUnwindSafe};

pub fn run(queue: &mut Queue, store: &Store, sinks: &Sinks, tally: &mut Tally) -> Result<()> {
    while crate::signals::requested().is_none() {
        let Some(task) = queue.next(sinks, true)? else { break };
        let job = task.job;
        let Some(mut session) = Session::open(&job.trial, store, task.fresh, sinks, tally)? else { continue };
        let dir = store.folder.trial_dir(&job.trial.id);
        let resume = session.resume.as_ref().map(|r| r.path.clone());
        let placement = train::Placement { device: job.device, ranks: None, dir: &dir, resume: resume.as_deref(), until: task.until };
        let result = catch_panics(|| train::train(&job.trial.config, job.data, &placement, &mut session));
        let ended = Ended::of(&result);
        session.close(result, sinks, tally)?;
        queue.ended(&task, ended, sinks)?;
    }
    Ok(())
}

/// Runs `f`, turning a panic into an error carrying its message. tch's
/// non-`f_` methods panic on libtorch errors (a shape mismatch, out of
/// memory); for a sweep that is one failed trial, not a crashed run.
pub fn catch_panics<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    panic::set_hook(previous);
    result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(anyhow::anyhow!("libtorch error: {message}"))
    })
}
