//! Checkpoints and exact resumes, through real `bertlab run`s of tiny BERTs
//! with dropout on the CPU: sweeps killed with SIGKILL (their whole process
//! group) at random instants and run again until done; SIGTERM, SIGUSR1
//! and a second SIGINT; a worker killed under `--jobs 2`; a file-size limit
//! while a checkpoint is written; a checkpoint made on other data; a
//! fine-tuning trial and one under a time budget. "Exact" is checked bit
//! for bit against an uninterrupted run of the same command.
mod common;
use common::mlflow::{mlflow_histories, Server};
use common::*;
use std::collections::{HashMap, HashSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Three trials with dropout, evaluated every 25 steps; `train` adds the
/// steps and the checkpoint settings.
fn sweep(name: &str, train: &str) -> String {
    with_dropout(experiment(name, &format!("eval_every = 25\n{train}"), "[sweep.grid]\n\"model.hidden\" = [32, 40, 48]"))
}

/// One trial with dropout, likewise.
fn single(name: &str, train: &str) -> String {
    with_dropout(experiment(name, &format!("eval_every = 25\n{train}"), ""))
}

fn with_dropout(text: String) -> String {
    text.replace("heads = 2\n", "heads = 2\ndropout = 0.1\n")
}

/// `bertlab run FILE --out OUT ARGS`, in its own process group.
fn command(file: &Path, out: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = bertlab();
    cmd.arg("run").arg(file).arg("--out").arg(out).args(args).process_group(0);
    cmd
}

fn spawn(file: &Path, out: &Path, args: &[&str]) -> Child {
    command(file, out, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn signal_group(child: &Child, signal: i32) {
    // SAFETY: kill(2) on the process group this test started.
    assert_eq!(unsafe { libc::kill(-(child.id() as i32), signal) }, 0);
}

fn record(out: &Path, id: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("trials").join(id).join("record.json")).unwrap()).unwrap()
}

fn trial_ids(out: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(out.join("trials")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    ids.sort();
    ids
}

/// Whether a kill left a checkpoint half written (a `.partial` file).
fn partial_checkpoints(out: &Path) -> usize {
    let Ok(trials) = std::fs::read_dir(out.join("trials")) else { return 0 };
    trials.flatten().flat_map(|t| std::fs::read_dir(t.path()).into_iter().flatten().flatten()).filter(|f| f.file_name().to_string_lossy().ends_with(".partial")).count()
}

/// Attempts begun and points recorded in the run folder `out`, over all
/// its trials.
fn attempts_started(out: &Path) -> (usize, usize) {
    let Ok(trials) = std::fs::read_dir(out.join("trials")) else { return (0, 0) };
    let logs: Vec<String> = trials.flatten().map(|t| std::fs::read_to_string(t.path().join("points.tsv")).unwrap_or_default()).collect();
    let attempts = logs.iter().map(|l| l.lines().filter(|l| l.starts_with("#attempt")).count()).sum();
    let points = logs.iter().map(|l| l.lines().filter(|l| !l.starts_with('#')).count()).sum();
    (attempts, points)
}

/// A small deterministic generator, so a failing sequence of kill instants
/// can be replayed (it is printed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The sweep, killed with SIGKILL (its process group: the sweep and its
/// workers) at 10 or more random instants, some of them while a checkpoint
/// was being written, and run again after each; then once to the end. It
/// must end with every trial completed once, no point twice in the tables
/// or in MLflow, and every series the uninterrupted run's, bit for bit.
fn killed_at_random_instants_resumes_exactly(jobs: &str, seed: u64) {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("faults-{jobs}");
    let file = write(dir.path(), "sweep.toml", &sweep(&name, "steps = 150\ncheckpoint_every = 1"));
    let args = ["--jobs", jobs];
    let expected = uninterrupted(&file, dir.path(), &args);

    let out = dir.path().join("out");
    let tracked = |cmd: &mut std::process::Command| {
        cmd.env("MLFLOW_TRACKING_URI", &server.uri);
    };
    let mut rng = Lcg(seed);
    let (mut kills, mut mid_checkpoint, mut instants) = (0, 0, Vec::new());
    // Kills in the folder as it is now (one that finished is started over).
    let mut kills_here = 0;
    for _ in 0..60 {
        if kills >= 10 && mid_checkpoint >= 1 && kills_here > 0 {
            break;
        }
        let mut cmd = command(&file, &out, &args);
        tracked(&mut cmd);
        let attempts_before = attempts_started(&out).0;
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        // A random instant once this run is training (not while it loads):
        // it has begun an attempt, and a point of it is on disk.
        let mut points_then = None;
        while child.try_wait().unwrap().is_none() {
            let (attempts, points) = attempts_started(&out);
            match points_then {
                None if attempts > attempts_before => points_then = Some(points),
                Some(then) if points > then => break,
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let after = Duration::from_secs_f64(0.8 * rng.next());
        std::thread::sleep(after);
        if child.try_wait().unwrap().is_some() {
            // It finished first: start over in a new folder to go on killing.
            std::fs::remove_dir_all(&out).unwrap();
            kills_here = 0;
            continue;
        }
        signal_group(&child, libc::SIGKILL);
        child.wait().unwrap();
        kills += 1;
        kills_here += 1;
        instants.push(format!("{:.2}s", after.as_secs_f64()));
        mid_checkpoint += usize::from(partial_checkpoints(&out) > 0);
    }
    eprintln!("killed at {instants:?} after training began; {mid_checkpoint} while a checkpoint was being written");
    assert!(kills >= 10, "only {kills} kills landed before the sweep finished: {instants:?}");
    assert!(mid_checkpoint >= 1, "no kill landed in a checkpoint write: {instants:?}");

    let mut cmd = command(&file, &out, &args);
    tracked(&mut cmd);
    let last = run(&mut cmd);
    assert_eq!(last.code, 0, "{}", last.stderr);
    assert!(last.stderr.contains("all records delivered"), "{}", last.stderr);
    assert_eq!(statuses(&out), ["completed"; 3]);
    let ids = trial_ids(&out);
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().any(|id| record(&out, id)["attempts"].as_u64().unwrap() > 1), "no trial was ever cut short");
    assert_same_series(&series_of(&out), &expected, &format!("--jobs {jobs}"));
    // MLflow: one run per trial (mlflow_histories checks), each step once,
    // and the values the uninterrupted run computed.
    let logged = mlflow_histories(&server.uri, &name);
    assert_eq!(logged.len(), 3);
    let mut from_mlflow = Series::new();
    for (trial, by_key) in logged {
        for (key, points) in by_key.into_iter().filter(|(k, _)| !k.starts_with("perf/")) {
            let steps: HashSet<i64> = points.iter().map(|p| p.0).collect();
            assert_eq!(steps.len(), points.len(), "{trial} {key}: a step is in MLflow twice");
            from_mlflow.extend(points.into_iter().map(|(step, value)| ((trial.clone(), key.clone(), step), value.to_bits())));
        }
    }
    assert_same_series(&from_mlflow, &expected, &format!("MLflow, --jobs {jobs}"));
}

#[test]
fn a_sweep_killed_at_random_instants_in_process_resumes_bit_for_bit() {
    killed_at_random_instants_resumes_exactly("1", 0x5eed_0001);
}

#[test]
fn a_sweep_killed_at_random_instants_with_workers_resumes_bit_for_bit() {
    killed_at_random_instants_resumes_exactly("2", 0x5eed_0002);
}

/// Waits until some trial of `out` has a checkpoint in place.
fn wait_for_checkpoint(out: &Path, child: &mut Child) {
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint was ever written");
        if let Some(status) = child.try_wait().unwrap() {
            let mut said = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut stderr, &mut said);
            }
            panic!("the run ended ({status}) before it was stopped:\n{said}");
        }
        let written = std::fs::read_dir(out.join("trials"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|t| std::fs::read_dir(t.path()).into_iter().flatten().flatten().any(|f| f.file_name().to_string_lossy().ends_with(".safetensors") && f.file_name().to_string_lossy().starts_with("checkpoint-")));
        if written {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `file` uninterrupted into `dir/reference` (with `args`) and
/// returns its series: what every resumed run must reproduce.
fn uninterrupted(file: &Path, dir: &Path, args: &[&str]) -> Series {
    let reference = dir.join("reference");
    let done = run(&mut command(file, &reference, args));
    assert_eq!(done.code, 0, "{}", done.stderr);
    series_of(&reference)
}

/// Starts `file` into `out` and kills its process group (SIGKILL) once a
/// checkpoint is in place.
fn killed_after_a_checkpoint(file: &Path, out: &Path) {
    let mut child = spawn(file, out, &[]);
    wait_for_checkpoint(out, &mut child);
    signal_group(&child, libc::SIGKILL);
    child.wait().unwrap();
}

fn output(child: Child) -> (i32, String) {
    let output = child.wait_with_output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr))
}

#[test]
fn sigterm_sigusr1_and_sigint_stop_with_a_checkpoint_and_the_rerun_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "sweep.toml", &single("signals", "steps = 600\ncheckpoint_every = 50"));
    let mut expected = HashMap::new();
    for (jobs, signal, code) in [("1", libc::SIGTERM, 143), ("2", libc::SIGTERM, 143), ("1", libc::SIGUSR1, 0), ("2", libc::SIGINT, 130)] {
        let args = ["--jobs", jobs];
        let expected = expected.entry(jobs).or_insert_with(|| uninterrupted(&file, &dir.path().join(jobs), &args));
        let out = dir.path().join(format!("out-{jobs}-{signal}"));
        let mut child = spawn(&file, &out, &args);
        wait_for_checkpoint(&out, &mut child);
        // To the sweep process only, as `kill PID` or a scheduler sends it.
        // SAFETY: kill(2) on the child this test started.
        unsafe { libc::kill(child.id() as i32, signal) };
        let sent = Instant::now();
        let (exit, said) = output(child);
        assert!(sent.elapsed() < Duration::from_secs(30), "took {:?} to stop", sent.elapsed());
        assert_eq!(exit, code, "--jobs {jobs}, signal {signal}: {said}");
        assert!(said.contains("interrupted"), "{said}");
        let interrupted: Vec<String> = trial_ids(&out).into_iter().filter(|id| record(&out, id)["status"] == "interrupted").collect();
        assert!(!interrupted.is_empty(), "no trial recorded interrupted: {said}");
        for id in &interrupted {
            let mark = &record(&out, id)["checkpoint"];
            assert!(mark["step"].as_i64().unwrap() > 0, "{id}: no checkpoint in its record");
        }
        let status = run(bertlab().arg("status").arg(&out));
        assert!(status.stdout.contains("interrupted") && status.stdout.contains("checkpoint"), "{}", status.stdout);
        let rerun = run(&mut command(&file, &out, &args));
        assert_eq!(rerun.code, 0, "{}", rerun.stderr);
        assert!(rerun.stderr.contains("resume "), "{}", rerun.stderr);
        assert_same_series(&series_of(&out), expected, &format!("stopped by {signal}, --jobs {jobs}"));
    }
}

