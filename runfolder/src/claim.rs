//! Claims: which process may write a trial (or the tables), across
//! processes and machines that share the run folder. A claim is a file
//! `claim.<n>` made with an exclusive create (`O_EXCL`), which NFS v3+ and
//! every local filesystem make atomic; advisory locks are not used, as they
//! are unreliable on network filesystems. It says who holds it (host, pid
//! and the pid's start time, so a reused pid is not mistaken for the
//! owner), and its holder touches it every [`HEARTBEAT`] as a heartbeat.
//!
//! A claim is stale when its holder is a dead process on this host, or its
//! heartbeat is older than [`STALE_AFTER`] (a holder on another machine).
//! Taking over a stale claim is making the next generation, `claim.<n+1>`,
//! exclusively: of several processes that find the same stale claim, one
//! wins. The holder is the live claim of the highest generation; whoever
//! makes a claim looks again afterwards and gives way if a higher live one
//! exists, and a holder whose claim is overtaken learns it at its next
//! heartbeat ([`Claim::lost`]) and must not write.
use crate::record::Owner;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub const HEARTBEAT: Duration = Duration::from_secs(5);
pub const STALE_AFTER: Duration = Duration::from_secs(120);
const PREFIX: &str = "claim.";

/// What a claim file says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Holder {
    host: String,
    /// This boot of this machine, and its pid namespace: two containers
    /// with one hostname do not share pids.
    #[serde(default)]
    machine: String,
    pid: u32,
    /// The pid's start time in clock ticks since boot (`/proc/<pid>/stat`).
    pid_start: Option<u64>,
    since_ms: i64,
}

/// Somebody else's live claim, as `status` and `run` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub owner: Owner,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_s: f64,
}

/// A claim this process holds; dropping it releases it.
pub struct Claim {
    dir: PathBuf,
    generation: u64,
    lost: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

pub enum Attempt {
    Mine(Claim),
    Theirs(Held),
}

/// Tries to claim `dir` (which must exist).
pub fn try_claim(dir: &Path) -> std::io::Result<Attempt> {
    let claims = list(dir)?;
    if let Some((_, held)) = claims.iter().rev().find_map(|(n, path)| live(path).map(|h| (*n, h))) {
        return Ok(Attempt::Theirs(held));
    }
    let generation = claims.last().map_or(1, |(n, _)| n + 1);
    let path = dir.join(format!("{PREFIX}{generation}"));
    let me = Holder { host: host(), machine: machine(), pid: std::process::id(), pid_start: pid_start(std::process::id()), since_ms: crate::record::now_ms() };
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(file) => {
            use std::io::Write;
            let mut file = file;
            file.write_all(&serde_json::to_vec(&me).map_err(std::io::Error::other)?)?;
            file.sync_all()?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Somebody made this generation first.
            return match live(&path) {
                Some(held) => Ok(Attempt::Theirs(held)),
                None => try_claim(dir),
            };
        }
        Err(e) => return Err(e),
    }
    if let Some(held) = overtaken(dir, generation) {
        let _ = std::fs::remove_file(&path);
        return Ok(Attempt::Theirs(held));
    }
    let lost = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let (dir, lost, stop) = (dir.to_owned(), lost.clone(), stop.clone());
        std::thread::spawn(move || beat(&dir, generation, &lost, &stop))
    };
    Ok(Attempt::Mine(Claim { dir: dir.to_owned(), generation, lost, stop, heartbeat: Some(heartbeat) }))
}

