//! Runs up to N trials at once, each in its own worker process
//! (`bertlab worker`), so trials never share libtorch state and a crash
//! costs one trial. Placement: trials on `auto`/`cuda` go to the GPU running
//! the fewest workers (several small trials may share one); a trial on
//! several devices gets as many GPUs of its own, waiting until they are
//! free; the workers split this machine's CPU threads between them. This
//! process holds the trials' claims and is the only writer of their
//! records, the display and MLflow: workers report over a pipe, and this
//! process puts their checkpoints in place. A worker that dies (killed,
//! out of memory), or whose trial lost a rank, is replaced by one that
//! goes on from the trial's checkpoint, up to `--retries` times; a stop
//! request is passed on to every worker.
use super::protocol::Event;
use super::queue::{Ended, Queue, Task};
use super::session::{Session, Sinks, Tally};
use crate::store::Store;
use crate::train::{device, Stopped};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::time::Duration;
use tch::Device;

/// A message from worker `index`'s reader thread: an event, or `None` once
/// the worker closed its output.
type Message = (usize, Option<Event>);

/// `'q`: what the queue hands out; `'s`: the sinks a session records to.
struct Running<'q, 's> {
    task: Task<'q>,
    session: Session<'s>,
    child: Child,
    /// One per rank.
    devices: Vec<Device>,
    ending: Option<Result<crate::train::Outcome>>,
}

use runfolder::names::WORKER_LOG;

pub fn run<'q: 's, 's>(queue: &mut Queue<'q>, slots: usize, retries: u32, store: &Store, sinks: &Sinks<'s>, tally: &mut Tally) -> Result<()> {
    let mut running: HashMap<usize, Running> = HashMap::new();
    let result = schedule(queue, slots, retries, store, sinks, tally, &mut running);
    // Stopped early (the store failed): no worker may train on unwatched.
    for worker in running.values_mut() {
        let _ = worker.child.kill();
        let _ = worker.child.wait();
    }
    result
}

/// How often the scheduler looks for a stop request while it waits.
const WATCH_EVERY: Duration = Duration::from_millis(200);

