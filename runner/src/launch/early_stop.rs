//! Early stopping's decisions (`[sweep.early_stop]`). Trials train from
//! rung to rung (ASHA: `min_steps × eta^k`; the median rule: every
//! evaluation from `min_steps`); at each rung the trial is evaluated,
//! checkpointed, and recorded `pruned` until a decision lets it go on from
//! that checkpoint, so no step is ever trained twice.
//!
//! - **ASHA** (asynchronous successive halving, Li et al. 2020): a trial
//!   goes on from rung k while it is among the best ⌊n/eta⌋ of the n trials
//!   that reached rung k so far. One that is not waits there, and is
//!   promoted later if enough trials reach the rung behind it. A free slot
//!   takes a promotion first (from the highest rung down), then a new trial.
//!   A grid is finite: while no trial has reached its end, once none is
//!   new, running or promotable, the best trial waiting at the highest rung
//!   goes on, so the sweep trains at least one trial to its end.
//! - **Median rule** (Golovin et al. 2017): at every evaluation from
//!   `min_steps` on, a trial whose best value so far is worse than the
//!   median of the other trials' running averages (the mean of their values
//!   at the evaluations up to this one) is stopped for good; the first
//!   trial at a step always goes on.
//!
//! New trials start in the order of their ids, which are hashes: a fixed
//! pseudo-random order (as ASHA samples configurations), the same on every
//! run whichever trials are left. Every arrival, promotion
//! and final pruning is one line of `early-stop.jsonl` in the run folder,
//! written under a lock and replayed before each decision, so a killed and
//! resumed run, or several processes on one folder, decide as one
//! uninterrupted run would.
use super::queue::{Task, Unstarted};
use super::search::Searcher;
use super::session::{Job, Sinks};
use crate::config::early_stop::{EarlyStop, Method};
use crate::store::{self, Store};
use anyhow::Result;
use runfolder::decisions::{self, EarlyStopEntry as Entry};
use runfolder::journal::Journal;
use runfolder::{RunFolder, TrialStatus};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// What trials are judged by.
#[derive(Debug, Clone)]
pub struct Rules {
    pub settings: EarlyStop,
    /// The experiment's metric (an evaluated one) and its goal.
    pub metric: String,
    pub maximize: bool,
}

/// The decisions so far, as the log replays them.
#[derive(Default)]
struct State {
    /// Each rung's arrivals, in order.
    reached: BTreeMap<i64, Vec<(String, Option<f64>)>>,
    promoted: HashSet<(String, i64)>,
    /// Trials with a decision at a rung (promoted, waiting or stopped).
    decided: HashSet<(String, i64)>,
    stopped: HashSet<String>,
}

impl State {
    fn apply(&mut self, entry: &Entry) {
        match entry {
            Entry::Reached { trial, rung, value } => {
                let arrivals = self.reached.entry(*rung).or_default();
                if !arrivals.iter().any(|(t, _)| t == trial) {
                    arrivals.push((trial.clone(), *value));
                }
            }
            Entry::Promoted { trial, rung, .. } => {
                self.promoted.insert((trial.clone(), *rung));
                self.decided.insert((trial.clone(), *rung));
            }
            Entry::Waits { trial, rung } => {
                self.decided.insert((trial.clone(), *rung));
            }
            Entry::Stopped { trial, rung } => {
                self.stopped.insert(trial.clone());
                self.decided.insert((trial.clone(), *rung));
            }
        }
    }

    fn has_reached(&self, trial: &str, rung: i64) -> bool {
        self.reached.get(&rung).is_some_and(|a| a.iter().any(|(t, _)| t == trial))
    }
}

pub struct Scheduler<'a> {
    rules: Rules,
    folder: RunFolder,
    log: Journal,
    state: State,
    /// This sweep's unfinished trials, by id.
    jobs: HashMap<String, &'a Job<'a>>,
    /// Trials never started, in their start order, then a search's.
    new: Unstarted<'a>,
    /// Stretches to train before anything else: trials promoted (or found
    /// cut short between rungs) and not yet given out.
    ready: VecDeque<Task<'a>>,
    fresh: bool,
    /// Some trial of the sweep reached its end.
    finished_one: bool,
}