/// Claims `dir`, waiting while somebody else holds it (for the short
/// claims that order changes to the tables).
pub fn wait_for(dir: &Path) -> std::io::Result<Claim> {
    std::fs::create_dir_all(dir)?;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Attempt::Mine(claim) = try_claim(dir)? {
            return Ok(claim);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// The live claim on `dir`, if any.
pub fn holder(dir: &Path) -> Option<Held> {
    list(dir).ok()?.iter().rev().find_map(|(_, path)| live(path))
}

impl Claim {
    /// Whether another process took this claim over (it found this one
    /// stale): the holder must stop writing.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst) || overtaken(&self.dir, self.generation).is_some()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.thread().unpark();
            let _ = heartbeat.join();
        }
        if self.lost.load(Ordering::SeqCst) {
            return;
        }
        // Ours and the stale ones below it.
        for (n, path) in list(&self.dir).unwrap_or_default() {
            if n <= self.generation {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn beat(dir: &Path, generation: u64, lost: &AtomicBool, stop: &AtomicBool) {
    let path = dir.join(format!("{PREFIX}{generation}"));
    while !stop.load(Ordering::SeqCst) {
        std::thread::park_timeout(HEARTBEAT);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let touched = std::fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
        // A passing error (an NFS hiccup) is tried again at the next beat;
        // a claim removed or overtaken is lost.
        let gone = matches!(&touched, Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        if gone || overtaken(dir, generation).is_some() {
            lost.store(true, Ordering::SeqCst);
            return;
        }
    }
}

/// A live claim of a higher generation than `generation`.
fn overtaken(dir: &Path, generation: u64) -> Option<Held> {
    list(dir).ok()?.into_iter().rev().filter(|(n, _)| *n > generation).find_map(|(_, path)| live(&path))
}

/// The claim files of `dir` by generation, lowest first.
fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut claims = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(claims),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if let Some(n) = entry.file_name().to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|n| n.parse().ok()) {
            claims.push((n, entry.path()));
        }
    }
    claims.sort();
    Ok(claims)
}

/// The claim at `path` if its holder is alive.
fn live(path: &Path) -> Option<Held> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let age = SystemTime::now().duration_since(modified).unwrap_or_default();
    if age > STALE_AFTER {
        return None;
    }
    let holder: Option<Holder> = std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let Some(holder) = holder else {
        // Made this instant, its content not written yet.
        return Some(Held { owner: Owner { host: "?".into(), pid: 0 }, heartbeat_age_s: age.as_secs_f64() });
    };
    if holder.host == host() && holder.machine == machine() && !alive(holder.pid, holder.pid_start) {
        return None;
    }
    Some(Held { owner: Owner { host: holder.host, pid: holder.pid }, heartbeat_age_s: age.as_secs_f64() })
}

/// Whether `pid` runs on this host and is the process that started at
/// `start` (pids are reused).
fn alive(pid: u32, start: Option<u64>) -> bool {
    if !Path::new("/proc/self/stat").exists() {
        return true; // no way to tell here: the heartbeat decides
    }
    match (pid_start(pid), start) {
        (None, _) => false,
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
    }
}

/// Field 22 of `/proc/<pid>/stat`, after the parenthesised command name
/// (which may itself hold spaces and parentheses). Zombies count as dead.
fn pid_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// This boot of this machine and this pid namespace: where a pid means
/// the same process ("" where /proc does not say).
fn machine() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let namespace = std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default();
    format!("{} {namespace}", boot.trim())
}

/// This machine's name, as claims and records give it.
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_a_released_claim_can_be_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let Attempt::Mine(first) = try_claim(dir.path()).unwrap() else { panic!("free at first") };
        let Attempt::Theirs(held) = try_claim(dir.path()).unwrap() else { panic!("a second claim while the first is held") };
        assert_eq!(held.owner.pid, std::process::id());
        assert!(!first.lost());
        drop(first);
        assert!(holder(dir.path()).is_none());
        assert!(matches!(try_claim(dir.path()).unwrap(), Attempt::Mine(_)));
    }

    #[test]
    fn a_dead_holders_claim_is_taken_over_by_the_next_generation() {
        let dir = tempfile::tempdir().unwrap();
        // A claim by a process that has exited.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = Holder { host: host(), machine: machine(), pid, pid_start: Some(1), since_ms: 0 };
        std::fs::write(dir.path().join("claim.1"), serde_json::to_vec(&dead).unwrap()).unwrap();
        assert!(holder(dir.path()).is_none(), "a dead holder holds nothing");
        let Attempt::Mine(claim) = try_claim(dir.path()).unwrap() else { panic!("stale claims are taken over") };
        assert_eq!(claim.generation, 2);
        drop(claim);
        assert!(list(dir.path()).unwrap().is_empty(), "releasing clears the stale claim too");
    }

    #[test]
    fn a_claim_from_another_machine_is_stale_once_its_heartbeat_stops() {
        let dir = tempfile::tempdir().unwrap();
        let other = Holder { host: "elsewhere".into(), machine: String::new(), pid: 1, pid_start: None, since_ms: 0 };
        let path = dir.path().join("claim.1");
        std::fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
        // A live pid elsewhere cannot be checked from here: the heartbeat decides.
        assert_eq!(holder(dir.path()).unwrap().owner.host, "elsewhere");
        let silent_since = SystemTime::now() - STALE_AFTER - Duration::from_secs(1);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(silent_since).unwrap();
        assert!(holder(dir.path()).is_none());
        assert!(matches!(try_claim(dir.path()).unwrap(), Attempt::Mine(_)));
    }

    #[test]
    fn a_holder_overtaken_by_a_higher_generation_knows_it_lost() {
        let dir = tempfile::tempdir().unwrap();
        let Attempt::Mine(claim) = try_claim(dir.path()).unwrap() else { panic!() };
        // Another machine decided this claim was stale and took over.
        let other = Holder { host: "elsewhere".into(), machine: String::new(), pid: 1, pid_start: None, since_ms: 0 };
        std::fs::write(dir.path().join("claim.2"), serde_json::to_vec(&other).unwrap()).unwrap();
        assert!(claim.lost());
        drop(claim);
        assert!(dir.path().join("claim.2").exists(), "a lost claim removes nothing");
    }
}
