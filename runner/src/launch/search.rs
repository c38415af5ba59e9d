//! `[sweep.search]` at run time: when a worker is free and the search has
//! budget left, the next suggestion, from what the run folder says of the
//! earlier ones. Each suggestion is one line of `search.jsonl` (its draw,
//! its point and its trials, one per seed), written under a lock after
//! reading the others, so a resumed run, or several processes sharing the
//! folder, go on with the same search.
//!
//! What the search sees of an earlier suggestion is the mean over its
//! seeds of the metric's last value, with how far its trials got: every
//! one at its end, stopped early (the shortest of them), failed (a value
//! that is not a number), or still training or not yet started, which
//! makes it a constant liar ([`crate::sweep::tpe`]). With `--jobs 1` that
//! is the same at each suggestion of a run and of a killed and resumed one.
use super::session::{Job, Sinks};
use crate::sweep::search::{Point, Search};
use crate::sweep::tpe::{Observed, Outcome};
use crate::sweep::{Expansion, Planned};
use crate::trial::Trial;
use anyhow::{bail, Result};
use runfolder::decisions::{self, Suggestion};
use runfolder::journal::Journal;
use runfolder::names::SEARCH_LOG;
use runfolder::{RunFolder, TrialStatus};
use std::cell::OnceCell;
use std::collections::VecDeque;

/// Draws in a row the constraints may drop, or that repeat an earlier
/// suggestion, before the search ends early: the space has no room left.
const REDRAWS: u64 = 1000;

/// A suggestion's trials as jobs: made once, as the suggestion is made or
/// read back, and kept for the life of the run (the queue hands out
/// references to them).
pub type Slots<'a> = [OnceCell<Job<'a>>];

/// The slots a search needs: one per trial it can make.
pub fn slots<'a>(expansion: &Expansion) -> Vec<OnceCell<Job<'a>>> {
    (0..expansion.len()).map(|_| OnceCell::new()).collect()
}

/// The points suggested so far in the run folder `root`, in order (for
/// `plan`).
pub fn suggested(root: &std::path::Path, search: &Search) -> Result<Vec<Point>> {
    let mut log = decisions::search_log(root);
    let entries: Vec<Suggestion> = log.read()?;
    Ok(entries.iter().map(|s| point_of(search, s)).collect())
}

/// A suggestion's point, in the search's key order.
fn point_of(search: &Search, suggestion: &Suggestion) -> Point {
    search.keys().filter_map(|k| suggestion.point.get(k).map(|v| (k.to_string(), v.clone()))).collect()
}

pub struct Searcher<'a> {
    expansion: &'a Expansion<'a>,
    search: &'a Search,
    slots: &'a Slots<'a>,
    /// Completes a suggested trial with its data and device.
    bind: &'a dyn Fn(Trial) -> Result<Job<'a>>,
    folder: RunFolder,
    log: Journal,
    metric: String,
    maximize: bool,
    /// The suggestions so far and the slots of their trials.
    made: Vec<(Suggestion, Vec<&'a Job<'a>>)>,
    /// The other seeds of the suggestion given out last.
    queued: VecDeque<&'a Job<'a>>,
    /// No budget left, or no room left in the space.
    done: bool,
}