#[test]
fn a_second_sigint_stops_at_once_and_the_last_checkpoint_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "sweep.toml", &single("twice", "steps = 600\ncheckpoint_every = 50"));
    let expected = uninterrupted(&file, dir.path(), &[]);
    let out = dir.path().join("out");
    let mut child = spawn(&file, &out, &[]);
    wait_for_checkpoint(&out, &mut child);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let (exit, said) = output(child);
    assert_eq!(exit, 130, "{said}");
    let rerun = run(&mut command(&file, &out, &[]));
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stderr.contains("resume "), "{}", rerun.stderr);
    assert_same_series(&series_of(&out), &expected, "after two SIGINTs");
}

/// The worker processes of the sweep `parent`.
fn workers_of(parent: u32) -> Vec<i32> {
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap_or_default();
    children.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

#[test]
fn a_worker_killed_mid_trial_is_retried_from_its_checkpoint_and_ends_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "sweep.toml", &sweep("retried", "steps = 300\ncheckpoint_every = 20"));
    let expected = uninterrupted(&file, dir.path(), &["--jobs", "2"]);
    for retries in ["1", "0"] {
        let out = dir.path().join(format!("out-{retries}"));
        let mut child = spawn(&file, &out, &["--jobs", "2", "--retries", retries]);
        wait_for_checkpoint(&out, &mut child);
        let worker = *workers_of(child.id()).first().expect("a worker runs");
        // SAFETY: kill(2) on a worker of the sweep this test started.
        unsafe { libc::kill(worker, libc::SIGKILL) };
        let (exit, said) = output(child);
        let retried: Vec<String> = trial_ids(&out).into_iter().filter(|id| record(&out, id)["retries"] == 1).collect();
        if retries == "1" {
            assert_eq!(exit, 0, "{said}");
            assert!(said.contains("retry "), "{said}");
            assert_eq!(retried.len(), 1, "{said}");
            assert_eq!(statuses(&out), ["completed"; 3]);
            assert_same_series(&series_of(&out), &expected, "a retried worker");
        } else {
            assert_eq!(exit, 1, "a trial failed: {said}");
            assert!(said.contains("before reporting how the trial went"), "{said}");
            assert!(retried.is_empty());
        }
    }
}

