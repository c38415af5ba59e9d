//! Data-parallel training (`train.devices`) on the CPU, two ranks meeting
//! through c10d's Gloo: without dropout they train what one process trains
//! (every `train/loss` and `eval/loss` point within 1e-5 relative, the same
//! trial id), in pretraining (with next-sentence pairs, and with gradient
//! accumulation on top) and in fine-tuning; a 2-rank trial whose processes
//! are all killed and resumed repeats the uninterrupted series exactly; a
//! rank killed, or hung, ends the trial within a minute with a message
//! naming it, and a re-run resumes it from its checkpoint (on as many
//! devices: another count is refused, the checkpoint kept). Under torchrun
//! the processes it starts are the ranks of every trial of the sweep, and
//! a signal to one of them stops the sweep.
mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

#[test]
fn two_ranks_train_what_one_process_trains_in_pretraining() {
    let dir = tempfile::tempdir().unwrap();
    for (name, nsp) in [("mlm", false), ("nsp", true)] {
        let text = pretraining_without_dropout(name, nsp);
        let alone = run_experiment(dir.path(), &format!("{name}-alone"), &text, &[]);
        for (suffix, sets) in [("two", vec!["train.devices=2"]), ("two-micro", vec!["train.devices=2", "train.micro_batch_size=4"])] {
            let ranks = run_experiment(dir.path(), &format!("{name}-{suffix}"), &text, &sets);
            assert_same_trial_close(&alone, &ranks, &["train/loss", "eval/loss"], &format!("{name} {sets:?}"));
        }
    }
}

#[test]
fn two_ranks_train_what_one_process_trains_in_fine_tuning() {
    let dir = tempfile::tempdir().unwrap();
    let text = fine_tuning_without_dropout(dir.path());
    let alone = run_experiment(dir.path(), "topics-alone", &text, &[]);
    // The epoch's last batch of 24 splits into 12 per rank.
    let ranks = run_experiment(dir.path(), "topics-two", &text, &["train.devices=2"]);
    assert_same_trial_close(&alone, &ranks, &["train/loss", "eval/loss", "eval/accuracy"], "fine-tuning on 2 devices");
    let trials = read_table(&ranks.join("trials.parquet"));
    assert_eq!(floats(&trials, "tokens"), floats(&read_table(&alone.join("trials.parquet")), "tokens"), "rank 0 counts the whole batch's tokens");
}

/// Two ranks long enough to be stopped several times, checkpointed often.
fn long_two_rank_run(name: &str, steps: i64) -> String {
    experiment(name, &format!("steps = {steps}\neval_every = 50\ncheckpoint_every = 25\nlog_every = 1\ndevices = 2"), "")
}

#[test]
fn a_two_rank_trial_killed_and_resumed_repeats_the_uninterrupted_series() {
    let dir = tempfile::tempdir().unwrap();
    // Dropout on: each rank's own generator state is in the checkpoint.
    let text = long_two_rank_run("killed", 800);
    let uninterrupted = run_experiment(dir.path(), "uninterrupted", &text, &[]);
    let file = write(dir.path(), "killed.toml", &text);
    let out = dir.path().join("killed");
    let kills = kill_at_random_instants(&file, &out, 7);
    assert!(kills >= 2, "only {kills} kills: the run ended too soon to be resumed twice");
    let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(statuses(&out), ["completed"]);
    let log = trial_log(&out);
    assert!(log.contains("resume"), "{log}");
    assert_same_series(&series_of(&out), &series_of(&uninterrupted), &format!("after {kills} kills"));
}

/// A 2-rank trial of 3000 steps run without retries, once it has
/// evaluated twice; then `signal` sent to its rank 1. Waits for the sweep
/// to end (within a minute) and returns the trial's folder, its id and the
/// error it was recorded `interrupted` with.
fn signal_rank_1(dir: &Path, signal: i32) -> (PathBuf, PathBuf, String, String) {
    let file = write(dir, "lost.toml", &long_two_rank_run("lost", 3000));
    let out = dir.join("lost");
    let mut sweep = start(&file, &out, &["--retries", "0"]);
    let id = wait_for_evals(&out, &mut sweep, 2);
    let rank = rank_process(&out, &id).expect("rank 1's process");
    // SAFETY: kill(2) on rank 1 of this test's trial.
    unsafe { libc::kill(rank, signal) };
    let took = wait_for_end(&mut sweep);
    assert!(took < Duration::from_secs(60), "the trial went on {took:?} after signal {signal} to its rank 1");
    assert_eq!(statuses(&out), ["interrupted"]);
    let error = strings(&read_table(&out.join("trials.parquet")), "error").remove(0);
    assert!(!Path::new(&format!("/proc/{rank}")).exists() || std::fs::read_to_string(format!("/proc/{rank}/stat")).is_ok_and(|s| s.contains(") Z ")), "rank 1 was ended");
    (file, out, id, error)
}

#[test]
fn a_rank_killed_ends_the_trial_naming_it_and_a_re_run_resumes_it_on_as_many_devices() {
    let dir = tempfile::tempdir().unwrap();
    let (file, out, id, error) = signal_rank_1(dir.path(), libc::SIGKILL);
    assert!(error.contains("rank 1") && error.contains("SIGKILL"), "{error}");

    // Another device count would not go on exactly: refused, checkpoint kept.
    let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out).args(["--set", "train.devices=1"]));
    assert_eq!(statuses(&out), ["interrupted"], "{}", r.stderr);
    assert!(r.stderr.contains("trained on 2 devices and this run has train.devices = 1"), "{}", r.stderr);
    assert!(std::fs::read_dir(out.join("trials").join(&id)).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("checkpoint-")));

    let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out));
    assert_eq!((r.code, statuses(&out)), (0, vec!["completed".to_string()]), "{}", r.stderr);
    assert!(trial_log(&out).lines().any(|l| l.starts_with(&format!("resume {id}")) && !l.ends_with("at step 0")), "{}", trial_log(&out));
}