fn schedule<'q: 's, 's>(
    queue: &mut Queue<'q>,
    slots: usize,
    retries: u32,
    store: &Store,
    sinks: &Sinks<'s>,
    tally: &mut Tally,
    running: &mut HashMap<usize, Running<'q, 's>>,
) -> Result<()> {
    let threads = (tch::get_num_threads() / slots as i32).max(1);
    let gpus = tch::Cuda::device_count().max(1) as usize;
    let (sender, receiver) = channel::<Message>();
    let mut next = 0;
    let mut forwarded = false;
    // A trial claimed but waiting for enough free GPUs.
    let mut waiting: Option<(Task<'q>, Session<'s>)> = None;
    loop {
        let stop = crate::signals::requested();
        if let Some(signal) = stop.filter(|_| !forwarded) {
            // Each worker finishes its step, checkpoints and reports.
            for worker in running.values() {
                // SAFETY: kill(2) on a child this process started and has not reaped.
                unsafe { libc::kill(worker.child.id() as i32, signal.number()) };
            }
            forwarded = true;
        }
        if let Some((_, session)) = waiting.take_if(|_| stop.is_some()) {
            session.close(Err(Stopped::Signal(stop.expect("checked").name().into()).into()), sinks, tally)?;
        }
        while stop.is_none() && running.len() < slots {
            let (task, session) = match waiting.take() {
                Some(claimed) => claimed,
                None => {
                    // Early stopping may have nothing to give now but a promotion
                    // once a running trial reaches its rung: asked again then.
                    let Some(task) = queue.next(sinks, running.is_empty())? else { break };
                    let Some(session) = Session::open(&task.job.trial, store, task.fresh, sinks, tally)? else { continue };
                    (task, session)
                }
            };
            let job = task.job;
            let busy = running.values().flat_map(|w| w.devices.iter().copied());
            let Some(placed) = place(job.device, &job.trial.config.train.device, job.trial.config.train.ranks(), busy, gpus) else {
                waiting = Some((task, session));
                break;
            };
            let resume = session.resume.as_ref().map(|r| r.path.clone());
            match spawn(&task, &placed, threads, resume.as_deref(), store, next, sender.clone()) {
                Ok(child) => {
                    running.insert(next, Running { task, session, child, devices: placed, ending: None });
                }
                Err(e) => {
                    session.close(Err(e), sinks, tally)?;
                }
            }
            next += 1;
        }
        if running.is_empty() {
            return Ok(());
        }
        let (index, event) = match receiver.recv_timeout(WATCH_EVERY) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => bail!("worker reader threads ended"),
        };
        let worker = running.get_mut(&index).expect("events come from running workers");
        match event {
            Some(event) => match event.replay(&mut worker.session) {
                Ok(true) => {}
                Ok(false) => worker.ending = event.ending(),
                Err(e) => {
                    // A checkpoint could not be put in place: the worker
                    // stops here, and the trial is recorded interrupted.
                    let _ = worker.child.kill();
                    worker.ending = Some(Err(Stopped::Storage(format!("{e:#}")).into()));
                }
            },
            None => {
                let mut worker = running.remove(&index).expect("running");
                let status = worker.child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                let log = store.folder.trial_dir(&worker.task.job.trial.id).join(WORKER_LOG);
                // An empty log says nothing; keep only one that does.
                if std::fs::metadata(&log).is_ok_and(|m| m.len() == 0) {
                    let _ = std::fs::remove_file(&log);
                }
                // Killed, out of memory, or one of its ranks was: not the
                // trial's fault.
                let died = match worker.ending.as_ref().map(|ending| ending.as_ref().err().and_then(|e| e.downcast_ref::<Stopped>())) {
                    None => Some("its worker died".to_string()),
                    Some(Some(Stopped::Peer(lost))) => Some(lost.clone()),
                    Some(_) => None,
                };
                if let Some(why) = died.filter(|_| crate::signals::requested().is_none() && worker.session.retries() < retries) {
                    // A new worker goes on from its checkpoint.
                    worker.session.retry(&why, sinks)?;
                    let resume = worker.session.resume.as_ref().map(|r| r.path.clone());
                    match spawn(&worker.task, &worker.devices, threads, resume.as_deref(), store, index, sender.clone()) {
                        Ok(child) => {
                            running.insert(index, Running { child, ending: None, ..worker });
                            continue;
                        }
                        Err(e) => worker.ending = Some(Err(e)),
                    }
                }
                let ending = worker.ending.unwrap_or_else(|| {
                    let retried = match worker.session.retries() {
                        0 => String::new(),
                        n => format!(" (after {n} retries; --retries sets how many)"),
                    };
                    Err(anyhow!("the worker process ended ({status}) before reporting how the trial went{retried}; see {}", log.display()))
                });
                let ended = Ended::of(&ending);
                worker.session.close(ending, sinks, tally)?;
                queue.ended(&worker.task, ended, sinks)?;
            }
        }
    }
}

/// The devices a new worker's `ranks` train on, given the devices the
/// running workers use (`busy`) among `gpus`: for trials that let bertlab
/// choose (`train.device` `auto` or `cuda`, resolved to `first`), the GPUs
/// running the fewest workers; the named one (and those after it)
/// otherwise; the CPU for each rank on the CPU. `None` while a trial on
/// several GPUs would share one with another trial (every collective of
/// its ranks would wait on the slowest): it waits for them to be free.
fn place(first: Device, spec: &str, ranks: usize, busy: impl Iterator<Item = Device>, gpus: usize) -> Option<Vec<Device>> {
    let Device::Cuda(first) = first else { return Some(vec![first; ranks]) };
    let gpus = gpus.max(first + ranks);
    let mut load = vec![0usize; gpus];
    for device in busy {
        if let Device::Cuda(index) = device {
            load[index.min(gpus - 1)] += 1;
        }
    }
    let chosen: Vec<usize> = match spec {
        "auto" | "cuda" => {
            let mut order: Vec<usize> = (0..gpus).collect();
            order.sort_by_key(|&i| (load[i], i));
            order.truncate(ranks);
            order.sort();
            order
        }
        _ => (first..first + ranks).collect(),
    };
    if ranks > 1 && chosen.iter().any(|&i| load[i] > 0) {
        return None;
    }
    Some(chosen.into_iter().map(Device::Cuda).collect())
}

