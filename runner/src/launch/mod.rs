//! Running a sweep's trials: skip those completed in an earlier run, then
//! train the rest one after another in this process ([`local`]) or several
//! at once in worker processes ([`workers`], speaking [`protocol`]). Either
//! way [`session`] claims and records each trial the same way, so several
//! `bertlab run`s on one folder split the trials between them. On a
//! cluster, [`slurm`] submits them as job arrays whose tasks each run one
//! trial through the same session. What to train next comes from
//! [`queue`]: every trial once, or stretches between early stopping's
//! rungs ([`early_stop`]); a [`search`] adds trials as it suggests them.
//! A trial on several devices trains in a worker, which starts its other
//! ranks ([`ranks`]); or here, with the processes torchrun or srun started
//! beside this one ([`world`]).
pub mod early_stop;
pub mod local;
pub mod protocol;
pub mod queue;
pub mod ranks;
pub mod search;
pub mod session;
pub mod slurm;
pub mod workers;
pub mod world;

use crate::store::Store;
use runfolder::TrialStatus;
use anyhow::Result;
pub use session::{Job, Sinks, SweepDisplay, Tally};

/// How a sweep runs its trials.
pub struct Options<'w> {
    /// Run completed trials again, and unfinished ones from the start.
    pub fresh: bool,
    /// Trials at once (more than one: each in a worker process).
    pub parallel: usize,
    /// Ranks each trial trains on (`train.devices`; more than one: each
    /// trial in a worker process, which starts the other ranks).
    pub devices: usize,
    /// Times a trial whose worker died is given to a new one.
    pub retries: u32,
    /// `[sweep.early_stop]`'s rules, when the experiment has them.
    pub early_stop: Option<early_stop::Rules>,
    /// The processes torchrun or srun started, this one their rank 0:
    /// every trial trains here with them.
    pub world: Option<&'w world::World>,
}

/// Runs `jobs`, then the `search`'s new suggestions, as `options` say.
pub fn run<'a>(jobs: &[&'a Job<'a>], search: Option<search::Searcher<'a>>, store: &Store, options: &Options, sinks: &Sinks) -> Result<Tally> {
    let fresh = options.fresh;
    let mut tally = Tally::default();
    let mut pending = Vec::new();
    for &job in jobs {
        let trial = &job.trial;
        if !fresh && store.status(&trial.id) == Some(TrialStatus::Completed) {
            sinks.display.line(&format!("skip  {} {} (completed in an earlier run)", trial.id, trial.label()));
            tally.skipped += 1;
            sinks.display.advance();
        } else {
            pending.push(job);
        }
    }
    let mut queue = queue::Queue::new(pending, search, store, fresh, options.early_stop.as_ref(), tally.skipped > 0)?;
    if options.parallel <= 1 && (options.devices <= 1 || options.world.is_some()) {
        local::run(&mut queue, store, options.world, sinks, &mut tally)?;
    } else {
        workers::run(&mut queue, options.parallel, options.retries, store, sinks, &mut tally)?;
    }
    Ok(tally)
}
