//! A real single-node Slurm for one test (`scripts/slurm-cluster.sh`:
//! Debian's slurm-wlm and munge, installed if missing, started by hand in
//! a temporary folder), stopped by pid when dropped.
use super::{bertlab, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the cluster; a set-up that cannot run (no root for apt, a
    /// daemon that does not start) fails the test with its reason.
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash").arg(workspace_root().join("scripts/slurm-cluster.sh")).arg("start").arg(dir.path()).output().expect("bash runs");
        assert!(
            out.status.success(),
            "the test's Slurm did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Cluster { dir }
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    /// `bertlab` talking to this cluster.
    pub fn bertlab(&self) -> Command {
        let mut cmd = bertlab();
        cmd.env("SLURM_CONF", self.conf());
        cmd
    }

    /// A Slurm client command of this cluster; its output.
    pub fn client(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program).args(args).env("SLURM_CONF", self.conf()).output().unwrap();
        assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every array task squeue lists, `(JOB_TASK, state, reason)`.
    pub fn tasks(&self) -> Vec<(String, String, String)> {
        self.client("squeue", &["--noheader", "--array", "--format=%i|%T|%r"])
            .lines()
            .filter_map(|l| {
                let mut parts = l.trim().split('|');
                Some((parts.next()?.to_string(), parts.next()?.to_string(), parts.next()?.to_string()))
            })
            .collect()
    }

    /// Waits until squeue has listed no task for 6 s, or until `done` says so. Slurm
    /// holds a requeued task for two minutes (reason `BeginTime`) before it
    /// may start again; the wait releases such holds at once, so the test
    /// sees what a requeue does without the clock.
    pub fn wait_until(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        let mut none_since: Option<Instant> = None;
        loop {
            let tasks = self.tasks();
            // As `run --wait` does: a task being requeued can drop out of
            // squeue's listing for a moment.
            none_since = if tasks.is_empty() { none_since.or(Some(Instant::now())) } else { None };
            if none_since.is_some_and(|since| since.elapsed() >= Duration::from_secs(6)) || done() {
                return;
            }
            for (task, state, reason) in &tasks {
                if state == "PENDING" && reason == "BeginTime" {
                    let _ = Command::new("scontrol").args(["update", &format!("JobId={task}"), "StartTime=now"]).env("SLURM_CONF", self.conf()).status();
                }
            }
            assert!(started.elapsed() < limit, "{what}: not within {limit:?}; squeue: {tasks:?}; {}", self.logs());
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The daemons' logs, for a failure's message.
    pub fn logs(&self) -> String {
        let tail = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default().lines().rev().take(15).collect::<Vec<_>>().join("\n");
        format!("slurmctld.log (last lines first):\n{}\nslurmd.log:\n{}", tail("slurmctld.log"), tail("slurmd.log"))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(workspace_root().join("scripts/slurm-cluster.sh")).arg("stop").arg(self.dir.path()).status();
    }
}