#[test]
fn a_file_size_limit_while_checkpointing_loses_nothing_and_the_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "one.toml", &single("limited", "steps = 400\ncheckpoint_every = 20"));
    let expected = uninterrupted(&file, dir.path(), &[]);
    let out = dir.path().join("out");
    killed_after_a_checkpoint(&file, &out);
    let id = trial_ids(&out).remove(0);
    let trial = out.join("trials").join(&id);
    let checkpoint_before: Vec<PathBuf> = std::fs::read_dir(&trial).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().ends_with(".safetensors")).collect();
    assert_eq!(checkpoint_before.len(), 1);
    let points_before = std::fs::read_to_string(trial.join("points.tsv")).unwrap();
    // A plain safetensors file, as Hugging Face's reader sees it.
    let read = std::process::Command::new(venv_python())
        .args(["-c", "import sys; from safetensors import safe_open\nf = safe_open(sys.argv[1], 'pt')\nprint(len(f.keys()), sorted(f.metadata()))"])
        .arg(&checkpoint_before[0])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&read.stdout);
    assert!(read.status.success() && said.contains("'bertlab.crc32', 'bertlab.cursor', 'bertlab.fingerprint', 'bertlab.place'"), "{said}{}", String::from_utf8_lossy(&read.stderr));

    // Files may grow to 64 KiB: the points and records fit, a checkpoint
    // of the model (about 1.3 MB) does not.
    let mut limited = command(&file, &out, &[]);
    // SAFETY: setrlimit between fork and exec.
    unsafe {
        limited.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 64 << 10, rlim_max: 64 << 10 };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let failed = run(&mut limited);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    let line = failed.stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line: {}", failed.stderr));
    assert!(line.contains("checkpoint-") && line.contains(".partial") && line.contains("File too large"), "{line}");
    assert_eq!(partial_checkpoints(&out), 0, "the half-written checkpoint was removed");
    assert!(std::fs::read_to_string(trial.join("points.tsv")).unwrap().starts_with(&points_before), "recorded points were kept");
    for checkpoint in &checkpoint_before {
        assert!(checkpoint.exists(), "the previous checkpoint {} is gone", checkpoint.display());
    }
    assert_eq!(record(&out, &id)["status"], "interrupted");

    let rerun = run(&mut command(&file, &out, &[]));
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stderr.contains("resume "), "{}", rerun.stderr);
    assert_same_series(&series_of(&out), &expected, "after a failed checkpoint write");
}

