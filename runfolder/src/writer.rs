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
use crate::record::{self, now_ms, Owner, TrialRecord};
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
    /// The first write that failed (a full disk): the trial fails with it.
    problem: Option<std::io::Error>,
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
}

impl TrialWriter {
    /// Starts a new attempt at the trial: its record says `running`.
    pub fn start(root: PathBuf, claim: Claim, start: Start) -> Result<TrialWriter> {
        let dir = root.join(crate::names::TRIALS_DIR).join(&start.trial_id);
        let earlier = record::read(&dir);
        let attempts = earlier.as_ref().map_or(0, |r| r.attempts) + 1;
        let log = PointLog::open(&dir, attempts, 0).with_context(|| format!("opening {}", dir.join(crate::names::POINTS).display()))?;
        let mut row = start.row;
        row.insert(column::STATUS.into(), Cell::Text(TrialStatus::Running.as_str().into()));
        let now = now_ms();
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
            step: 0,
            steps: start.steps,
            row,
            curves: Curves::default(),
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
        let written = self.log.flush().and_then(|_| record::write(&self.dir, &self.record));
        if let Err(e) = written {
            self.problem.get_or_insert(e);
        }
        self.last_flush = Instant::now();
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
            bail!("recording trial {}: {problem}", self.record.trial_id);
        }
        row.insert(column::STATUS.into(), Cell::Text(status.as_str().into()));
        self.record.status = status;
        self.record.row = row;
        self.flush();
        if let Some(problem) = self.problem.take() {
            bail!("recording trial {}: {problem}", self.record.trial_id);
        }
        crate::tables::write_trial(&self.root, &self.record)?;
        Ok(Some(self.record))
    }
}
