//! Runs up to N trials at once, each in its own worker process
//! (`bertlab worker`), so trials never share libtorch state and a crash
//! costs one trial. Placement: trials on `auto`/`cuda` take the GPUs in
//! turn (several small trials may share one); CPU workers split this
//! machine's threads between them. This process stays the only writer of
//! the tables, the display and MLflow: workers report over a pipe.
use super::protocol::Event;
use super::session::{Job, Session, Sinks, Tally};
use crate::store::Store;
use crate::train::device;
use anyhow::{anyhow, Context, Result};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Sender};
use tch::Device;

/// A message from worker `index`'s reader thread: an event, or `None` once
/// the worker closed its output.
type Message = (usize, Option<Event>);

struct Running<'a> {
    session: Session<'a>,
    child: Child,
    ending: Option<Result<crate::train::Outcome>>,
}

pub fn run(jobs: &[&Job], slots: usize, store: &mut Store, sinks: &Sinks, tally: &mut Tally) -> Result<()> {
    let threads = (tch::get_num_threads() / slots as i32).max(1);
    let gpus = tch::Cuda::device_count().max(1) as usize;
    let (sender, receiver) = channel::<Message>();
    let mut running: HashMap<usize, Running> = HashMap::new();
    let mut next = 0;
    loop {
        while running.len() < slots && next < jobs.len() {
            let job = jobs[next];
            let session = Session::open(&job.trial, store, sinks)?;
            let placed = place(job, next, gpus);
            match spawn(job, placed, threads, store, next, sender.clone()) {
                Ok(child) => {
                    running.insert(next, Running { session, child, ending: None });
                }
                Err(e) => session.close(Err(e), store, sinks, tally)?,
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
                let log = store.dir.trial_dir(&jobs[index].trial.id).join("worker.log");
                // An empty log says nothing; keep only one that does.
                if std::fs::metadata(&log).is_ok_and(|m| m.len() == 0) {
                    let _ = std::fs::remove_file(&log);
                }
                let ending = worker.ending.unwrap_or_else(|| {
                    Err(anyhow!("the worker process ended ({status}) before reporting how the trial went; see {}", log.display()))
                });
                worker.session.close(ending, store, sinks, tally)?;
            }
        }
    }
}

/// The device worker `k` trains on: GPUs in turn for trials that let
/// bertlab choose (`auto`, `cuda`), the named one otherwise.
fn place(job: &Job, k: usize, gpus: usize) -> Device {
    match (job.device, job.trial.config.train.device.as_str()) {
        (Device::Cuda(_), "auto" | "cuda") => Device::Cuda(k % gpus),
        (placed, _) => placed,
    }
}

fn spawn(job: &Job, placed: Device, threads: i32, store: &Store, index: usize, sender: Sender<Message>) -> Result<Child> {
    let dir = store.dir.trial_dir(&job.trial.id);
    let log = std::fs::File::create(dir.join("worker.log")).context("creating worker.log")?;
    let exe = std::env::current_exe().context("locating the bertlab executable")?;
    let mut child = Command::new(exe)
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
    writeln!(child.stdin.take().expect("piped stdin"), "{config}").context("sending the trial to its worker")?;
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            match serde_json::from_str::<Event>(&line) {
                Ok(event) => {
                    let _ = sender.send((index, Some(event)));
                }
                Err(e) => tracing::warn!("worker {index}: unreadable line {line:?}: {e}"),
            }
        }
        let _ = sender.send((index, None));
    });
    Ok(child)
}