#[test]
fn a_checkpoint_made_on_other_data_is_refused_saying_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    for entry in std::fs::read_dir(workspace_root().join("experiments/data")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "txt") {
            std::fs::copy(&path, corpus.join(path.file_name().unwrap())).unwrap();
        }
    }
    let text = single("stale", "steps = 400\ncheckpoint_every = 20").replace("experiments/data/*.txt", &format!("{}/*.txt", corpus.display()));
    let file = write(dir.path(), "stale.toml", &text);
    let out = dir.path().join("out");
    killed_after_a_checkpoint(&file, &out);
    // The corpus changes under the same path: same trial id, other examples.
    let first = std::fs::read_dir(&corpus).unwrap().next().unwrap().unwrap().path();
    let mut edited = std::fs::read_to_string(&first).unwrap();
    edited.push_str("\n\nA new document about something else entirely, added after the checkpoint.\n");
    std::fs::write(&first, edited).unwrap();
    let refused = run(&mut command(&file, &out, &[]));
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    let line = refused.stderr.lines().find(|l| l.contains("was made for a different trial")).unwrap_or_else(|| panic!("{}", refused.stderr));
    assert!(line.contains("examples:") && line.contains("--fresh"), "{line}");
    assert_eq!(statuses(&out), ["failed"]);
    let fresh = run(&mut command(&file, &out, &["--fresh"]));
    assert_eq!(fresh.code, 0, "{}", fresh.stderr);
    assert!(!fresh.stderr.contains("resume "), "{}", fresh.stderr);
}

