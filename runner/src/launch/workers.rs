//! Runs up to N trials at once, each in its own worker process
//! (`bertlab worker`), so trials never share libtorch state and a crash
//! costs one trial. Placement: trials on `auto`/`cuda` go to the GPU running
//! the fewest workers (several small trials may share one); the workers
//! split this machine's CPU threads between them. This process holds the
//! trials' claims and is the only writer of their records, the display and
//! MLflow: workers report over a pipe.
use super::protocol::Event;
use super::session::{Job, Session, Sinks, Tally};
use crate::store::Store;
use crate::train::device;
use anyhow::{anyhow, Context, Result};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Sender};
use tch::Device;

/// A message from worker `index`'s reader thread: an event, or `None` once
/// the worker closed its output.
type Message = (usize, Option<Event>);

struct Running<'a> {
    session: Session<'a>,
    child: Child,
    device: Device,
    ending: Option<Result<crate::train::Outcome>>,
}

use runfolder::names::WORKER_LOG;

pub fn run(jobs: &[&Job], slots: usize, store: &Store, fresh: bool, sinks: &Sinks, tally: &mut Tally) -> Result<()> {
    let mut running: HashMap<usize, Running> = HashMap::new();
    let result = schedule(jobs, slots, store, fresh, sinks, tally, &mut running);
    // Stopped early (the store failed): no worker may train on unwatched.
    for worker in running.values_mut() {
        let _ = worker.child.kill();
        let _ = worker.child.wait();
    }
    result
}

fn schedule<'a>(
    jobs: &[&'a Job],
    slots: usize,
    store: &Store,
    fresh: bool,
    sinks: &Sinks<'a>,
    tally: &mut Tally,
    running: &mut HashMap<usize, Running<'a>>,
) -> Result<()> {
    let threads = (tch::get_num_threads() / slots as i32).max(1);
    let gpus = tch::Cuda::device_count().max(1) as usize;
    let (sender, receiver) = channel::<Message>();
    let mut next = 0;
    loop {
        while running.len() < slots && next < jobs.len() {
            let job = jobs[next];
            let Some(session) = Session::open(&job.trial, store, fresh, sinks, tally)? else {
                next += 1;
                continue;
            };
            let placed = place(job, running.values().map(|w| w.device), gpus);
            match spawn(job, placed, threads, store, next, sender.clone()) {
                Ok(child) => {
                    running.insert(next, Running { session, child, device: placed, ending: None });
                }
                Err(e) => session.close(Err(e), sinks, tally)?,
            }
            next += 1;
        }
        if running.is_empty() {
            return Ok(());
        }
        let (index, event) = receiver.recv().context("worker reader threads ended")?;
        let worker = running.get_mut(&index).expect("events come from running workers");
        match event {
            Some(event) => {
                if !event.replay(&mut worker.session) {
                    worker.ending = event.ending();
                }
            }
            None => {
                let mut worker = running.remove(&index).expect("running");
                let status = worker.child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                let log = store.folder.trial_dir(&jobs[index].trial.id).join(WORKER_LOG);
                // An empty log says nothing; keep only one that does.
                if std::fs::metadata(&log).is_ok_and(|m| m.len() == 0) {
                    let _ = std::fs::remove_file(&log);
                }
                let ending = worker.ending.unwrap_or_else(|| {
                    Err(anyhow!("the worker process ended ({status}) before reporting how the trial went; see {}", log.display()))
                });
                worker.session.close(ending, sinks, tally)?;
            }
        }
    }
}

/// The device a new worker trains on: for trials that let bertlab choose
/// (`auto`, `cuda`), the GPU running the fewest workers; the named one
/// otherwise.
fn place(job: &Job, busy: impl Iterator<Item = Device>, gpus: usize) -> Device {
    match (job.device, job.trial.config.train.device.as_str()) {
        (Device::Cuda(_), "auto" | "cuda") => {
            let mut load = vec![0usize; gpus];
            for device in busy {
                if let Device::Cuda(index) = device {
                    load[index.min(gpus - 1)] += 1;
                }
            }
            Device::Cuda((0..gpus).min_by_key(|&i| load[i]).unwrap_or(0))
        }
        (placed, _) => placed,
    }
}

fn spawn(job: &Job, placed: Device, threads: i32, store: &Store, index: usize, sender: Sender<Message>) -> Result<Child> {
    let dir = store.folder.trial_dir(&job.trial.id);
    let log_path = dir.join(WORKER_LOG);
    let log = std::fs::File::create(&log_path).context("creating worker.log")?;
    // /proc/self/exe, not current_exe(): a binary rebuilt during the sweep
    // leaves the running one's path "(deleted)", but this link still opens it.
    let named = std::env::current_exe().context("locating the bertlab executable")?;
    let exe = if cfg!(target_os = "linux") { PathBuf::from("/proc/self/exe") } else { named.clone() };
    let mut child = Command::new(exe)
        // What `ps` and `nvidia-smi` show: bertlab, not /proc/self/exe.
        .arg0(&named)
        .arg("worker")
        .arg("--device")
        .arg(device::name(placed))
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--dir")
        .arg(&dir)
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
