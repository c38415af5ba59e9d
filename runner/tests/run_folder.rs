//! Run folders shared by several processes and cut short by kills: real
//! `bertlab run`s of tiny BERTs on one folder at once, a `kill -9`
//! mid-trial, and a folder in the layout from before per-trial records.
//! "Trained once" is counted from the trials' own records and point logs,
//! not from what the runs print.
mod common;
use common::*;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Stdio};

fn record(out: &Path, id: &str) -> serde_json::Value {
    let path = out.join("trials").join(id).join("record.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// How many attempts `points.tsv` of trial `id` holds.
fn attempts_logged(out: &Path, id: &str) -> usize {
    let points = std::fs::read_to_string(out.join("trials").join(id).join("points.tsv")).unwrap();
    points.lines().filter(|l| l.starts_with("#attempt")).count()
}

fn spawn_run(file: &Path, out: &Path) -> Child {
    bertlab().arg("run").arg(file).arg("--out").arg(out).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Every (trial, key, step) of the metrics table once.
fn assert_no_point_twice(out: &Path) {
    let metrics = read_table(&out.join("metrics.parquet"));
    let (ids, keys, steps) = (strings(&metrics, "trial_id"), strings(&metrics, "key"), floats(&metrics, "step"));
    let mut seen = HashSet::new();
    for i in 0..metrics.height() {
        assert!(seen.insert((ids[i].clone(), keys[i].clone(), steps[i] as i64)), "({}, {}, {}) is in metrics.parquet twice", ids[i], keys[i], steps[i]);
    }
}

#[test]
fn runs_started_together_on_one_folder_train_every_trial_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.toml", &experiment("a", "steps = 30\neval_every = 10", "[sweep.grid]\n\"model.layers\" = [1, 2]"));
    let b = write(dir.path(), "b.toml", &experiment("b", "steps = 30\neval_every = 15", "[sweep.grid]\n\"model.hidden\" = [32, 48]"));
    let out = dir.path().join("shared");
    // Two runs of each file, all at once.
    let children: Vec<(&str, Child)> = [("a", &a), ("a", &a), ("b", &b), ("b", &b)].into_iter().map(|(n, f)| (n, spawn_run(f, &out))).collect();
    let mut completed_by: HashMap<&str, usize> = HashMap::new();
    for (name, child) in children {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{name}: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
        let summary = stdout.lines().find(|l| l.contains(" completed, ") && l.contains("Results: ")).unwrap_or_else(|| panic!("no summary line: {stdout}"));
        *completed_by.entry(name).or_default() += summary.split(' ').next().unwrap().parse::<usize>().unwrap();
    }
    // Between them, the two runs of a file trained its two trials once.
    assert_eq!(completed_by, HashMap::from([("a", 2), ("b", 2)]));

    let trials = read_table(&out.join("trials.parquet"));
    let ids = strings(&trials, "trial_id");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 4, "{ids:?}");
    assert_eq!(strings(&trials, "status"), ["completed"; 4]);
    let mut experiments = strings(&trials, "experiment");
    experiments.sort();
    assert_eq!(experiments, ["a", "a", "b", "b"]);
    for id in &ids {
        assert_eq!(record(&out, id)["attempts"], 1, "trial {id} was started more than once");
        assert_eq!(attempts_logged(&out, id), 1, "trial {id} logged points in more than one attempt");
    }
    assert_no_point_twice(&out);
    // Both experiments' swept keys are columns of the one table.
    assert!(trials.column("model.layers").is_ok() && trials.column("model.hidden").is_ok(), "{:?}", trials.get_column_names());
}

#[test]
fn a_killed_run_keeps_its_flushed_points_shows_interrupted_and_the_rerun_finishes_without_doubles() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "long.toml", &experiment("long", "steps = 1500\neval_every = 100", ""));
    let out = dir.path().join("out");
    let mut child = spawn_run(&file, &out);
    // Until the record says an evaluation past the first was flushed.
    let id = wait_for_evals(&out, &mut child, 3);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // What the record said at the kill is in the points log.
    let flushed = record(&out, &id)["curves"]["eval/loss"]["points"].as_array().unwrap().len();
    let points = std::fs::read_to_string(out.join("trials").join(&id).join("points.tsv")).unwrap();
    let evals = points.lines().filter(|l| l.split('\t').nth(1) == Some("eval/loss")).count();
    assert!(evals >= flushed, "{evals} eval points in points.tsv, the record had {flushed}");

    let status = run(bertlab().args(["status", "--format", "json"]).arg(&out));
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["trials"][0]["status"], "interrupted", "{status}");
    assert_eq!(status["totals"]["interrupted"], 1);
    assert!(status["trials"][0]["step"].as_i64().unwrap() >= 200, "{status}");
    // The tables hold the cut-short trial as it stood.
    assert_eq!(strings(&read_table(&out.join("trials.parquet")), "status"), ["interrupted"]);

    let rerun = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out));
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    let trials = read_table(&out.join("trials.parquet"));
    assert_eq!(strings(&trials, "status"), ["completed"]);
    assert_eq!(record(&out, &id)["attempts"], 2);
    assert_no_point_twice(&out);
    let metrics = read_table(&out.join("metrics.parquet"));
    let eval_steps: Vec<i64> = series(&metrics, &id, "eval/loss").iter().map(|p| p.0).collect();
    assert_eq!(eval_steps, (0..=1500).step_by(100).collect::<Vec<i64>>());
}