fn spawn(task: &Task, placed: &[Device], threads: i32, resume: Option<&Path>, store: &Store, index: usize, sender: Sender<Message>) -> Result<Child> {
    let job = task.job;
    let dir = store.folder.trial_dir(&job.trial.id);
    let log_path = dir.join(WORKER_LOG);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).context("creating worker.log")?;
    // /proc/self/exe, not current_exe(): a binary rebuilt during the sweep
    // leaves the running one's path "(deleted)", but this link still opens it.
    let named = std::env::current_exe().context("locating the bertlab executable")?;
    let exe = if cfg!(target_os = "linux") { PathBuf::from("/proc/self/exe") } else { named.clone() };
    let mut command = Command::new(exe);
    // What `ps` and `nvidia-smi` show: bertlab, not /proc/self/exe.
    let devices: Vec<String> = placed.iter().map(|&d| device::name(d)).collect();
    command.arg0(&named).arg("worker").arg("--device").arg(devices.join(",")).arg("--threads").arg(threads.to_string()).arg("--dir").arg(&dir);
    if let Some(resume) = resume {
        command.arg("--resume").arg(resume);
    }
    if let Some(until) = task.until {
        command.arg("--until").arg(until.to_string());
    }
    // SAFETY: the closure only makes one async-signal-safe call (prctl).
    unsafe { command.pre_exec(crate::signals::die_with_parent) };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("starting a worker process")?;
    let config = serde_json::to_string(&job.trial.config).context("serialising the trial")?;
    if let Err(e) = writeln!(child.stdin.take().expect("piped stdin"), "{config}") {
        let _ = child.kill();
        let _ = child.wait();
        return Err(anyhow!("sending the trial to its worker: {e}; see {}", log_path.display()));
    }
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        // Bytes, not lines of UTF-8: a stray non-UTF-8 line from a native
        // library must not end the reading, or the worker would block.
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            match serde_json::from_slice::<Event>(&line) {
                Ok(event) => {
                    let _ = sender.send((index, Some(event)));
                }
                Err(_) => tracing::warn!("worker {index}: not an event: {}", String::from_utf8_lossy(&line).trim_end()),
            }
            line.clear();
        }
        let _ = sender.send((index, None));
    });
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cuda(indices: &[usize]) -> Vec<Device> {
        indices.iter().map(|&i| Device::Cuda(i)).collect()
    }

    #[test]
    fn one_device_trials_share_the_least_busy_gpu() {
        assert_eq!(place(Device::Cuda(0), "auto", 1, cuda(&[0, 0, 1]).into_iter(), 3), Some(cuda(&[2])));
        assert_eq!(place(Device::Cuda(0), "cuda", 1, cuda(&[0, 1, 2]).into_iter(), 3), Some(cuda(&[0])), "shared when every GPU is busy");
        assert_eq!(place(Device::Cuda(1), "cuda:1", 1, cuda(&[1]).into_iter(), 3), Some(cuda(&[1])), "a named GPU is taken as named");
        assert_eq!(place(Device::Cpu, "cpu", 2, std::iter::empty(), 0), Some(vec![Device::Cpu, Device::Cpu]));
    }

    #[test]
    fn a_trial_on_several_gpus_gets_free_ones_or_waits() {
        assert_eq!(place(Device::Cuda(0), "auto", 2, cuda(&[0, 3]).into_iter(), 4), Some(cuda(&[1, 2])));
        assert_eq!(place(Device::Cuda(0), "auto", 2, cuda(&[0, 1, 3]).into_iter(), 4), None, "one GPU free, two needed");
        assert_eq!(place(Device::Cuda(2), "cuda:2", 2, cuda(&[0]).into_iter(), 4), Some(cuda(&[2, 3])));
        assert_eq!(place(Device::Cuda(2), "cuda:2", 2, cuda(&[3]).into_iter(), 4), None, "the named GPUs are busy");
    }
}