impl<'a> Searcher<'a> {
    /// The search of `expansion` in `folder`, with the suggestions made by
    /// earlier runs read back (`--fresh`: forgotten).
    pub fn new(
        expansion: &'a Expansion<'a>,
        slots: &'a Slots<'a>,
        bind: &'a dyn Fn(Trial) -> Result<Job<'a>>,
        folder: &RunFolder,
        fresh: bool,
    ) -> Result<Searcher<'a>> {
        let search = expansion.search().expect("an experiment with [sweep.search]");
        let experiment = &expansion.loaded().experiment.experiment;
        let log = decisions::search_log(&folder.root);
        if fresh {
            log.clear();
        }
        let mut searcher = Searcher {
            expansion,
            search,
            slots,
            bind,
            folder: folder.clone(),
            log,
            metric: experiment.metric.clone(),
            maximize: experiment.goal.as_str() == "maximize",
            made: Vec::new(),
            queued: VecDeque::new(),
            done: false,
        };
        searcher.replay()?;
        Ok(searcher)
    }

    /// The trials of every suggestion made so far, in order.
    pub fn jobs(&self) -> Vec<&'a Job<'a>> {
        self.made.iter().flat_map(|(_, jobs)| jobs.iter().copied()).collect()
    }

    /// A suggested trial by id.
    pub fn job(&self, id: &str) -> Option<&'a Job<'a>> {
        self.made.iter().flat_map(|(_, jobs)| jobs.iter().copied()).find(|job| job.trial.id == id)
    }

    /// No suggestion is left to make, nor a seed of one to give out.
    pub fn is_done(&self) -> bool {
        self.queued.is_empty() && (self.done || self.made.len() as u64 >= self.search.trials)
    }

    /// Reads the suggestions other processes made since the last look.
    pub fn refresh(&mut self) -> Result<()> {
        let _turn = self.log.lock()?;
        self.replay()
    }

    /// The next trial to start: another seed of the last suggestion, or
    /// the first of a new one; `None` once the search is done.
    pub fn next(&mut self, sinks: &Sinks) -> Result<Option<&'a Job<'a>>> {
        if let Some(job) = self.queued.pop_front() {
            return Ok(Some(job));
        }
        let _turn = self.log.lock()?;
        self.replay()?;
        if self.is_done() {
            return Ok(None);
        }
        let observed: Vec<Observed> = self.made.iter().map(|(s, jobs)| self.observed(s, jobs)).collect::<Result<_>>()?;
        let first = self.made.last().map_or(0, |(s, _)| s.draw + 1);
        for draw in first..first + REDRAWS {
            let point = self.search.suggest(draw, &observed)?;
            let trials = trials_of(self.expansion, point.clone())?;
            if trials.is_empty() {
                continue; // dropped by a constraint
            }
            if self.made.iter().any(|(s, _)| s.trials[0] == trials[0].id) {
                continue;
            }
            let suggestion = Suggestion { draw, point: point.iter().cloned().collect(), trials: trials.iter().map(|t| t.id.clone()).collect() };
            self.log.append(&suggestion)?;
            let pending = observed.iter().filter(|o| o.outcome == Outcome::Pending).count();
            let how = match ((observed.len() - pending) as u64) < self.search.startup {
                true => "random start-up draw".to_string(),
                false if pending > 0 => format!("TPE over {} observed, {pending} of them still training", observed.len()),
                false => format!("TPE over {} observed", observed.len()),
            };
            let jobs = self.place(suggestion, trials)?;
            sinks.display.line(&format!("search suggestion {} of {} (draw {draw}, {how}): {}", self.made.len(), self.search.trials, jobs[0].trial.label()));
            self.queued.extend(jobs[1..].iter().copied());
            return Ok(Some(jobs[0]));
        }
        sinks.display.line(&format!("search ends after {} suggestions: {REDRAWS} draws in a row were dropped by the constraints or repeated a suggestion", self.made.len()));
        self.done = true;
        Ok(None)
    }

    /// Reads the log, adding the suggestions other processes (or an earlier
    /// run) made since the last read.
    fn replay(&mut self) -> Result<()> {
        let entries: Vec<Suggestion> = self.log.read()?;
        // Beyond the budget (lowered since they were made): not this sweep's.
        let room = (self.search.trials as usize).saturating_sub(self.made.len());
        for suggestion in entries.into_iter().skip(self.made.len()).take(room) {
            if !same_keys(self.search, &suggestion) {
                bail!("{}: suggestion {} sets {} but the search is over {}: the experiment changed since the search started; run it with --fresh, or into another --out", self.folder.root.join(SEARCH_LOG).display(), self.made.len() + 1, suggestion.point.keys().cloned().collect::<Vec<_>>().join(", "), self.search.keys().collect::<Vec<_>>().join(", "));
            }
            let trials = trials_of(self.expansion, point_of(self.search, &suggestion))?;
            let ids: Vec<String> = trials.iter().map(|t| t.id.clone()).collect();
            if ids != suggestion.trials {
                bail!(
                    "{}: suggestion {} no longer makes the trials it made ({} now, {} then): the experiment changed since the search started; run it with --fresh, or into another --out",
                    self.folder.root.join(SEARCH_LOG).display(),
                    self.made.len() + 1,
                    ids.join(", "),
                    suggestion.trials.join(", ")
                );
            }
            self.place(suggestion, trials)?;
        }
        Ok(())
    }

    /// Puts a suggestion's trials in their slots.
    fn place(&mut self, suggestion: Suggestion, trials: Vec<Trial>) -> Result<Vec<&'a Job<'a>>> {
        let seeds = self.expansion.seeds().len();
        let start = self.made.len() * seeds;
        let mut jobs = Vec::with_capacity(trials.len());
        for (i, trial) in trials.into_iter().enumerate() {
            let slot = &self.slots[start + i];
            let _ = slot.set((self.bind)(trial)?);
            jobs.push(slot.get().expect("just set"));
        }
        self.made.push((suggestion, jobs.clone()));
        Ok(jobs)
    }

    /// What the search sees of one suggestion (see the module's doc).
    fn observed(&self, suggestion: &Suggestion, jobs: &[&Job]) -> Result<Observed> {
        let values = self.search.values(&point_of(self.search, suggestion));
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            let id = &job.trial.id;
            let state = self.folder.trial(id);
            let outcome = match state.as_ref().map(|s| (s.status, s.record.step)) {
                Some((TrialStatus::Completed, _)) => self.last_value(id)?.map_or(Outcome::Failed, Outcome::Complete),
                Some((TrialStatus::Pruned, step)) => self.last_value(id)?.map_or(Outcome::Failed, |value| Outcome::Pruned { step, value }),
                Some((TrialStatus::Failed, _)) => Outcome::Failed,
                _ => Outcome::Pending,
            };
            outcomes.push(outcome);
        }
        Ok(Observed { values, outcome: mean(&outcomes) })
    }

    /// The trial's last value of the metric, signed so that lower is
    /// better; `None` when it is not a number.
    fn last_value(&self, trial: &str) -> Result<Option<f64>> {
        let mut last: Option<(i64, f64)> = None;
        runfolder::points::for_each(&self.folder.trial_dir(trial), |p| {
            if p.key == self.metric && last.is_none_or(|(step, _)| p.step >= step) {
                last = Some((p.step, p.value));
            }
        })?;
        let sign = if self.maximize { -1.0 } else { 1.0 };
        Ok(last.map(|(_, v)| sign * v).filter(|v| v.is_finite()))
    }
}