impl<'a> Scheduler<'a> {
    /// The scheduler of the `pending` trials: those never started go in
    /// start order; those cut short between rungs, or promoted and not yet
    /// gone on, are ready; those waiting at a rung stay there.
    pub fn new(rules: Rules, pending: Vec<&'a Job<'a>>, search: Option<Box<Searcher<'a>>>, store: &Store, fresh: bool, finished_one: bool) -> Result<Scheduler<'a>> {
        let folder = store.folder.clone();
        let log = decisions::early_stop_log(&folder.root);
        if fresh {
            log.clear();
        }
        let mut scheduler = Scheduler {
            rules,
            folder,
            log,
            state: State::default(),
            jobs: HashMap::new(),
            new: Unstarted { listed: VecDeque::new(), search: None },
            ready: VecDeque::new(),
            fresh,
            finished_one: finished_one && !fresh,
        };
        scheduler.replay()?;
        let mut never_started = Vec::new();
        for job in pending {
            let id = &job.trial.id;
            scheduler.jobs.insert(id.clone(), job);
            let state = if fresh { None } else { scheduler.folder.trial(id) };
            match state.map(|s| (s.status, s.record.step)) {
                // A failed trial starts over, as a new one.
                None | Some((TrialStatus::Failed, _)) => never_started.push(job),
                // Paused at a rung: promoted there already, waiting, or
                // not judged yet (killed before its decision was written),
                // which it is now, as it would have been then.
                Some((TrialStatus::Pruned, rung)) => {
                    let promoted = scheduler.state.promoted.contains(&(id.clone(), rung));
                    if !scheduler.state.decided.contains(&(id.clone(), rung)) {
                        scheduler.arrive(job, rung, None)?;
                    } else if promoted {
                        scheduler.ready.push_back(Task { job, until: scheduler.after(job, rung), fresh: false });
                    }
                }
                // Cut short between rungs: on to the first rung past the
                // checkpoint it resumes from.
                Some(_) => {
                    let from = store::newest_checkpoint(&scheduler.folder.trial_dir(id)).map_or(0, |c| c.step);
                    scheduler.ready.push_back(Task { job, until: scheduler.after(job, from), fresh: false });
                }
            }
        }
        // Trial ids are hashes: their order is a fixed pseudo-random one,
        // and the same for whichever trials are left. A search's go in the
        // order it suggested them.
        if search.is_none() {
            never_started.sort_by(|a, b| a.trial.id.cmp(&b.trial.id));
        }
        scheduler.new = Unstarted { listed: never_started.into(), search };
        Ok(scheduler)
    }

    /// The first rung of `job` after `step`; `None`: on to its end.
    fn after(&self, job: &Job, step: i64) -> Option<i64> {
        self.rules.settings.rungs(&job.trial.config.train).into_iter().find(|&r| r > step)
    }

    /// The next stretch to train; `idle`: nothing of the sweep is training.
    pub fn next(&mut self, sinks: &Sinks, idle: bool) -> Result<Option<Task<'a>>> {
        if let Some(task) = self.ready.pop_front() {
            return Ok(Some(task));
        }
        // Suggestions other processes made are trials to judge here too.
        self.new.refresh()?;
        if let Some(task) = self.promotion(sinks, idle)? {
            return Ok(Some(task));
        }
        let Some(job) = self.new.next(sinks)? else {
            // A search that just found no room left ends the sweep here:
            // the end-of-sweep rule gets its turn.
            return self.promotion(sinks, idle);
        };
        self.jobs.insert(job.trial.id.clone(), job);
        Ok(Some(Task { job, until: self.after(job, 0), fresh: self.fresh }))
    }

