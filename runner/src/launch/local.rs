//! Runs trials one after another in this process, and keeps going when one
//! fails (a NaN loss, a libtorch error, even a panic inside libtorch's
//! bindings), so one bad configuration never costs the rest of the sweep.
//! A stop request (a signal) ends the trial in training and starts no other.
//! Under torchrun or srun each trial trains on every process they started,
//! this one rank 0 ([`World`]).
use super::queue::{Ended, Queue};
use super::session::{Session, Sinks, Tally};
use super::world::World;
use crate::store::Store;
use crate::train;
use anyhow::Result;
use std::panic::{self, AssertUnwindSafe};

pub fn run(queue: &mut Queue, store: &Store, world: Option<&World>, sinks: &Sinks, tally: &mut Tally) -> Result<()> {
    while crate::signals::requested().is_none() {
        let Some(task) = queue.next(sinks, true)? else { break };
        let job = task.job;
        let Some(mut session) = Session::open(&job.trial, store, task.fresh, sinks, tally)? else { continue };
        let dir = store.folder.trial_dir(&job.trial.id);
        let resume = session.resume.as_ref().map(|r| r.path.clone());
        let (config, resume, until) = (&job.trial.config, resume.as_deref(), task.until);
        let result = catch_panics(|| match world {
            None => train::train(config, job.data, &train::Placement { device: job.device, ranks: None, dir: &dir, resume, until }, &mut session),
            Some(world) => {
                let device = world.launched.device(job.device)?;
                let ranks = world.lead(World::assignment(config, &dir, resume, until), device)?;
                train::train(config, job.data, &train::Placement { device, ranks: Some(&ranks), dir: &dir, resume, until }, &mut session)
            }
        });
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
