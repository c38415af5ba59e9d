//! Starting the ranks of a trial on several devices (`train.devices`) on
//! this machine: the process that trains rank 0 (a `bertlab worker`, or
//! `bertlab bench`) serves the trial's c10d store and starts the other
//! ranks beside it as `bertlab rank` processes, one device each, the trial
//! on their stdin ([`Assignment`]); they die with it, and it watches them,
//! so the rank that died is the one a failed collective names. A rank
//! other than 0 records nothing ([`Silent`]): its stderr is the trial's
//! `rank-N.log`. Under torchrun or srun the ranks are the processes those
//! started instead ([`super::world`]).
use crate::data::{self, cache::Cache, Dataset};
use crate::train::ranks::{Ranks, Watch, COLLECTIVE_TIMEOUT};
use crate::train::{self, benchmark, device, Observer, Placement, Stopped};
use crate::trial::TrialConfig;
use anyhow::{anyhow, Context, Result};
use runfolder::names;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tch::Device;
use torch_ops::distributed::Store;

/// What the ranks of a trial do together.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Work {
    /// Train the trial in its folder `dir`, from the checkpoint `resume`,
    /// to the rung `until`.
    Train { dir: PathBuf, resume: Option<PathBuf>, until: Option<i64> },
    /// Time `steps` steps after `warmup` (`bertlab bench`).
    Bench { warmup: i64, steps: i64 },
}

/// What a rank reads on its stdin (or, under torchrun, from the store).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assignment {
    pub config: TrialConfig,
    pub work: Work,
}

impl Assignment {
    /// The examples a rank of the trial trains on, from the cache the
    /// sweep filled (fine-tuning examples are read again); none for a
    /// benchmark. Read before the ranks meet, so none waits on another's
    /// reading in a collective.
    pub fn data(&self) -> Result<Option<Dataset>> {
        match &self.work {
            Work::Train { .. } => Ok(Some(data::prepare(self.config.task, &self.config.data, &Cache::from_env())?)),
            Work::Bench { .. } => Ok(None),
        }
    }

    /// A rank other than 0's part: joins the trial's ranks at `store` as
    /// `rank` of `size`, on `device`, and does the work. A failure of its
    /// own (not a lost peer's, nor a stop) is said in the store, for rank 0
    /// to record the trial as failed with it.
    pub fn take_part(&self, store: Store, rank: usize, size: usize, device: Device) -> Result<()> {
        crate::launch::local::catch_panics(|| {
            let data = self.data()?;
            // Rank 0 watches the processes; this one cannot.
            let ranks = Ranks::join(store, rank, size, device, Box::new(|_| None))?;
            self.perform(data.as_ref(), device, &ranks).inspect_err(|e| ranks.failed(e))
        })
    }

    /// The part of the work of a rank other than 0, on `device` with the
    /// others in `ranks`: it trains on `data`, or times the steps.
    fn perform(&self, data: Option<&Dataset>, device: Device, ranks: &Ranks) -> Result<()> {
        match (&self.work, data) {
            (Work::Train { dir, resume, until }, Some(data)) => {
                let placement = Placement { device, ranks: Some(ranks), dir, resume: resume.as_deref(), until: *until };
                train::train(&self.config, data, &placement, &mut Silent).map(|_| ())
            }
            (Work::Bench { warmup, steps }, _) => benchmark::measure(&self.config, device, Some(ranks), *warmup, *steps).map(|_| ()),
            (Work::Train { .. }, None) => Err(anyhow!("a training rank has no data")),
        }
    }
}

/// A rank's observer when rank 0 records: sees nothing.
pub struct Silent;

impl Observer for Silent {
    fn metric(&mut self, _step: i64, _key: &str, _value: f64) {}

    fn checkpoint(&mut self, _step: i64, _staged: &Path) -> Result<()> {
        Ok(())
    }
}

/// A rank process this one started.
struct Peer {
    rank: usize,
    child: Child,
    /// Its standard error, when not this process's.
    log: Option<PathBuf>,
}

/// "; see FILE" for a log, when there is one.
fn see(log: Option<&Path>) -> String {
    log.map(|log| format!("; see {}", log.display())).unwrap_or_default()
}

/// The rank processes this one started: ended when dropped (an error, a
/// panic), killed then if still running, unless [`Crew::end`] ended them.
struct Crew(Arc<Mutex<Vec<Peer>>>);

impl Drop for Crew {
    fn drop(&mut self) {
        self.end(true);
    }
}

/// The other ranks of a trial, started and not yet met.
struct Spawned {
    store: Store,
    crew: Crew,
    size: usize,
}

/// The ranks of a trial this process leads, once they have all met.
struct Team {
    ranks: Ranks,
    crew: Crew,
}

/// How long the ranks may take to end once rank 0 is done.
const END_GRACE: Duration = Duration::from_secs(30);

/// Does `run` as rank 0 of `assignment` on `devices` (one per rank; alone
/// on one): starts the other ranks ([`spawn`]), does `prepare` while they
/// prepare (reading data), meets them, runs, then waits for them to end.
pub fn lead<P, T>(
    assignment: &Assignment,
    devices: &[Device],
    threads: i32,
    logs: Option<&Path>,
    prepare: impl FnOnce() -> Result<P>,
    run: impl FnOnce(P, Option<&Ranks>) -> Result<T>,
) -> Result<T> {
    let spawned = match devices.len() {
        1 => None,
        _ => Some(spawn(assignment, devices, threads, logs)?),
    };
    let prepared = prepare()?;
    let team = spawned.map(|spawned| spawned.join(devices[0])).transpose()?;
    let result = run(prepared, team.as_ref().map(|team| &team.ranks));
    if let Some(team) = team {
        team.crew.end(result.is_err());
    }
    result
}

