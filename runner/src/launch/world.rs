//! A run started as several processes at once by torchrun (`torchrun
//! --no-python bertlab run ...`) or by Slurm's srun (a job step of several
//! tasks, possibly on several nodes): each process is one rank of every
//! trial, so `train.devices` must be their number. Rank 0 runs the sweep as
//! a local run does and, for each trial it trains, hands the other ranks
//! its [`Assignment`] through the launcher's c10d store; they train it
//! beside rank 0 and wait for the next, until rank 0 says the sweep is over
//! ([`World::follow`]). The store is torchrun's own (its agent's, at
//! `MASTER_ADDR:MASTER_PORT`), else one rank 0 serves there; under srun
//! without `MASTER_ADDR`, the step's first node (rank 0's, in Slurm's
//! block distribution) on a port drawn from the job id.
use super::ranks::{Assignment, Work};
use crate::train::ranks::{Ranks, JOIN_TIMEOUT};
use crate::train::Stopped;
use crate::error::InputError;
use crate::trial::TrialConfig;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::time::Duration;
use tch::Device;
use torch_ops::distributed::Store;

/// What rank 0 says to the others, one numbered message after another.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Message {
    Trial(Box<Assignment>),
    /// The sweep is over: the other ranks exit.
    Done,
}

/// A launcher and the variables it sets in each process it starts.
struct Launcher {
    /// For messages.
    name: &'static str,
    /// This process's rank, and how many there are.
    rank: &'static str,
    size: &'static str,
    /// Its rank on its node: its GPU.
    local_rank: &'static str,
    /// Slurm's: where the ranks meet has defaults from the job step.
    slurm: bool,
}

const TORCHRUN: Launcher = Launcher { name: "torchrun", rank: "RANK", size: "WORLD_SIZE", local_rank: "LOCAL_RANK", slurm: false };
/// The step's task count, not `SLURM_NTASKS` (set in a batch script too).
const SRUN: Launcher = Launcher { name: "srun", rank: "SLURM_PROCID", size: "SLURM_STEP_NUM_TASKS", local_rank: "SLURM_LOCALID", slurm: true };

/// This process's place among the processes a launcher started, as its
/// environment says.
pub struct Launched {
    pub rank: usize,
    pub size: usize,
    /// This process's GPU, where trials train on GPUs.
    local_rank: usize,
    launcher: &'static Launcher,
}

/// The launched processes, met at the launcher's store.
pub struct World {
    pub launched: Launched,
    store: Store,
    /// Messages rank 0 has sent.
    sent: Cell<usize>,
}

/// How often a waiting rank looks for rank 0's next message.
const POLL: Duration = Duration::from_millis(100);

/// The store's count of ranks that read that the sweep is over.
const DISMISSED: &str = "dismissed";

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// What is wrong with the launcher's variable `name`, as bad input.
fn wrong(name: &str, message: String) -> InputError {
    InputError::at_key(name, message).from_source("the environment")
}

fn number(name: &str) -> Result<Option<usize>, InputError> {
    var(name).map(|v| v.parse::<usize>().map_err(|_| wrong(name, format!("{v:?} is not a number")))).transpose()
}

impl Launched {
    /// Where this process was started, from its launcher's environment:
    /// torchrun's `RANK` and `WORLD_SIZE`, or srun's `SLURM_PROCID` and
    /// `SLURM_STEP_NUM_TASKS` (set in a job step, not in a batch script);
    /// `None` alone. One process torchrun started is a world of one (its
    /// trials train through a process group all the same: NCCL's check
    /// against one device); one srun task is alone.
    pub fn from_env() -> Result<Option<Launched>, InputError> {
        for launcher in [&TORCHRUN, &SRUN] {
            let (Some(rank), Some(size)) = (number(launcher.rank)?, number(launcher.size)?) else { continue };
            let local_rank = number(launcher.local_rank)?.unwrap_or(0);
            if rank >= size {
                return Err(wrong(launcher.rank, format!("is {rank}, not below {}={size}", launcher.size)));
            }
            return Ok((size > 1 || !launcher.slurm).then_some(Launched { rank, size, local_rank, launcher }));
        }
        Ok(None)
    }

    /// Which launcher started this process, for messages.
    pub fn launcher(&self) -> &'static str {
        self.launcher.name
    }

    /// Whether trials of `train` train on every rank started.
    pub fn check(&self, train: &crate::config::TrainSection) -> Result<(), String> {
        match train.ranks() == self.size {
            true => Ok(()),
            false => Err(format!(
                "is {}, but this run is one of {} ranks {} started, and every trial trains on all of them: set train.devices = {}",
                train.devices, self.size, self.launcher.name, self.size
            )),
        }
    }

    /// This rank's device for a trial that trains on `device`: its own GPU
    /// among the node's (the only one it sees when Slurm binds one GPU to
    /// each task), or the CPU.
    pub fn device(&self, device: Device) -> Result<Device, InputError> {
        let local = self.local_rank;
        let count = tch::Cuda::device_count().max(0) as usize;
        match device {
            Device::Cuda(_) if local < count => Ok(Device::Cuda(local)),
            Device::Cuda(_) if count == 1 => Ok(Device::Cuda(0)),
            // Two ranks on one GPU: NCCL refuses them, later and less clearly.
            Device::Cuda(_) => Err(wrong(self.launcher.local_rank, format!("is {local}, and this node has {count} GPUs: start one rank per GPU"))),
            other => Ok(other),
        }
    }

    /// Meets the other ranks at the launcher's store (checked first, so
    /// that a rank refusing its input never leaves the others waiting).
    pub fn meet(self) -> Result<World> {
        let (host, port) = rendezvous(self.launcher)?;
        let agent = var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let root = if self.rank == 0 && !agent { Store::serve(&host, port, JOIN_TIMEOUT) } else { Store::connect(&host, port, JOIN_TIMEOUT) };
        let root = root.with_context(|| format!("meeting the other {} ranks {} started at {host}:{port}", self.size - 1, self.launcher.name))?;
        // Apart from what torchrun keeps there, and from an earlier attempt.
        let store = root.prefixed(&format!("bertlab/attempt_{}", var("TORCHELASTIC_RESTART_COUNT").unwrap_or_else(|| "0".into())))?;
        Ok(World { launched: self, store, sent: Cell::new(0) })
    }
}