#[test]
fn a_folder_from_before_per_trial_records_keeps_its_trials_and_skips_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "old.toml", &experiment("old", "steps = 20\neval_every = 10", "[sweep.grid]\n\"model.layers\" = [1, 2]"));
    let out = dir.path().join("out");
    assert_eq!(run(bertlab().arg("run").arg(&file).arg("--out").arg(&out)).code, 0);
    let trials = read_table(&out.join("trials.parquet"));
    let metrics = read_table(&out.join("metrics.parquet"));
    // The layout before: two whole tables, and per trial only its config,
    // log and model.
    for table in ["trials.parquet", "metrics.parquet"] {
        std::fs::remove_dir_all(out.join(table)).unwrap();
    }
    for id in strings(&trials, "trial_id") {
        for file in ["record.json", "points.tsv"] {
            std::fs::remove_file(out.join("trials").join(&id).join(file)).unwrap();
        }
    }
    let write_old = |frame: &polars::prelude::DataFrame, name: &str| {
        let mut frame = frame.clone();
        polars::prelude::ParquetWriter::new(std::fs::File::create(out.join(name)).unwrap()).finish(&mut frame).unwrap();
    };
    write_old(&trials, "trials.parquet");
    write_old(&metrics, "metrics.parquet");

    let again = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("0 completed, 0 failed, 2 skipped"), "{}", again.stdout);
    let migrated = read_table(&out.join("trials.parquet"));
    assert_eq!(strings(&migrated, "trial_id"), strings(&trials, "trial_id"));
    assert_eq!(floats(&migrated, "eval/loss"), floats(&trials, "eval/loss"));
    let moved = read_table(&out.join("metrics.parquet"));
    assert_eq!(moved.height(), metrics.height());
    for id in strings(&trials, "trial_id") {
        assert_eq!(series(&moved, &id, "train/loss"), series(&metrics, &id, "train/loss"));
    }
    assert!(!out.join("trials.parquet.v1").exists() && !out.join("metrics.parquet.v1").exists());
}

/// The README's Python examples, run as written on a real run folder:
/// polars, pandas and DuckDB each read the two tables as one.
#[test]
fn the_readme_examples_read_the_tables_with_polars_pandas_and_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "quick.toml", &experiment("quickstart", "steps = 20\neval_every = 10", "[sweep.grid]\n\"model.layers\" = [1, 2]\n\"model.hidden\" = [32, 48]"));
    let out = dir.path().join("runs").join("quickstart");
    assert_eq!(run(bertlab().arg("run").arg(&file).arg("--out").arg(&out)).code, 0);
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme.split("```python\n").skip(1).map(|b| b.split("```").next().unwrap()).filter(|b| b.contains("runs/quickstart/")).collect();
    assert!(blocks.len() >= 2, "the README shows the tables read from Python");
    for block in blocks {
        let output = std::process::Command::new(venv_python()).arg("-c").arg(block).current_dir(dir.path()).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{block}\n{}", String::from_utf8_lossy(&output.stderr));
        // Each prints the trial ids it read.
        for id in strings(&read_table(&out.join("trials.parquet")), "trial_id") {
            assert!(stdout.contains(&id), "{block}\nprinted:\n{stdout}");
        }
    }
}

#[test]
fn a_trial_taken_over_by_another_process_is_left_to_it_and_the_sweep_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "over.toml", &experiment("over", "steps = 400\neval_every = 0\ncheckpoint_every = 20", "[sweep.grid]\n\"model.layers\" = [1, 2]"));
    let out = dir.path().join("out");
    let mut child = spawn_run(&file, &out);
    // Once the first trial has flushed its step-0 evaluation, a process on
    // another machine takes it over: a claim of the next generation, its
    // heartbeat fresh.
    let id = wait_for_evals(&out, &mut child, 1);
    let first = out.join("trials").join(&id);
    let holder = serde_json::json!({"host": "another-machine", "machine": "", "pid": 4242, "pid_start": null, "since_ms": 0});
    std::fs::write(first.join("claim.2"), holder.to_string()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("lost  {id}")), "{stderr}");
    assert!(!stderr.contains("error:"), "a lost trial is not a write failure: {stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    // The other trial still trained, and the lost one's record is not
    // this process's to end.
    let trials = read_table(&out.join("trials.parquet"));
    let rows: HashMap<String, String> = strings(&trials, "trial_id").into_iter().zip(strings(&trials, "status")).collect();
    assert_eq!(rows.values().filter(|s| *s == "completed").count(), 1, "{rows:?}");
    assert_ne!(rows.get(&id).map(String::as_str), Some("completed"), "{rows:?}");
}
