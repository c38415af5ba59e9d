//! One trial trained on several devices at once (`train.devices`): this
//! process's rank among the trial's ranks, and what they do together
//! through PyTorch's c10d ([`torch_ops::distributed`]). Every rank draws
//! the same global batch and trains on its own consecutive rows of it
//! ([`Ranks::shard`]); a [`Reducer`] sums the gradients in buckets while
//! the backward pass runs; the step's loss is summed too, so each rank
//! holds the whole batch's and the replicas stay identical without ever
//! sending weights. After each step the ranks agree on when to stop and
//! on rank 0's clock ([`Ranks::agree`]), so a signal or a time budget ends
//! them at the same step; rank 0 records, evaluates (every rank evaluates
//! the same held-out set, in step, with no collective) and writes the
//! checkpoints, which carry every rank's random generator states
//! ([`Ranks::gather`]).
//!
//! Collectives time out after [`COLLECTIVE_TIMEOUT`], not c10d's 30
//! minutes: a rank that died fails its peers' next collective at once, one
//! that hangs fails it then. Either way the trial stops with
//! [`Stopped::Peer`], naming the rank: a re-run resumes it from its last
//! checkpoint.
use super::Stopped;
use anyhow::{Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};
use torch_ops::distributed::{Group, Reducer, Store};

/// How long a rank waits in a collective for the others: short enough
/// that a hung rank ends the trial within a minute. (While rank 0 writes a
/// checkpoint the others wait in the store instead, [`Ranks::led`].)
pub const COLLECTIVE_TIMEOUT: Duration = Duration::from_secs(40);

/// How long the ranks of a trial may take to all start (libtorch loading,
/// data from the cache).
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(600);

/// DDP's bucket sizes: a small first bucket, so communication starts early
/// in the backward pass, then 25 MiB.
const FIRST_BUCKET_BYTES: usize = 1 << 20;
const BUCKET_BYTES: usize = 25 << 20;

/// Says which peer is gone when its process is this one's to watch (the
/// ranks a worker started), waiting up to the given time for one to be;
/// `None` where it cannot know (ranks started by torchrun or srun).
pub type Watch = Box<dyn Fn(Duration) -> Option<String> + Send>;

/// How long a failed collective waits to learn which peer process ended:
/// its connections close a moment before it can be reaped.
const WATCH_GRACE: Duration = Duration::from_secs(2);

/// How often each rank's heartbeat counts in the store, and how long a
/// failed collective watches the counts for one that stands still (a rank
/// stopped, or gone).
const BEAT_EVERY: Duration = Duration::from_millis(250);
const BEATS_WATCHED: Duration = Duration::from_millis(1500);

/// What the ranks agreed on after a step.
pub struct Agreed {
    /// The signal that asked a rank to stop, by its name, if any did.
    pub stop: Option<String>,
    /// Rank 0's training clock: what `train.budget`, the schedule and the
    /// checkpoints follow on every rank.
    pub clock: Duration,
}

/// This process's place among a trial's ranks.
pub struct Ranks {
    rank: usize,
    size: usize,
    /// Gradients and losses, on the training device: NCCL between GPUs,
    /// Gloo between CPU processes.
    data: Group,
    /// Host values (stop requests, the clock, generator states): Gloo,
    /// which never makes a GPU stream wait.
    control: Group,
    /// The trial's store, where each rank counts the collectives it entered
    /// and its heartbeats.
    store: Arc<Store>,
    /// Collectives this rank has entered.
    entered: std::cell::Cell<i64>,
    /// Cleared to stop the heartbeat.
    beating: Arc<AtomicBool>,
    watch: Watch,
}

impl Drop for Ranks {
    fn drop(&mut self) {
        self.beating.store(false, Ordering::Relaxed);
    }
}

/// The store key where `rank` says why it failed.
fn failed_key(rank: usize) -> String {
    format!("failed/{rank}")
}

fn beats_key(rank: usize) -> String {
    format!("beats/{rank}")
}

/// The store key where `rank` counts the collectives it entered: when one
/// hangs, the rank that never entered it is the one to blame.
fn progress_key(rank: usize) -> String {
    format!("entered/{rank}")
}