/// How long rank 0 waits for the others to read that the sweep is over
/// before it ends (and with it the store it may serve).
const DISMISS_GRACE: Duration = Duration::from_secs(30);

impl World {
    fn send(&self, message: &Message) -> Result<usize> {
        let index = self.sent.get();
        self.store.set(&format!("message/{index}"), serde_json::to_string(message)?.as_bytes())?;
        self.sent.set(index + 1);
        Ok(index)
    }

    /// Rank 0: hands `assignment` to the other ranks and meets them for
    /// it, on `device`.
    pub fn lead(&self, assignment: Assignment, device: Device) -> Result<Ranks> {
        let index = self.send(&Message::Trial(Box::new(assignment)))?;
        Ranks::join(self.store.prefixed(&format!("trial/{index}"))?, 0, self.launched.size, device, Box::new(|_| None))
    }

    /// Rank 0: the sweep is over; waits (a while) for the other ranks to
    /// have read it, as they exit.
    pub fn dismiss(&self) {
        let dismissed = self.send(&Message::Done).and_then(|_| {
            let started = std::time::Instant::now();
            while self.store.add(DISMISSED, 0)? < self.launched.size as i64 - 1 && started.elapsed() < DISMISS_GRACE {
                std::thread::sleep(POLL);
            }
            Ok(())
        });
        if let Err(e) = dismissed {
            tracing::warn!("telling the other ranks the sweep is over: {e:#}");
        }
    }

    /// A rank other than 0: trains each trial rank 0 hands out, until it
    /// says the sweep is over (exit 0), or is gone (an error).
    pub fn follow(&self) -> Result<i32> {
        let (rank, size) = (self.launched.rank, self.launched.size);
        let gone = |e: torch_ops::Error| anyhow!("rank 0 is gone ({})", e.0.lines().next().unwrap_or_default());
        for index in 0.. {
            let key = format!("message/{index}");
            while !self.store.has(&key).map_err(gone)? {
                std::thread::sleep(POLL);
            }
            let message: Message = serde_json::from_slice(&self.store.get(&key, JOIN_TIMEOUT).map_err(gone)?).context("reading rank 0's message")?;
            let Message::Trial(assignment) = message else {
                self.store.add(DISMISSED, 1).map_err(gone)?;
                return Ok(0);
            };
            let device = self.launched.device(crate::trial::bind::device(&assignment.config)?)?;
            let trained = assignment.take_part(self.store.prefixed(&format!("trial/{index}"))?, rank, size, device);
            // Rank 0 records how the trial went; this one says it in its
            // log, then waits for the next.
            match trained {
                Ok(()) => {}
                Err(e) if e.downcast_ref::<Stopped>().is_some() => eprintln!("rank {rank}: {e}"),
                Err(e) => eprintln!("rank {rank}: {e:#}"),
            }
        }
        unreachable!("the loop returns")
    }

    /// The assignment of a trial rank 0 trains in `dir`.
    pub fn assignment(config: &TrialConfig, dir: &std::path::Path, resume: Option<&std::path::Path>, until: Option<i64>) -> Assignment {
        Assignment { config: config.clone(), work: Work::Train { dir: dir.to_owned(), resume: resume.map(|p| p.to_owned()), until } }
    }
}

/// Where the ranks meet: `MASTER_ADDR` and `MASTER_PORT` (torchrun sets
/// both); under srun, defaults from the step: loopback on one node, else
/// its first node, and a port from the job id.
fn rendezvous(launcher: &Launcher) -> Result<(String, u16)> {
    let port = match var("MASTER_PORT") {
        Some(port) => port.parse().map_err(|_| wrong("MASTER_PORT", format!("{port:?} is not a port")))?,
        None if launcher.slurm => 20_000 + (number("SLURM_JOB_ID")?.unwrap_or(0) % 10_000) as u16,
        None => bail!("{} set no MASTER_PORT", launcher.name),
    };
    let host = match var("MASTER_ADDR") {
        Some(host) => host,
        None if launcher.slurm && number("SLURM_STEP_NUM_NODES")?.unwrap_or(1) <= 1 => "127.0.0.1".into(),
        None if launcher.slurm => first_node()?,
        None => bail!("{} set no MASTER_ADDR", launcher.name),
    };
    Ok((host, port))
}

/// The first node of the job step, by `scontrol show hostnames`.
fn first_node() -> Result<String> {
    let nodes = var("SLURM_STEP_NODELIST").context("SLURM_STEP_NODELIST is not set: set MASTER_ADDR to rank 0's host")?;
    let out = std::process::Command::new("scontrol").args(["show", "hostnames", &nodes]).output().context("running scontrol (or set MASTER_ADDR)")?;
    String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_string).context("scontrol listed no host (set MASTER_ADDR)")
}