/// Whether `suggestion` sets exactly the search's keys.
fn same_keys(search: &Search, suggestion: &Suggestion) -> bool {
    let mut ours: Vec<&str> = search.keys().collect();
    let mut theirs: Vec<&str> = suggestion.point.keys().map(String::as_str).collect();
    ours.sort();
    theirs.sort();
    ours == theirs
}

/// A point's trials, one per seed; none when a constraint drops it.
fn trials_of(expansion: &Expansion, point: Point) -> Result<Vec<Trial>> {
    let planned = expansion.suggestion(point)?;
    Ok(planned.into_iter().filter_map(|p| match p {
        Planned::Run(trial) => Some(trial),
        Planned::Dropped { .. } => None,
    }).collect())
}

/// One suggestion's outcome from its seeds': pending while any is, failed
/// if any failed, else the mean value, stopped early at the shortest
/// trial's step if any was.
fn mean(outcomes: &[Outcome]) -> Outcome {
    if outcomes.contains(&Outcome::Pending) {
        return Outcome::Pending;
    }
    if outcomes.contains(&Outcome::Failed) {
        return Outcome::Failed;
    }
    let mut shortest: Option<i64> = None;
    let mut sum = 0.0;
    for outcome in outcomes {
        match *outcome {
            Outcome::Complete(v) => sum += v,
            Outcome::Pruned { step, value } => {
                sum += value;
                shortest = Some(shortest.map_or(step, |s| s.min(step)));
            }
            _ => unreachable!("handled above"),
        }
    }
    let value = sum / outcomes.len() as f64;
    match shortest {
        Some(step) => Outcome::Pruned { step, value },
        None => Outcome::Complete(value),
    }
}