impl Ranks {
    /// Joins the trial's ranks at `store` (the trial's own namespace) as
    /// rank `rank` of `size`, training on `device`: waits until all have
    /// come (asking `watch` between looks whether one ended first), then
    /// connects the groups. A rank that never comes stops the trial as a
    /// lost one does: it goes on from its checkpoint next time.
    pub fn join(store: Store, rank: usize, size: usize, device: Device, watch: Watch) -> Result<Ranks> {
        store.add("joined", 1).context("joining the trial's ranks")?;
        let started = Instant::now();
        while store.add("joined", 0)? < size as i64 {
            if let Some(gone) = watch(Duration::ZERO) {
                return Err(Stopped::Peer(format!("{gone} before all {size} ranks had started")).into());
            }
            if started.elapsed() > JOIN_TIMEOUT {
                return Err(Stopped::Peer(format!("not all {size} ranks started within {}s", JOIN_TIMEOUT.as_secs())).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let control = Group::gloo(&store.prefixed("control")?, rank, size, COLLECTIVE_TIMEOUT)?;
        let data = match device {
            Device::Cuda(index) => Group::nccl(&store.prefixed("data")?, rank, size, index, COLLECTIVE_TIMEOUT)?,
            _ => Group::gloo(&store.prefixed("data")?, rank, size, COLLECTIVE_TIMEOUT)?,
        };
        // A heartbeat apart from the training thread: a rank whose count
        // stands still is stopped or gone, whatever it was doing.
        let (store, beating) = (Arc::new(store), Arc::new(AtomicBool::new(true)));
        let (beat_store, beat_flag, key) = (Arc::clone(&store), Arc::clone(&beating), beats_key(rank));
        std::thread::spawn(move || {
            while beat_flag.load(Ordering::Relaxed) && beat_store.add(&key, 1).is_ok() {
                std::thread::sleep(BEAT_EVERY);
            }
        });
        Ok(Ranks { rank, size, data, control, store, entered: std::cell::Cell::new(0), beating, watch })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Rank 0 records the trial and writes its files.
    pub fn leads(&self) -> bool {
        self.rank == 0
    }

    /// Called once the model is drawn (the same on every rank, from the
    /// trial's seed): gives this rank a dropout stream of its own. Rank 0
    /// keeps the trial's, as it would alone.
    pub fn seed_dropout(&self, seed: u64) {
        if self.rank > 0 {
            tch::manual_seed((seed ^ (self.rank as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) as i64);
        }
    }

    /// This rank's rows of a batch of `rows`: consecutive, as even as they
    /// go (the last batch of a fine-tuning epoch may not split evenly, and
    /// a rank may get none).
    pub fn shard(&self, rows: usize) -> std::ops::Range<usize> {
        let per = rows.div_ceil(self.size);
        let start = (self.rank * per).min(rows);
        start..(start + per).min(rows)
    }

    /// A reducer of the gradients of `params` over the ranks.
    pub fn reducer(&self, params: &[&Tensor]) -> Result<Reducer> {
        Reducer::new(&self.data, params, FIRST_BUCKET_BYTES, BUCKET_BYTES).map_err(|e| self.lost(e))
    }

    /// After the step's last backward pass: waits until `reducer` has
    /// summed every gradient over the ranks, having said in the store that
    /// this rank got there.
    pub fn exchange(&self, reducer: &Reducer) -> Result<()> {
        self.collective(|| reducer.finish())
    }

    /// Sums `tensor` (on the training device) over the ranks, in place.
    pub fn sum(&self, tensor: &Tensor) -> Result<()> {
        self.collective(|| self.data.all_reduce(tensor))
    }

    /// Runs a collective, counting it in the store first; its failure is
    /// the trial's end ([`Ranks::lost`]).
    fn collective<T>(&self, f: impl FnOnce() -> torch_ops::Result<T>) -> Result<T> {
        self.entered.set(self.entered.get() + 1);
        self.store.set(&progress_key(self.rank), self.entered.get().to_string().as_bytes()).map_err(|e| self.lost(e))?;
        f().map_err(|e| self.lost(e))
    }

    /// After a step: agrees with the other ranks on whether to stop
    /// (`signal`: this rank's request) and on rank 0's `clock`.
    pub fn agree(&self, signal: Option<crate::signals::Signal>, clock: Duration) -> Result<Agreed> {
        // One entry per rank for its signal's number, then rank 0's clock.
        let mut values = vec![0.0f64; self.size + 1];
        values[self.rank] = signal.map_or(0.0, |s| f64::from(s.number()));
        if self.leads() {
            values[self.size] = clock.as_secs_f64();
        }
        let agreed = Tensor::from_slice(&values);
        self.collective(|| self.control.all_reduce(&agreed))?;
        let values = Vec::<f64>::try_from(&agreed)?;
        let stop = values[..self.size].iter().position(|&n| n != 0.0).map(|rank| {
            let signal = crate::signals::Signal::from_number(values[rank] as usize);
            if let Some(signal) = signal.filter(|_| rank != self.rank && self.leads()) {
                crate::signals::request(signal);
            }
            let name = signal.map_or("a signal", |s| s.name());
            if rank == self.rank { name.to_string() } else { format!("{name} to rank {rank}") }
        });
        Ok(Agreed { stop, clock: Duration::from_secs_f64(values[self.size]) })
    }

    /// Every rank's `state` (a CPU byte tensor of one size on all ranks,
    /// such as a random generator's), in rank order.
    pub fn gather(&self, state: &Tensor) -> Result<Vec<Tensor>> {
        let state = state.to_device(Device::Cpu).to_kind(Kind::Uint8);
        self.collective(|| self.control.all_gather(&state))
    }

    /// Rank 0 does `work` (writing a checkpoint) while the others wait for
    /// its word under `key` in the store, not in a collective: the work may
    /// take longer than [`COLLECTIVE_TIMEOUT`] (a large model, a slow
    /// disk), and rank 0's heartbeat says it is still at it. Rank 0's
    /// failure fails the others too.
    pub fn led(&self, key: &str, work: impl FnOnce() -> Result<()>) -> Result<()> {
        if self.leads() {
            let done = work();
            let word = done.as_ref().err().map(|e| format!("{e:#}")).unwrap_or_default();
            self.store.set(key, word.as_bytes()).map_err(|e| self.lost(e))?;
            return done;
        }
        let beat = || self.store.add(&beats_key(0), 0).ok();
        let mut before = beat();
        loop {
            match self.store.get(key, BEATS_WATCHED) {
                Ok(word) if word.is_empty() => return Ok(()),
                Ok(word) => anyhow::bail!("rank 0: {}", String::from_utf8_lossy(&word)),
                Err(e) => {
                    let now = beat();
                    if now.is_none() || now == before {
                        return Err(self.lost(e));
                    }
                    before = now;
                }
            }
        }
    }

    /// Says in the store why this rank failed, when it failed of itself
    /// (not a peer lost, nor a stop): its peers then fail the trial with
    /// that reason rather than stop it as one with a lost rank, which
    /// would be retried to fail the same way.
    pub fn failed(&self, error: &anyhow::Error) {
        if error.downcast_ref::<Stopped>().is_none() {
            // Best effort: the peers still stop when this rank goes.
            let _ = self.store.set(&failed_key(self.rank), format!("{error:#}").as_bytes());
        }
    }

    /// A failed collective as the trial's end: the failure a peer said it
    /// had; else which rank is gone, from the processes this one watches,
    /// else from how far each rank got.
    fn lost(&self, error: impl std::fmt::Display) -> anyhow::Error {
        let said = (0..self.size).filter(|&rank| rank != self.rank).find_map(|rank| {
            let key = failed_key(rank);
            let why = self.store.has(&key).ok()?.then(|| self.store.get(&key, WATCH_GRACE).ok())??;
            Some(anyhow::anyhow!("rank {rank} failed: {}", String::from_utf8_lossy(&why)))
        });
        if let Some(failure) = said {
            return failure;
        }
        let blamed = (self.watch)(WATCH_GRACE).or_else(|| self.laggards());
        let who = blamed.unwrap_or_else(|| "a rank of the trial was lost".into());
        Stopped::Peer(format!("{who} (rank {} of {}: {error})", self.rank, self.size)).into()
    }

    /// The ranks to blame, from the store: those whose heartbeat stands
    /// still, else those behind the others in the collectives they
    /// entered; rank 0 when the store it holds is gone.
    fn laggards(&self) -> Option<String> {
        let beats = || -> Option<Vec<i64>> { (0..self.size).map(|rank| self.store.add(&beats_key(rank), 0).ok()).collect() };
        let Some(before) = beats() else {
            return Some("rank 0 stopped answering (the trial's store, which it holds, is gone)".into());
        };
        std::thread::sleep(BEATS_WATCHED);
        if let Some(after) = beats() {
            let still: Vec<String> = (0..self.size).filter(|&r| r != self.rank && after[r] == before[r]).map(|r| format!("rank {r}")).collect();
            if !still.is_empty() {
                return Some(format!("{} stopped answering (stopped, or gone)", still.join(" and ")));
            }
        }
        let quick = Duration::from_millis(500);
        let counts: Vec<Option<i64>> = (0..self.size)
            .map(|rank| self.store.get(&progress_key(rank), quick).ok().and_then(|b| String::from_utf8(b).ok()?.parse().ok()))
            .collect();
        let ahead = counts.iter().flatten().max().copied().unwrap_or(0);
        let behind: Vec<String> = counts.iter().enumerate().filter(|(_, n)| n.is_none_or(|n| n < ahead)).map(|(rank, _)| format!("rank {rank}")).collect();
        (!behind.is_empty()).then(|| format!("{} stopped answering (never entered the collective the others waited in)", behind.join(" and ")))
    }
}
