//! What a sweep trains next. Without early stopping: each pending trial
//! once, to its end, in plan order, then (`[sweep.search]`) each new
//! suggestion. With `[sweep.early_stop]`: the trials in stretches from
//! rung to rung, as [`early_stop`] decides, so the launchers
//! ([`super::local`], [`super::workers`]) only ever ask for the next task
//! and say how each ended.
use super::early_stop::{Rules, Scheduler};
use super::search::Searcher;
use super::session::{Job, Sinks};
use crate::store::Store;
use crate::train::{Outcome, Stopped};
use anyhow::Result;

/// One stretch of training: a trial from where it stands to `until` (a
/// rung) or to its end.
#[derive(Clone, Copy)]
pub struct Task<'a> {
    pub job: &'a Job<'a>,
    pub until: Option<i64>,
    /// Start the trial over (`--fresh`), for its first stretch in this run only.
    pub fresh: bool,
}

pub enum Queue<'a> {
    Plain { new: Unstarted<'a>, fresh: bool },
    EarlyStop(Box<Scheduler<'a>>),
}

/// Trials not started yet: those listed, then a search's suggestions.
pub struct Unstarted<'a> {
    pub listed: std::collections::VecDeque<&'a Job<'a>>,
    pub search: Option<Box<Searcher<'a>>>,
}

impl<'a> Unstarted<'a> {
    pub fn next(&mut self, sinks: &Sinks) -> Result<Option<&'a Job<'a>>> {
        match (self.listed.pop_front(), &mut self.search) {
            (Some(job), _) => Ok(Some(job)),
            (None, Some(search)) => search.next(sinks),
            (None, None) => Ok(None),
        }
    }

    /// Nothing is left to start, nor to suggest.
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty() && self.search.as_ref().is_none_or(|s| s.is_done())
    }

    /// Reads the suggestions other processes made since the last look.
    pub fn refresh(&mut self) -> Result<()> {
        self.search.as_mut().map_or(Ok(()), |s| s.refresh())
    }

    /// A suggested trial by id.
    pub fn job(&self, id: &str) -> Option<&'a Job<'a>> {
        self.search.as_ref()?.job(id)
    }

    /// Every trial suggested so far.
    pub fn suggested(&self) -> Vec<&'a Job<'a>> {
        self.search.as_ref().map(|s| s.jobs()).unwrap_or_default()
    }
}

impl<'a> Queue<'a> {
    /// The queue of `pending` trials (those not completed), then of the
    /// `search`'s new suggestions; judged by `rules` when the experiment
    /// stops trials early. `completed_before`: some trial of the sweep was
    /// completed already.
    pub fn new(pending: Vec<&'a Job<'a>>, search: Option<Searcher<'a>>, store: &Store, fresh: bool, rules: Option<&Rules>, completed_before: bool) -> Result<Queue<'a>> {
        let search = search.map(Box::new);
        match rules {
            Some(rules) => Ok(Queue::EarlyStop(Box::new(Scheduler::new(rules.clone(), pending, search, store, fresh, completed_before)?))),
            None => Ok(Queue::Plain { new: Unstarted { listed: pending.into(), search }, fresh }),
        }
    }

    /// The next stretch to train, if there is one now; `idle`: nothing of
    /// the sweep is training (early stopping may wait for a running trial's
    /// rung before it has more to give).
    pub fn next(&mut self, sinks: &Sinks, idle: bool) -> Result<Option<Task<'a>>> {
        match self {
            Queue::Plain { new, fresh } => Ok(new.next(sinks)?.map(|job| Task { job, until: None, fresh: *fresh })),
            Queue::EarlyStop(scheduler) => scheduler.next(sinks, idle),
        }
    }

    /// A task's session is closed, and how it ended.
    pub fn ended(&mut self, task: &Task<'a>, ended: Ended, sinks: &Sinks) -> Result<()> {
        let Queue::EarlyStop(scheduler) = self else { return Ok(()) };
        match ended {
            Ended::Rung(rung) => scheduler.reached(task.job, rung, sinks),
            Ended::Completed => {
                scheduler.finished();
                Ok(())
            }
            Ended::Otherwise => Ok(()),
        }
    }
}

/// How a task ended, for the queue.
pub enum Ended {
    /// Paused at this rung.
    Rung(i64),
    /// Its trial reached its end.
    Completed,
    /// Failed or interrupted.
    Otherwise,
}

impl Ended {
    pub fn of(result: &Result<Outcome>) -> Ended {
        match (Stopped::rung_of(result), result.is_ok()) {
            (Some(rung), _) => Ended::Rung(rung),
            (None, true) => Ended::Completed,
            (None, false) => Ended::Otherwise,
        }
    }
}