#[test]
fn a_fine_tuning_trial_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let pretrained = run(&mut command(&write(dir.path(), "pre.toml", &experiment("pre", "steps = 20\neval_every = 0", "")), &dir.path().join("pre"), &[]));
    assert_eq!(pretrained.code, 0, "{}", pretrained.stderr);
    let text = format!(
        "[experiment]\nname = \"tune\"\ntask = \"classification\"\nmetric = \"eval/accuracy\"\ngoal = \"maximize\"\n\n[model]\ninit = \"{}/pre/trials/*\"\ndropout = 0.1\n\n[data]\ntrain = \"experiments/data/topics-train.tsv\"\neval = \"experiments/data/topics-dev.tsv\"\ntext_columns = [\"sentence\"]\nlabel_column = \"label\"\nseq_len = 64\n\n[train]\nsteps = 400\nbatch_size = 8\nlr = 1e-4\neval_every = 40\ncheckpoint_every = 10\ndevice = \"cpu\"\n",
        dir.path().display()
    );
    let file = write(dir.path(), "tune.toml", &text);
    let expected = uninterrupted(&file, dir.path(), &[]);
    let out = dir.path().join("out");
    killed_after_a_checkpoint(&file, &out);
    let rerun = run(&mut command(&file, &out, &[]));
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stderr.contains("resume "), "{}", rerun.stderr);
    let series = series_of(&out);
    assert!(series.keys().any(|k| k.1 == "eval/accuracy"), "{series:?}");
    assert_same_series(&series, &expected, "a fine-tuning trial");
}

#[test]
fn a_trial_under_a_time_budget_resumes_with_the_budget_it_had_left() {
    let dir = tempfile::tempdir().unwrap();
    // Room for the first checkpoint and two seconds more before the budget
    // runs out, on a loaded machine too (a CI run under load saw a 5 s
    // budget end first).
    let file = write(dir.path(), "budget.toml", &single("budget", "steps = 1000000\nbudget = \"12s\"\ncheckpoint_every = 20").replace("eval_every = 25", "eval_every = 100"));
    let out = dir.path().join("out");
    let mut child = spawn(&file, &out, &[]);
    wait_for_checkpoint(&out, &mut child);
    std::thread::sleep(Duration::from_secs(2));
    signal_group(&child, libc::SIGKILL);
    child.wait().unwrap();
    let id = trial_ids(&out).remove(0);
    let resumed_at = record(&out, &id)["checkpoint"]["step"].as_i64().unwrap();
    let rerun = run(&mut command(&file, &out, &[]));
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stderr.contains(&format!("resume {id}")), "{}", rerun.stderr);
    // The learning rate decays over the budget: had the resumed attempt
    // been given the whole budget again, it would jump back up.
    let metrics = read_table(&out.join("metrics.parquet"));
    let lr = series(&metrics, &id, "train/lr");
    let before = lr.iter().rev().find(|p| p.0 <= resumed_at).unwrap().1;
    let after = lr.iter().find(|p| p.0 > resumed_at).unwrap().1;
    assert!(after <= before, "lr {before} at the checkpoint (step {resumed_at}), {after} after it");
    assert!(lr.last().unwrap().1 < before, "the budget ran out after the resume");
    let steps: HashMap<i64, usize> = lr.iter().fold(HashMap::new(), |mut m, p| {
        *m.entry(p.0).or_default() += 1;
        m
    });
    assert!(steps.values().all(|&n| n == 1));
}