/// Starts ranks 1.. of `assignment` on `devices` (one per rank; this
/// process is rank 0 on the first), each with `threads` CPU threads, their
/// stderr in `logs`/`rank-N.log` (else this process's).
fn spawn(assignment: &Assignment, devices: &[Device], threads: i32, logs: Option<&Path>) -> Result<Spawned> {
    let store = Store::serve("127.0.0.1", 0, COLLECTIVE_TIMEOUT).context("serving the trial's c10d store")?;
    let address = format!("127.0.0.1:{}", store.port()?);
    let text = serde_json::to_string(assignment)?;
    let mut peers = Vec::new();
    let result = (1..devices.len()).try_for_each(|rank| -> Result<()> {
        let log = logs.map(|dir| dir.join(names::rank_log(rank)));
        let stderr = match &log {
            Some(log) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(log).with_context(|| format!("creating {}", log.display()))?),
            None => Stdio::inherit(),
        };
        let named = std::env::current_exe().context("locating the bertlab executable")?;
        // As for workers: the running binary even if it was rebuilt since.
        let exe = if cfg!(target_os = "linux") { PathBuf::from("/proc/self/exe") } else { named.clone() };
        let mut command = Command::new(exe);
        command.arg0(&named).arg("rank").arg("--rank").arg(rank.to_string()).arg("--size").arg(devices.len().to_string());
        command.arg("--store").arg(&address).arg("--device").arg(device::name(devices[rank])).arg("--threads").arg(threads.to_string());
        // SAFETY: the closure only makes one async-signal-safe call (prctl).
        unsafe { command.pre_exec(crate::signals::die_with_parent) };
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(stderr).spawn().context("starting a rank process")?;
        let sent = writeln!(child.stdin.take().expect("piped stdin"), "{text}");
        peers.push(Peer { rank, child, log: log.clone() });
        sent.with_context(|| format!("sending the trial to rank {rank}{}", see(log.as_deref())))
    });
    let crew = Crew(Arc::new(Mutex::new(peers)));
    result?;
    Ok(Spawned { store, crew, size: devices.len() })
}

impl Spawned {
    /// Waits until every rank has prepared its data and met at the store
    /// (failing at once if one ends first), then joins them as rank 0 on
    /// `device`.
    fn join(self, device: Device) -> Result<Team> {
        let watched = Arc::clone(&self.crew.0);
        let watch: Watch = Box::new(move |grace| ended(&watched, grace));
        let ranks = Ranks::join(self.store, 0, self.size, device, watch)?;
        Ok(Team { ranks, crew: self.crew })
    }
}

/// The first of `peers` that has ended, waiting up to `grace` for one to
/// (a rank killed a moment ago may not be reaped yet when its peers'
/// connections already closed), in words.
fn ended(peers: &Mutex<Vec<Peer>>, grace: Duration) -> Option<String> {
    let started = Instant::now();
    loop {
        let mut peers = peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for peer in peers.iter_mut() {
            if let Ok(Some(status)) = peer.child.try_wait() {
                return Some(format!("rank {} (pid {}) ended ({status}{})", peer.rank, peer.child.id(), see(peer.log.as_deref())));
            }
        }
        drop(peers);
        if started.elapsed() >= grace {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Crew {
    /// Waits for the ranks to exit, for up to [`END_GRACE`]; kills them
    /// first when `now`, or when the grace runs out.
    fn end(&self, now: bool) {
        let mut peers = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let deadline = Instant::now() + END_GRACE;
        for mut peer in peers.drain(..) {
            while !now && Instant::now() < deadline && matches!(peer.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = peer.child.kill();
            let _ = peer.child.wait();
            // A log that says nothing is not kept.
            if let Some(log) = peer.log.as_ref().filter(|log| std::fs::metadata(log).is_ok_and(|m| m.len() == 0)) {
                let _ = std::fs::remove_file(log);
            }
        }
    }
}

/// `bertlab rank`: one rank other than 0, started by [`spawn`]: reads its
/// assignment on stdin, meets the others at `store` (`host:port`), does its
/// part on `device`. Exits 0 when its part ended as rank 0's did (done, or
/// stopped), 1 when it failed (said on stderr, its log).
pub fn serve(rank: usize, size: usize, store: &str, device: Device, threads: i32) -> Result<i32> {
    tch::set_num_threads(threads);
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the assignment")?;
    let assignment: Assignment = serde_json::from_str(&line).context("parsing the assignment")?;
    let (host, port) = store.rsplit_once(':').and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?))).ok_or_else(|| anyhow!("--store {store} is not host:port"))?;
    let store = Store::connect(host, port, COLLECTIVE_TIMEOUT)?;
    match assignment.take_part(store, rank, size, device) {
        Ok(()) => Ok(0),
        Err(e) if e.downcast_ref::<Stopped>().is_some() => {
            eprintln!("rank {rank}: {e:#}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("rank {rank}: {e:#}");
            Ok(1)
        }
    }
}
