//! `--launcher slurm` against a real single-node Slurm (one per test, see
//! `common::slurm`): a sweep submitted with `--wait` equals a local run bit
//! for bit; a task requeued mid-trial and a trial longer than its time slot
//! resume from their checkpoints and end with the uninterrupted series;
//! submitting twice, `--retry-failed` and `cancel` never train a trial
//! twice; a trial on two devices is an array task of two srun tasks, its
//! ranks. Tasks get one CPU each, and the local runs they are compared with
//! use `--jobs 2` on this 2-core machine, also one thread per trial: the
//! thread count is part of the arithmetic.
mod common;
use common::mlflow::{mlflow_histories, search_runs, Server};
use common::slurm::Cluster;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Trials with dropout on the bundled corpus, each a task with one CPU.
fn experiment_file(dir: &Path, name: &str, train: &str, grid: &str, slurm: &str) -> std::path::PathBuf {
    let text = experiment(name, train, &format!("{grid}\n\n[launch.slurm]\ncpus_per_task = 1\n{slurm}")).replace("heads = 2\n", "heads = 2\ndropout = 0.1\n");
    write(dir, &format!("{name}.toml"), &text)
}

/// The same file trained here, uninterrupted, one thread per trial; the
/// series of its completed trials.
fn local_series(file: &Path, out: &Path) -> Series {
    let done = run(bertlab().arg("run").arg(file).arg("--out").arg(out).args(["--jobs", "2"]));
    assert!(done.code == 0 || statuses(out).contains(&"failed".to_string()), "{}", done.stderr);
    completed_series(out)
}

/// The series of the run folder's completed trials (`series_of` checks
/// that no point is there twice).
fn completed_series(out: &Path) -> Series {
    series_of(out).into_iter().filter(|((id, _, _), _)| record(out, id)["status"] == "completed").collect()
}

fn submit(cluster: &Cluster, file: &Path, out: &Path, args: &[&str]) -> Run {
    run(cluster.bertlab().arg("run").arg(file).arg("--out").arg(out).arg("--launcher").arg("slurm").args(args))
}

fn record(out: &Path, id: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("trials").join(id).join("record.json")).unwrap()).unwrap()
}

fn only_trial(out: &Path) -> String {
    let mut ids = std::fs::read_dir(out.join("trials")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap());
    let id = ids.next().expect("a trial started");
    assert!(ids.next().is_none());
    id
}

