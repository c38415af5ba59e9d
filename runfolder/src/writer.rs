//! Recording one trial while it trains, by the process that holds its
//! claim: points go to `points.tsv` through a small buffer that is made
//! durable every [`FLUSH_EVERY`] and at every evaluation, the record follows
//! with the step reached and the thinned curves, and at the end the record
//! gets the final row and the tables their parts. Memory stays bounded
//! whatever the step count: the buffer, and the curves' few thousand points.
use crate::claim::Claim;
use crate::curves::{Curves, Point};
use crate::names::column;
use crate::points::{MetricPoint, PointLog};
use crate::record::{self, now_ms, CheckpointMark, Owner, TrialRecord};
use crate::status::TrialStatus;
use crate::table::{Cell, Row};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// At most this long between a point and its being on disk.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// Bytes of points held before they are written, whatever the time.
const MAX_BUFFER: usize = 1 << 20;

pub struct TrialWriter {
    root: PathBuf,
    dir: PathBuf,
    claim: Claim,
    record: TrialRecord,
    log: PointLog,
    last_flush: Instant,
    /// The first write that failed (a full disk), naming its file: the
    /// trial stops with it.
    problem: Option<anyhow::Error>,
}

/// What a trial's first record says.
pub struct Start {
    pub trial_id: String,
    pub experiment: String,
    pub label: String,
    pub config: serde_json::Value,
    pub steps: i64,
    /// Its row as known before training (id, experiment, seed, swept keys).
    pub row: Row,
    /// The step of the checkpoint this attempt resumes from: the points
    /// after it are measured again, and replace the earlier ones.
    pub resume_from: Option<i64>,
}

/// Opens attempt `attempt` in the trial folder `dir`'s points, going on
/// from the checkpoint at `resume_from` (or from the start), with the
/// curves of the points it keeps.
fn attempt(dir: &std::path::Path, attempt: u32, resume_from: Option<i64>) -> Result<(PointLog, Curves)> {
    let points_path = || dir.join(crate::names::POINTS);
    let mut curves = Curves::default();
    if let Some(step) = resume_from {
        crate::points::for_each(dir, |p| {
            if p.step <= step {
                curves.push(&p.key, Point(p.step, p.value, p.wall_s));
            }
        })
        .with_context(|| format!("reading {}", points_path().display()))?;
    }
    let from_step = resume_from.map_or(0, |step| step + 1);
    let log = PointLog::open(dir, attempt, from_step).with_context(|| format!("opening {}", points_path().display()))?;
    Ok((log, curves))
}

impl TrialWriter {
    /// Starts a new attempt at the trial: its record says `running`. A
    /// resumed attempt keeps the curves up to its checkpoint's step.
    pub fn start(root: PathBuf, claim: Claim, start: Start) -> Result<TrialWriter> {
        let dir = root.join(crate::names::TRIALS_DIR).join(&start.trial_id);
        let earlier = record::read(&dir);
        let attempts = earlier.as_ref().map_or(0, |r| r.attempts) + 1;
        let (log, curves) = attempt(&dir, attempts, start.resume_from)?;
        let mut row = start.row;
        row.insert(column::STATUS.into(), Cell::Text(TrialStatus::Running.as_str().into()));
        let now = now_ms();
        let resumed = start.resume_from.and(earlier.as_ref());
        let record = TrialRecord {
            trial_id: start.trial_id,
            experiment: start.experiment,
            label: start.label,
            config: start.config,
            status: TrialStatus::Running,
            attempts,
            owner: Owner { host: crate::claim::host(), pid: std::process::id() },
            created_ms: earlier.as_ref().map_or(now, |r| r.created_ms),
            started_ms: now,
            updated_ms: now,
            step: start.resume_from.unwrap_or(0),
            steps: start.steps,
            row,
            curves,
            checkpoint: resumed.and_then(|r| r.checkpoint),
            retries: resumed.map_or(0, |r| r.retries),
        };
        record::write(&dir, &record).with_context(|| format!("writing {}", dir.join(crate::names::RECORD).display()))?;
        Ok(TrialWriter { root, dir, claim, record, log, last_flush: Instant::now(), problem: None })
    }

    pub fn record(&self) -> &TrialRecord {
        &self.record
    }

    pub fn point(&mut self, point: MetricPoint) {
        self.record.curves.push(&point.key, Point(point.step, point.value, point.wall_s));
        self.log.push(&point);
        // An evaluation is worth keeping at once; the rest rides the timer.
        if point.key.starts_with("eval/") || self.log.buffered() > MAX_BUFFER || self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    pub fn progress(&mut self, step: i64) {
        self.record.step = step;
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// Makes the points so far and the record durable; once another
    /// process has taken the trial over, writes nothing more.
    pub fn flush(&mut self) {
        if self.problem.is_some() || self.claim.lost() {
            return;
        }
        self.record.updated_ms = now_ms();
        let written = self
            .log
            .flush()
            .with_context(|| format!("writing {}", self.dir.join(crate::names::POINTS).display()))
            .and_then(|_| record::write(&self.dir, &self.record).with_context(|| format!("writing {}", self.dir.join(crate::names::RECORD).display())));
        if let Err(e) = written {
            self.problem.get_or_insert(e);
        }
        self.last_flush = Instant::now();
    }

    /// Whether another process took the trial over (this one's heartbeat
    /// looked stale to it): nothing this writer holds is written any more.
    pub fn lost(&self) -> bool {
        self.claim.lost()
    }

    /// Flushes, and says whether everything recorded so far is on disk: a
    /// checkpoint may be put in place only then.
    pub fn durable(&mut self) -> Result<()> {
        if self.claim.lost() {
            bail!("another process took trial {} over", self.record.trial_id);
        }
        self.flush();
        match &self.problem {
            Some(problem) => bail!("{problem:#}"),
            None => Ok(()),
        }
    }

    /// The checkpoint at `step` is in place: the record says so.
    pub fn checkpointed(&mut self, step: i64) {
        self.record.checkpoint = Some(CheckpointMark { step, written_ms: now_ms() });
        self.flush();
    }

    /// A worker training the trial died and another takes it on, from the
    /// checkpoint at `resume_from` or from the start: a new attempt, whose
    /// points replace the dead one's after that step.
    pub fn retried(&mut self, resume_from: Option<i64>) -> Result<()> {
        self.flush();
        self.record.attempts += 1;
        (self.log, self.record.curves) = attempt(&self.dir, self.record.attempts, resume_from)?;
        self.record.retries += 1;
        self.record.step = resume_from.unwrap_or(0);
        self.flush();
        Ok(())
    }

    /// Records the trial's end: `row` is its final row (the status cell is
    /// set here). Writes nothing, and says `None`, if another process took
    /// the trial over (it found this one's claim stale): its record is
    /// that process's now.
    pub fn finish(mut self, status: TrialStatus, mut row: Row) -> Result<Option<TrialRecord>> {
        if self.claim.lost() {
            return Ok(None);
        }
        if let Some(problem) = self.problem.take() {
            bail!("recording trial {}: {problem:#}", self.record.trial_id);
        }
        row.insert(column::STATUS.into(), Cell::Text(status.as_str().into()));
        self.record.status = status;
        self.record.row = row;
        self.flush();
        if let Some(problem) = self.problem.take() {
            bail!("recording trial {}: {problem:#}", self.record.trial_id);
        }
        crate::tables::write_trial(&self.root, &self.record)?;
        Ok(Some(self.record))
    }
}