#[test]
fn a_hung_rank_ends_the_trial_within_a_minute_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // Stopped, not ended: only the heartbeat it no longer counts tells.
    let (_, _, _, error) = signal_rank_1(dir.path(), libc::SIGSTOP);
    assert!(error.contains("rank 1 stopped answering"), "{error}");
}

#[test]
fn torchrun_starts_the_ranks_of_every_trial_of_a_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let text = pretraining_without_dropout("torchrun", false) + "\n[sweep.grid]\n\"train.lr\" = [2e-3, 1e-3]\n";
    let file = write(dir.path(), "torchrun.toml", &text);
    let torchrun = Path::new(&venv_python()).with_file_name("torchrun");
    let launch = |out: &Path, sets: &[&str]| {
        let mut cmd = launching_bertlab(&torchrun);
        cmd.args(["--nproc-per-node", "2", "--no-python", env!("CARGO_BIN_EXE_bertlab"), "run"]).arg(&file).arg("--out").arg(out);
        run(cmd.args(sets.iter().flat_map(|set| ["--set", set])))
    };
    let out = dir.path().join("ranks");
    let r = launch(&out, &["train.devices=2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(statuses(&out), ["completed", "completed"]);
    let alone = dir.path().join("alone");
    assert_eq!(run(bertlab().arg("run").arg(&file).arg("--out").arg(&alone)).code, 0);
    let (metrics, expected) = (read_table(&out.join("metrics.parquet")), read_table(&alone.join("metrics.parquet")));
    for id in strings(&read_table(&alone.join("trials.parquet")), "trial_id") {
        for key in ["train/loss", "eval/loss"] {
            assert_close(&series(&expected, &id, key), &series(&metrics, &id, key), &format!("{id} {key}"));
        }
    }
    let r = launch(&out, &["train.devices=2"]);
    assert_eq!((r.code, r.stderr.matches("skip").count()), (0, 2), "a re-run skips both: {}", r.stderr);
    let r = launch(&dir.path().join("refused"), &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("train.devices: is 1, but this run is one of 2 ranks torchrun started") && r.stderr.contains("set train.devices = 2"), "{}", r.stderr);
}

#[test]
fn under_torchrun_a_signal_to_rank_1_stops_the_trial_and_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let text = long_two_rank_run("signalled", 3000) + "\n[sweep.grid]\n\"train.lr\" = [2e-3, 1e-3]\n";
    let file = write(dir.path(), "signalled.toml", &text);
    let out = dir.path().join("signalled");
    let torchrun = Path::new(&venv_python()).with_file_name("torchrun");
    let mut cmd = launching_bertlab(&torchrun);
    cmd.args(["--nproc-per-node", "2", "--no-python", env!("CARGO_BIN_EXE_bertlab"), "run"]).arg(&file).arg("--out").arg(&out);
    let mut sweep = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_evals(&out, &mut sweep, 2);
    // torchrun's RANK=1 process of this run (tests run side by side).
    let out_arg = out.to_string_lossy().into_owned();
    let rank = std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).find(|pid| {
        let read = |what: &str| std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default();
        let has = |bytes: Vec<u8>, part: &str| bytes.split(|&b| b == 0).any(|p| p == part.as_bytes());
        has(read("cmdline"), &out_arg) && has(read("environ"), "RANK=1")
    });
    // SAFETY: kill(2) on rank 1 of this test's run.
    unsafe { libc::kill(rank.expect("rank 1's process"), libc::SIGTERM) };
    let took = wait_for_end(&mut sweep);
    assert!(took < Duration::from_secs(60), "the sweep went on {took:?} after SIGTERM to rank 1");
    // The first trial stopped at a checkpoint; the second never started
    // (it used to, to be stopped at its first step by rank 1's old signal).
    assert_eq!(statuses(&out), ["interrupted"]);
    let error = strings(&read_table(&out.join("trials.parquet")), "error").remove(0);
    assert!(error.contains("SIGTERM to rank 1"), "{error}");
}

#[test]
fn a_launchers_rank_outside_its_world_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "e.toml", &long_two_rank_run("e", 10));
    let r = run(bertlab().arg("run").arg(&file).envs([("RANK", "3"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("RANK") && r.stderr.contains("is 3, not below WORLD_SIZE=2") && r.stderr.trim().lines().count() == 1, "{}", r.stderr);
}

fn start(file: &Path, out: &Path, args: &[&str]) -> Child {
    bertlab().arg("run").arg(file).arg("--out").arg(out).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

/// How long `child` took to end from now (at most 2 minutes, then killed).
fn wait_for_end(child: &mut Child) -> Duration {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

fn trial_log(out: &Path) -> String {
    let trial = std::fs::read_dir(out.join("trials")).unwrap().next().unwrap().unwrap().path();
    std::fs::read_to_string(trial.join("log.txt")).unwrap()
}

/// The pid of rank 1 of trial `id` in run folder `out`: the process whose
/// standard error is that trial's `rank-1.log` (tests run side by side).
fn rank_process(out: &Path, id: &str) -> Option<i32> {
    let log: PathBuf = out.join("trials").join(id).join("rank-1.log");
    std::fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).find(|pid| std::fs::read_link(format!("/proc/{pid}/fd/2")).is_ok_and(|target| target == log))
}