    /// ASHA: a trial to promote now, if any (see the module's doc).
    fn promotion(&mut self, sinks: &Sinks, idle: bool) -> Result<Option<Task<'a>>> {
        if self.rules.settings.method == Method::Asha {
            let _turn = self.lock()?;
            self.replay()?;
            let promotion = match self.promotable() {
                Some(promotion) => Some((promotion, false)),
                None if idle && self.new.is_empty() && !self.finished_one && !self.others_going() => self.last_standing().map(|p| (p, true)),
                None => None,
            };
            if let Some(((job, rung), finishing)) = promotion {
                self.append(&Entry::Promoted { trial: job.trial.id.clone(), rung, finishing })?;
                let why = if finishing { "no trial has reached its end: the best at the highest rung goes on" } else { "among the best at its rung now" };
                let line = format!("promote {} {} from step {rung}: {why}", job.trial.id, job.trial.label());
                self.folder.log(&job.trial.id, &line);
                sinks.display.line(&line);
                return Ok(Some(Task { job, until: self.after(job, rung), fresh: false }));
            }
        }
        Ok(None)
    }

    /// A trial of the sweep by id: this process's, or a suggestion another
    /// one made.
    fn job(&self, id: &str) -> Option<&'a Job<'a>> {
        self.jobs.get(id).copied().or_else(|| self.new.job(id))
    }

    /// Whether another process sharing the folder (a Slurm worker, another
    /// `run`) trains a trial of the sweep now, or has brought one to its
    /// end: then the end-of-sweep rule below is not this process's to apply.
    fn others_going(&self) -> bool {
        let ids = self.jobs.values().copied().chain(self.new.suggested());
        ids.map(|job| &job.trial.id).any(|id| self.folder.trial(id).is_some_and(|s| s.status == TrialStatus::Completed || (s.status == TrialStatus::Running && s.holder.is_some())))
    }

    /// ASHA at the end of a finite sweep: the best trial waiting at the
    /// highest rung that has one.
    fn last_standing(&self) -> Option<(&'a Job<'a>, i64)> {
        self.state.reached.iter().rev().find_map(|(&rung, arrivals)| {
            let waiting = self.ranked(arrivals).into_iter().find(|t| !self.state.promoted.contains(&(t.to_string(), rung)) && self.job(t).is_some())?;
            Some((self.job(waiting)?, rung))
        })
    }

    /// ASHA: a trial waiting at a rung that is now among the best ⌊n/eta⌋
    /// there, from the highest rung down.
    fn promotable(&self) -> Option<(&'a Job<'a>, i64)> {
        for (&rung, arrivals) in self.state.reached.iter().rev() {
            let best = self.ranked(arrivals);
            let keep = arrivals.len() / self.rules.settings.eta as usize;
            for trial in best.into_iter().take(keep) {
                if !self.state.promoted.contains(&(trial.to_string(), rung)) {
                    if let Some(job) = self.job(trial) {
                        return Some((job, rung));
                    }
                }
            }
        }
        None
    }

    /// The trials of `arrivals`, best first (a value that is not a number
    /// last; ties in arrival order).
    fn ranked<'s>(&self, arrivals: &'s [(String, Option<f64>)]) -> Vec<&'s str> {
        let mut order: Vec<&(String, Option<f64>)> = arrivals.iter().collect();
        let key = |value: Option<f64>| match value.filter(|v| v.is_finite()) {
            Some(v) if self.rules.maximize => -v,
            Some(v) => v,
            None => f64::INFINITY,
        };
        order.sort_by(|a, b| key(a.1).total_cmp(&key(b.1)));
        order.into_iter().map(|(t, _)| t.as_str()).collect()
    }

    /// `job` paused at `rung`: records its value there and decides.
    pub fn reached(&mut self, job: &'a Job<'a>, rung: i64, sinks: &Sinks) -> Result<()> {
        self.arrive(job, rung, Some(sinks))
    }

    /// A trial of the sweep reached its end.
    pub fn finished(&mut self) {
        self.finished_one = true;
    }

    fn arrive(&mut self, job: &'a Job<'a>, rung: i64, sinks: Option<&Sinks>) -> Result<()> {
        let id = job.trial.id.clone();
        let value = self.value_at(&id, rung)?;
        let _turn = self.lock()?;
        self.replay()?;
        if self.state.decided.contains(&(id.clone(), rung)) {
            // Another process sharing the folder judged it meanwhile.
            return Ok(());
        }
        if !self.state.has_reached(&id, rung) {
            self.append(&Entry::Reached { trial: id.clone(), rung, value })?;
        }
        let arrivals = &self.state.reached[&rung];
        let (goes_on, why) = match self.rules.settings.method {
            Method::Asha => {
                let keep = arrivals.len() / self.rules.settings.eta as usize;
                let rank = self.ranked(arrivals).iter().position(|t| *t == id).expect("arrived");
                (rank < keep, format!("{} of {} at this rung, the best {keep} go on", rank + 1, arrivals.len()))
            }
            Method::Median => match self.median_of_others(&id, rung) {
                None => (true, "the first at this rung".to_string()),
                Some(median) => {
                    let best = self.best_so_far(&id, rung);
                    let worse = match best {
                        Some(b) if self.rules.maximize => b < median,
                        Some(b) => b > median,
                        None => true,
                    };
                    (!worse, format!("best so far {} against the others' median {median:.4}", best.map_or("not a number".into(), |b| format!("{b:.4}"))))
                }
            },
        };
        let shown = value.map_or("not a number".into(), |v| format!("{v:.4}"));
        let verdict = if goes_on {
            self.append(&Entry::Promoted { trial: id.clone(), rung, finishing: false })?;
            self.ready.push_back(Task { job, until: self.after(job, rung), fresh: false });
            "goes on"
        } else if self.rules.settings.method == Method::Median {
            self.append(&Entry::Stopped { trial: id.clone(), rung })?;
            "stopped"
        } else {
            self.append(&Entry::Waits { trial: id.clone(), rung })?;
            "waits (pruned)"
        };
        let line = format!("rung  {} {} at step {rung}: {} {shown}, {why}: {verdict}", id, job.trial.label(), self.rules.metric);
        self.folder.log(&id, &line);
        if let Some(sinks) = sinks {
            sinks.display.line(&line);
        }
        Ok(())
    }

    /// The median over the other trials at `rung` of their running
    /// averages: the mean of each one's values at the rungs up to `rung`.
    fn median_of_others(&self, trial: &str, rung: i64) -> Option<f64> {
        let mut averages: Vec<f64> = self.state.reached[&rung]
            .iter()
            .filter(|(t, _)| t != trial)
            .filter_map(|(t, _)| {
                let values: Vec<f64> = self.values_up_to(t, rung);
                (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
            })
            .collect();
        if averages.is_empty() {
            return None;
        }
        averages.sort_by(f64::total_cmp);
        let n = averages.len();
        Some(if n % 2 == 1 { averages[n / 2] } else { (averages[n / 2 - 1] + averages[n / 2]) / 2.0 })
    }

    fn best_so_far(&self, trial: &str, rung: i64) -> Option<f64> {
        let values = self.values_up_to(trial, rung);
        values.into_iter().reduce(|a, b| if self.rules.maximize { a.max(b) } else { a.min(b) })
    }

    /// A trial's finite values at the rungs up to `rung`.
    fn values_up_to(&self, trial: &str, rung: i64) -> Vec<f64> {
        self.state.reached.range(..=rung).filter_map(|(_, a)| a.iter().find(|(t, _)| t == trial).and_then(|(_, v)| *v)).filter(|v| v.is_finite()).collect()
    }

    /// The trial's metric at `step`, from its points.
    fn value_at(&self, trial: &str, step: i64) -> Result<Option<f64>> {
        let mut value = None;
        runfolder::points::for_each(&self.folder.trial_dir(trial), |p| {
            if p.step == step && p.key == self.rules.metric {
                value = Some(p.value);
            }
        })?;
        Ok(value.filter(|v| v.is_finite()))
    }

    fn lock(&self) -> Result<runfolder::claim::Claim> {
        self.log.lock()
    }

    fn replay(&mut self) -> Result<()> {
        let mut state = State::default();
        for entry in self.log.read::<Entry>()? {
            state.apply(&entry);
        }
        self.state = state;
        Ok(())
    }

    /// Appends under the lock, after a replay.
    fn append(&mut self, entry: &Entry) -> Result<()> {
        self.log.append(entry)?;
        self.state.apply(entry);
        Ok(())
    }
}