fn submissions(out: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(out.join("slurm/submissions.jsonl")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn task_logs(out: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(out.join("slurm/logs")).unwrap() {
        text += &std::fs::read_to_string(entry.unwrap().path()).unwrap();
    }
    text
}

/// Waits until the run folder's one trial has a checkpoint at step `step`
/// or later (its task is training it).
fn wait_for_checkpoint(cluster: &Cluster, out: &Path, step: i64) -> String {
    let started = Instant::now();
    loop {
        if let Some(id) = std::fs::read_dir(out.join("trials")).ok().and_then(|mut d| d.next()).map(|e| e.unwrap().file_name().into_string().unwrap()) {
            if std::fs::read(out.join("trials").join(&id).join("record.json")).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()).is_some_and(|r| r["checkpoint"]["step"].as_i64().is_some_and(|s| s >= step)) {
                return id;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(180), "no checkpoint at step {step}; squeue {:?}; {}", cluster.tasks(), cluster.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_sweep_submitted_with_wait_equals_a_local_run() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let file = experiment_file(dir.path(), "four", "steps = 60\neval_every = 20", "[sweep.grid]\n\"model.hidden\" = [32, 40]\n\"train.lr\" = [1e-3, 2e-3]", "max_parallel = 2");
    let out = dir.path().join("slurm");
    let server = Server::start();
    let started = Instant::now();
    let done = run(cluster.bertlab().env("MLFLOW_TRACKING_URI", &server.uri).arg("run").arg(&file).arg("--out").arg(&out).args(["--launcher", "slurm", "--wait"]));
    let slurm_s = started.elapsed().as_secs_f64();
    assert_eq!(done.code, 0, "{}{}\n{}", done.stdout, done.stderr, task_logs(&out));
    assert!(done.stderr.contains("slurm submitted job"), "{}", done.stderr);
    assert_eq!(statuses(&out), vec!["completed"; 4]);
    let started = Instant::now();
    let local = local_series(&file, &dir.path().join("local"));
    eprintln!("wall: through Slurm (--wait, 2 tasks at once) {slurm_s:.1}s, local --jobs 2 {:.1}s", started.elapsed().as_secs_f64());
    assert_same_series(&completed_series(&out), &local, "the sweep through Slurm");

    // MLflow: the parent run made at submission, each task's trial under it
    // with every point of the tables once.
    let runs = search_runs(&server.uri, "four");
    assert_eq!(runs.len(), 5, "a parent and four trials: {runs:?}");
    let tag = |run: &serde_json::Value, key: &str| run["data"]["tags"].as_array().unwrap().iter().find(|t| t["key"] == key).and_then(|t| t["value"].as_str().map(String::from));
    let parents: Vec<&serde_json::Value> = runs.iter().filter(|r| tag(r, "bertlab.trial_id").is_none()).collect();
    assert_eq!(parents.len(), 1);
    let parent = parents[0]["info"]["run_id"].as_str().unwrap();
    assert!(runs.iter().filter(|r| tag(r, "bertlab.trial_id").is_some()).all(|r| tag(r, "mlflow.parentRunId").as_deref() == Some(parent)));
    let mut logged = Series::new();
    for (trial, keys) in mlflow_histories(&server.uri, "four") {
        for (key, points) in keys.into_iter().filter(|(key, _)| !key.starts_with("perf/")) {
            for (step, value) in points {
                assert!(logged.insert((trial.clone(), key.clone(), step), value.to_bits()).is_none(), "{trial} {key} {step} twice in MLflow");
            }
        }
    }
    assert_same_series(&logged, &local, "MLflow's histories");

    // What the submission left: the script and trial list, one log per
    // task, the report (written by the last task and by --wait), and the
    // launcher in run.toml.
    let script = std::fs::read_to_string(out.join("slurm/array-1.sbatch")).unwrap();
    for line in ["#SBATCH --array=0-3%2", "#SBATCH --cpus-per-task=1", "#SBATCH --requeue", "#SBATCH --signal=B:USR1@120"] {
        assert!(script.lines().any(|l| l == line), "{line} in\n{script}");
    }
    assert_eq!(std::fs::read_dir(out.join("slurm/logs")).unwrap().count(), 4);
    assert!(out.join("report.html").exists());
    let run_toml: toml::Table = std::fs::read_to_string(out.join("run.toml")).unwrap().parse().unwrap();
    assert_eq!(run_toml["launch"]["launcher"].as_str(), Some("slurm"));
    assert_eq!(run_toml["launch"]["slurm"]["max_parallel"].as_integer(), Some(2));

    // Status names each trial's array task; nothing is left to submit.
    let status = run(cluster.bertlab().arg("status").arg(&out).args(["--format", "json"]));
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let job = submissions(&out)[0]["job_id"].as_str().unwrap().to_string();
    let mut tasks: Vec<String> = status["trials"].as_array().unwrap().iter().map(|t| t["slurm_task"].as_str().unwrap().to_string()).collect();
    tasks.sort();
    assert_eq!(tasks, (0..4).map(|i| format!("{job}_{i}")).collect::<Vec<_>>());
    let again = submit(&cluster, &file, &out, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("nothing to submit; left out: 4 completed"), "{}", again.stderr);
    assert_eq!(submissions(&out).len(), 1);
}

#[test]
fn a_trial_on_two_devices_trains_on_two_tasks_as_one_process_does() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let text = pretraining_without_dropout("two", false) + "\n[launch.slurm]\ncpus_per_task = 1\n";
    let file = write(dir.path(), "two.toml", &text);
    let out = dir.path().join("slurm");
    let done = run(cluster.bertlab().arg("run").arg(&file).arg("--out").arg(&out).args(["--launcher", "slurm", "--wait", "--set", "train.devices=2"]));
    assert_eq!(done.code, 0, "{}{}\n{}", done.stdout, done.stderr, task_logs(&out));
    assert_eq!(statuses(&out), ["completed"]);
    let script = std::fs::read_to_string(out.join("slurm/array-1.sbatch")).unwrap();
    assert!(script.lines().any(|l| l == "#SBATCH --ntasks=2") && script.contains("exec srun --kill-on-bad-exit=1 "), "{script}");
    let alone = run_experiment(dir.path(), "alone", &text, &[]);
    assert_same_trial_close(&alone, &out, &["train/loss", "eval/loss"], "two srun tasks");
}

#[test]
fn a_task_requeued_mid_trial_resumes_from_its_checkpoint() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let file = experiment_file(dir.path(), "requeued", "steps = 1500\neval_every = 250\ncheckpoint_every = 50", "", "");
    let out = dir.path().join("slurm");
    let done = submit(&cluster, &file, &out, &[]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let job = submissions(&out)[0]["job_id"].as_str().unwrap().to_string();
    let id = wait_for_checkpoint(&cluster, &out, 200);
    cluster.client("scontrol", &["requeue", &format!("{job}_0")]);
    // The tables, not the record: the task writes them after it (reading
    // them at the record's word raced with the task's last write).
    cluster.wait_until("the requeued trial", Duration::from_secs(300), || out.join("trials.parquet").exists() && statuses(&out) == ["completed"]);
    let record = record(&out, &id);
    assert_eq!(record["status"], "completed", "{}", task_logs(&out));
    let log = std::fs::read_to_string(out.join("trials").join(&id).join("log.txt")).unwrap();
    let resumed = log.lines().find(|l| l.starts_with("resume ")).unwrap_or_else(|| panic!("no resume in\n{log}"));
    let step: i64 = resumed.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(step >= 200, "{resumed}");
    assert!(task_logs(&out).contains("DUE TO JOB REQUEUE"), "{}", task_logs(&out));
    assert_same_series(&completed_series(&out), &local_series(&file, &dir.path().join("local")), "the requeued trial");
}

#[test]
fn a_trial_longer_than_its_time_slot_finishes_across_slots() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    // About 65 s of training at one thread; a slot is one minute, and the
    // warning, asked for 20 s before its end, may come up to a minute
    // earlier (sbatch(1)): here it came 25 to 40 s into each slot.
    let file = experiment_file(dir.path(), "slots", "steps = 10000\neval_every = 1000\ncheckpoint_every = 500", "[sweep.grid]\n\"model.hidden\" = [64]", "time = \"1\"\nsignal_lead = 20");
    let out = dir.path().join("slurm");
    let reference = dir.path().join("local");
    // The uninterrupted run trains beside the task, on the other core.
    let local = std::thread::spawn({
        let (file, reference) = (file.clone(), reference.clone());
        move || local_series(&file, &reference)
    });
    let done = submit(&cluster, &file, &out, &[]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    // The tables, written after the record says completed.
    cluster.wait_until("the trial across time slots", Duration::from_secs(600), || out.join("trials.parquet").exists() && statuses(&out) == ["completed"]);
    let id = only_trial(&out);
    let logs = task_logs(&out);
    assert_eq!(record(&out, &id)["status"], "completed", "{logs}");
    let slots = logs.matches("stopped by SIGUSR1").count();
    assert!(slots >= 1, "the trial never reached a time limit:\n{logs}");
    assert!(logs.matches("requeued: it resumes").count() >= slots, "{logs}");
    let log = std::fs::read_to_string(out.join("trials").join(&id).join("log.txt")).unwrap();
    assert!(log.lines().filter(|l| l.starts_with("resume ")).count() >= slots, "{log}");
    eprintln!("the trial took {} time slots", slots + 1);
    assert_same_series(&completed_series(&out), &local.join().unwrap(), "the trial across time slots");
}

#[test]
fn submitting_twice_retry_failed_and_cancel_never_train_a_trial_twice() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    // Three trials one at a time; lr = 1e9 diverges and fails on its own.
    // The trial ids are the same as the local run's: [launch] is not part
    // of any trial.
    let file = experiment_file(dir.path(), "twice", "steps = 1200\neval_every = 200\ncheckpoint_every = 50", "[sweep.grid]\n\"train.lr\" = [1e-3, 2e-3, 1e9]", "max_parallel = 1");
    let out = dir.path().join("slurm");
    assert_eq!(submit(&cluster, &file, &out, &[]).code, 0);
    // While its tasks live, a second submission adds nothing.
    let again = submit(&cluster, &file, &out, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("nothing to submit; left out: 3 owned by live jobs or processes"), "{}", again.stderr);
    assert_eq!(submissions(&out).len(), 1);

    // Cancelled once a trial is under way: it checkpoints, is not requeued,
    // and the queued tasks go too.
    let first = wait_for_checkpoint(&cluster, &out, 100);
    let cancelled = run(cluster.bertlab().arg("cancel").arg(&out));
    assert_eq!(cancelled.code, 0, "{}", cancelled.stderr);
    assert!(cancelled.stdout.contains("cancelled Slurm jobs"), "{}", cancelled.stdout);
    cluster.wait_until("the cancelled jobs", Duration::from_secs(120), || false);
    assert_eq!(record(&out, &first)["status"], "interrupted", "{}", task_logs(&out));
    assert!(task_logs(&out).contains("not requeued: its job was cancelled"), "{}", task_logs(&out));
    let status = run(cluster.bertlab().arg("status").arg(&out));
    assert_eq!(status.stdout.matches("| not started |").count(), 2, "{}", status.stdout);

    // Submitted again: every trial runs, the interrupted one from its checkpoint.
    let resumed = submit(&cluster, &file, &out, &["--wait"]);
    assert_eq!(resumed.code, 1, "the diverging trial fails: {}", resumed.stderr);
    let log = std::fs::read_to_string(out.join("trials").join(&first).join("log.txt")).unwrap();
    assert!(log.contains("resume "), "{log}");
    let mut by_status = statuses(&out);
    by_status.sort();
    assert_eq!(by_status, ["completed", "completed", "failed"]);

    // Failed trials are left out unless asked for; --retry-failed submits
    // the failed one alone, and the completed trials are never trained again.
    let plain = submit(&cluster, &file, &out, &[]);
    assert!(plain.stderr.contains("nothing to submit; left out: 2 completed, 1 failed (--retry-failed submits them again)"), "{}", plain.stderr);
    let retried = submit(&cluster, &file, &out, &["--retry-failed", "--wait"]);
    assert_eq!(retried.code, 1, "{}", retried.stderr);
    let all = submissions(&out);
    assert_eq!(all.last().unwrap()["trials"].as_array().unwrap().len(), 1, "{all:?}");
    for id in std::fs::read_dir(out.join("trials")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()) {
        let record = record(&out, &id);
        if record["status"] == "completed" {
            assert_eq!(record["attempts"], if id == first { 2 } else { 1 }, "{id}: {record}");
        }
    }
    // Exact through the cancel, and no point twice (series_of checks).
    let local = local_series(&file, &dir.path().join("local"));
    assert_eq!(local.keys().map(|k| &k.0).collect::<std::collections::HashSet<_>>().len(), 2);
    assert_same_series(&completed_series(&out), &local, "the sweep through a cancel");
}

/// Early stopping and a search decide what trains as the sweep goes, so
/// the array's tasks are workers sharing the run folder's decision logs.
#[test]
fn a_search_with_early_stopping_runs_on_workers() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let search = "[sweep.search]\nmethod = \"tpe\"\ntrials = 8\nstartup = 3\n\"train.lr\" = { log_uniform = [1e-5, 1e-1] }\n\n[sweep.early_stop]\nmethod = \"asha\"\nmin_steps = 20\neta = 3";
    let file = experiment_file(dir.path(), "adaptive", "steps = 180\neval_every = 20\ncheckpoint_every = 10", search, "max_parallel = 2");
    let out = dir.path().join("slurm");
    let done = submit(&cluster, &file, &out, &["--wait"]);
    assert_eq!(done.code, 0, "{}{}\n{}", done.stdout, done.stderr, task_logs(&out));
    assert!(done.stderr.contains("2 worker tasks"), "{}", done.stderr);
    let script = std::fs::read_to_string(out.join("slurm/array-1.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-1%2") && !script.contains("--trial"), "{script}");
    // Eight distinct suggestions between the two workers, each trial
    // judged once at each rung it reached, no step trained twice.
    let suggested: Vec<serde_json::Value> = std::fs::read_to_string(out.join("search.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut trials: Vec<String> = suggested.iter().map(|s| s["trials"][0].as_str().unwrap().to_string()).collect();
    trials.sort();
    trials.dedup();
    assert_eq!(trials.len(), 8, "{suggested:?}");
    let log = std::fs::read_to_string(out.join("early-stop.jsonl")).unwrap();
    let mut reached: Vec<String> = log.lines().filter(|l| l.contains("\"reached\"")).map(|l| {
        let e: serde_json::Value = serde_json::from_str(l).unwrap();
        format!("{} {}", e["trial"], e["rung"])
    }).collect();
    let arrivals = reached.len();
    reached.sort();
    reached.dedup();
    assert_eq!(reached.len(), arrivals, "a trial reached a rung twice:\n{log}");
    for trial in &trials {
        assert!(log.contains(&format!("\"trial\":\"{trial}\",\"rung\":20")), "{trial} never reached the first rung:\n{log}");
    }
    steps_trained(&out);
    let statuses = statuses(&out);
    assert_eq!(statuses.len(), 8);
    assert!(statuses.iter().all(|s| s == "completed" || s == "pruned") && statuses.iter().any(|s| s == "completed"), "{statuses:?}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## Search and early stopping"), "{report}");
    // Nothing is left for workers to do.
    let again = submit(&cluster, &file, &out, &[]);
    assert!(again.stderr.contains("nothing to submit"), "{}", again.stderr);
}
