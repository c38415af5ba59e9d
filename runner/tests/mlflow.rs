//! Tracking against a real MLflow server from the project's virtual
//! environment, started here on a free port with a SQLite store: one parent
//! run and one child run per trial, params, and every metric's full history
//! equal to `metrics.parquet`.
mod common;
use common::mlflow::*;
use bertlab::track::client::{Client, Endpoint};
use common::*;
use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `trial_id` -> key -> [(step, value)] from metrics.parquet.
fn parquet_histories(path: &Path) -> HashMap<String, HashMap<String, Vec<(i64, f64)>>> {
    let metrics = read_table(path);
    let mut out: HashMap<String, HashMap<String, Vec<(i64, f64)>>> = HashMap::new();
    for id in strings(&metrics, "trial_id") {
        if out.contains_key(&id) {
            continue;
        }
        let keys: Vec<String> = strings(&metrics, "key");
        let mut by_key = HashMap::new();
        for key in keys {
            by_key.entry(key.clone()).or_insert_with(|| series(&metrics, &id, &key));
        }
        out.insert(id, by_key);
    }
    out
}

#[test]
fn a_sweep_is_one_parent_run_with_a_child_per_trial_holding_every_point() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = write(dir.path(), "tracked.toml", &experiment("tracked", "steps = 12\neval_every = 4", "[sweep.grid]\n\"model.hidden\" = [32, 48, 64]"));
    // Two at a time, in worker processes: their points reach MLflow through
    // the sweep process like those of in-process trials (the other tests).
    let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out).args(["--jobs", "2"]).env("MLFLOW_TRACKING_URI", &server.uri));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("all records delivered to MLflow"), "{}", r.stderr);

    let client = Client::new(Endpoint::with_env_credentials(&server.uri), Duration::from_secs(30));
    let experiment = client.experiment_id("tracked").unwrap();
    let runs = client.runs_tagged(&experiment, "bertlab.experiment", "tracked").unwrap();
    assert_eq!(runs.len(), 4, "one parent and three children");
    let tag = |run: &serde_json::Value, key: &str| -> Option<String> {
        run["data"]["tags"].as_array()?.iter().find(|t| t["key"] == key).and_then(|t| t["value"].as_str().map(String::from))
    };
    let parents: Vec<&serde_json::Value> = runs.iter().filter(|r| tag(r, "bertlab.trial_id").is_none()).collect();
    assert_eq!(parents.len(), 1);
    let parent_id = parents[0]["info"]["run_id"].as_str().unwrap();
    assert!(tag(parents[0], "bertlab.version").is_some());

    let artifacts = |run_id: &str| -> Vec<String> {
        let listed: serde_json::Value = ureq::get(&format!("{}/api/2.0/mlflow/artifacts/list?run_id={run_id}", server.uri)).call().unwrap().body_mut().read_json().unwrap();
        listed["files"].as_array().cloned().unwrap_or_default().iter().filter_map(|f| f["path"].as_str().map(String::from)).collect()
    };
    let parent_files = artifacts(parent_id);
    assert!(parent_files.contains(&"report.html".to_string()) && parent_files.contains(&"report.md".to_string()), "{parent_files:?}");

    let histories = parquet_histories(&out.join("metrics.parquet"));
    assert_eq!(histories.len(), 3);
    for run in runs.iter().filter(|r| tag(r, "bertlab.trial_id").is_some()) {
        let trial = tag(run, "bertlab.trial_id").unwrap();
        assert_eq!(tag(run, "mlflow.parentRunId").as_deref(), Some(parent_id));
        assert_eq!(run["info"]["status"], "FINISHED");
        let params: HashMap<String, String> =
            run["data"]["params"].as_array().unwrap().iter().map(|p| (p["key"].as_str().unwrap().into(), p["value"].as_str().unwrap().into())).collect();
        assert_eq!(params["train.steps"], "12");
        assert!(["32", "48", "64"].contains(&params["model.hidden"].as_str()), "{params:?}");
        let run_id = run["info"]["run_id"].as_str().unwrap();
        assert_eq!(artifacts(run_id), ["config.toml"]);
        for (key, points) in &histories[&trial] {
            let mut logged: Vec<(i64, f64)> = client.metric_history(run_id, key).unwrap().iter().map(|m| (m.step, m.value)).collect();
            logged.sort_by_key(|p| p.0);
            assert_eq!(&logged, points, "{trial} {key}");
        }
    }
}

fn sorted(mut histories: HashMap<String, HashMap<String, Vec<(i64, f64)>>>) -> HashMap<String, HashMap<String, Vec<(i64, f64)>>> {
    for by_key in histories.values_mut() {
        for points in by_key.values_mut() {
            points.sort_by(|a, b| a.partial_cmp(b).unwrap());
        }
    }
    histories
}

#[test]
fn a_server_down_for_the_whole_sweep_gets_everything_from_sync_once() {
    let port = free_port();
    let uri = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = write(dir.path(), "later.toml", &experiment("later", "steps = 8\neval_every = 4", "[sweep.grid]\n\"model.hidden\" = [32, 48]"));
    let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out).env("MLFLOW_TRACKING_URI", &uri));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("2 trials wait in") && r.stderr.contains("bertlab sync"), "{}", r.stderr);
    assert_eq!(strings(&read_table(&out.join("trials.parquet")), "status"), ["completed", "completed"]);

    let _server = Server::on(port);
    let synced = run(bertlab().arg("sync").arg(&out));
    assert_eq!(synced.code, 0, "{}\n{}", synced.stdout, synced.stderr);
    assert!(synced.stdout.contains("delivered 2 trials"), "{}", synced.stdout);
    let expected = sorted(parquet_histories(&out.join("metrics.parquet")));
    assert_eq!(mlflow_histories(&uri, "later"), expected);

    // Again, and a re-run that skips everything: nothing is logged twice.
    let again = run(bertlab().arg("sync").arg(&out));
    assert!(again.stdout.contains("nothing to deliver"), "{}", again.stdout);
    let rerun = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out).env("MLFLOW_TRACKING_URI", &uri));
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert_eq!(mlflow_histories(&uri, "later"), expected);

    // The same sweep logged live, beside it: what sync made is the same.
    let live_out = dir.path().join("live");
    let live = run(bertlab().arg("run").arg(&file).arg("--out").arg(&live_out).env("MLFLOW_TRACKING_URI", &uri).env("MLFLOW_EXPERIMENT_NAME", "later-live"));
    assert_eq!(live.code, 0, "{}", live.stderr);
    let (synced, logged) = (tracked_runs(&uri, "later"), tracked_runs(&uri, "later-live"));
    assert_eq!(synced.parent, logged.parent, "the sweep's parent run: name and tags");
    assert_eq!(synced.trials, logged.trials, "each trial's run name, params and tags, nested under the parent");
    let timing_free = |mut h: HashMap<String, HashMap<String, Vec<(i64, f64)>>>| {
        h.values_mut().for_each(|by_key| by_key.retain(|k, _| !k.starts_with("perf/")));
        h
    };
    assert_eq!(timing_free(mlflow_histories(&uri, "later")), timing_free(mlflow_histories(&uri, "later-live")));
}

/// An experiment's runs as a comparison sees them: the parent's name and
/// tags, and per trial its run's name, params and tags (the parent's id
/// replaced by whether it is that parent).
#[derive(Debug, PartialEq)]
struct TrackedRuns {
    parent: (String, Vec<(String, String)>),
    trials: HashMap<String, (String, Vec<(String, String)>, Vec<(String, String)>)>,
}

fn tracked_runs(uri: &str, experiment: &str) -> TrackedRuns {
    let pairs = |run: &serde_json::Value, field: &str| -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = run["data"][field].as_array().cloned().unwrap_or_default().iter().map(|p| (p["key"].as_str().unwrap().into(), p["value"].as_str().unwrap().into())).collect();
        pairs.sort();
        pairs
    };
    let runs = search_runs(uri, experiment);
    let (parents, children): (Vec<_>, Vec<_>) = runs.iter().partition(|r| !pairs(r, "tags").iter().any(|(k, _)| k == "bertlab.trial_id"));
    assert_eq!(parents.len(), 1, "{experiment}: one parent run");
    let parent_id = parents[0]["info"]["run_id"].as_str().unwrap();
    let mut trials = HashMap::new();
    for run in children {
        let mut tags = pairs(run, "tags");
        let trial = tags.iter().find(|(k, _)| k == "bertlab.trial_id").unwrap().1.clone();
        for (key, value) in tags.iter_mut() {
            if key == "mlflow.parentRunId" {
                assert_eq!(value, parent_id, "{experiment}: trial {trial} nests under the sweep's parent");
                *value = "the parent".into();
            }
        }
        assert!(tags.iter().any(|(k, _)| k == "mlflow.parentRunId"), "{experiment}: trial {trial} has no parent");
        let name = run["info"]["run_name"].as_str().unwrap_or_default().to_string();
        trials.insert(trial, (name, pairs(run, "params"), tags));
    }
    TrackedRuns { parent: (parents[0]["info"]["run_name"].as_str().unwrap_or_default().into(), pairs(parents[0], "tags")), trials }
}

/// Answers every request with HTTP 500, like a broken proxy in front of MLflow.
fn failing_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::{Read, Write};
            let mut stream = stream;
            let mut buffer = [0u8; 65536];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\nconnection: close\r\n\r\nbroke");
        }
    });
    uri
}

/// Accepts connections and never answers, like a hung server: every call
/// ends in the client's timeout.
fn silent_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    uri
}

#[test]
fn a_failing_hung_or_unreachable_server_costs_no_result_and_keeps_the_spool() {
    for uri in [failing_server(), silent_server(), "http://127.0.0.1:9".to_string()] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let file = write(dir.path(), "offline.toml", &experiment("offline", "steps = 6\neval_every = 0", ""));
        let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out).env("MLFLOW_TRACKING_URI", &uri));
        assert_eq!(r.code, 0, "{uri}: {}", r.stderr);
        assert!(r.stderr.contains("not every record reached MLflow: 1 trials wait"), "{uri}: {}", r.stderr);
        assert_eq!(strings(&read_table(&out.join("trials.parquet")), "status"), ["completed"]);
        let synced = run(bertlab().arg("sync").arg(&out));
        assert_eq!(synced.code, 1, "{uri}: sync against a dead server fails and keeps the spool: {}", synced.stderr);
        assert_eq!(std::fs::read_dir(out.join("tracking-spool")).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "pending")).count(), 1);
    }
}

#[test]
fn a_trial_run_again_is_found_by_its_tag_and_gets_no_point_twice() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = write(dir.path(), "again.toml", &experiment("again", "steps = 6\neval_every = 3", ""));
    for round in 0..2 {
        // --fresh trains the same trial again: same id, same MLflow run.
        let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out).arg("--fresh").env("MLFLOW_TRACKING_URI", &server.uri));
        assert_eq!(r.code, 0, "round {round}: {}", r.stderr);
        assert!(r.stderr.contains("all records delivered"), "round {round}: {}", r.stderr);
    }
    // Deterministic keys are equal point for point; timing differs between
    // the two trainings and MLflow keeps the first value of each step.
    let steps = |h: HashMap<String, HashMap<String, Vec<(i64, f64)>>>| -> HashMap<String, HashMap<String, Vec<i64>>> {
        h.into_iter().map(|(t, by_key)| (t, by_key.into_iter().map(|(k, p)| (k, p.iter().map(|x| x.0).collect())).collect())).collect()
    };
    let without_timing = |mut h: HashMap<String, HashMap<String, Vec<(i64, f64)>>>| {
        h.values_mut().for_each(|by_key| by_key.retain(|k, _| !k.starts_with("perf/")));
        h
    };
    let (logged, recorded) = (mlflow_histories(&server.uri, "again"), sorted(parquet_histories(&out.join("metrics.parquet"))));
    assert_eq!(steps(logged.clone()), steps(recorded.clone()), "every step exactly once");
    assert_eq!(without_timing(logged), without_timing(recorded));
}

/// Runs a 4-trial sweep against a server that is killed once the first
/// trial is recorded, and restarted on the same store either while the
/// sweep goes on or after it ended; then `bertlab sync`. MLflow must end
/// up holding exactly `metrics.parquet`: nothing lost, nothing twice.
fn kill_mid_sweep(name: &str, restart_during_sweep: bool) {
    let store = tempfile::tempdir().unwrap();
    let port = free_port();
    let uri = format!("http://127.0.0.1:{port}");
    let server = Server::with_store(port, store.path());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = write(dir.path(), "cut.toml", &experiment(name, "steps = 400\neval_every = 100", "[sweep.grid]\n\"model.hidden\" = [32, 48, 64, 80]\n\"model.heads\" = [2]"));
    let mut sweep = bertlab()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .env("MLFLOW_TRACKING_URI", &uri)
        .stdout(Stdio::null())
        // A file rather than a pipe: nobody reads the pipe while the sweep runs.
        .stderr(std::fs::File::create(dir.path().join("stderr.txt")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !out.join("trials.parquet").exists() || !statuses(&out).contains(&"completed".to_string()) {
        assert!(Instant::now() < deadline, "the first trial never completed");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(server);
    let restarted = restart_during_sweep.then(|| Server::with_store(port, store.path()));
    let status = sweep.wait().unwrap();
    let stderr = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap();
    assert!(status.success(), "{stderr}");
    if !restart_during_sweep {
        assert!(stderr.contains("trials wait in"), "{stderr}");
    }
    let _server = restarted.unwrap_or_else(|| Server::with_store(port, store.path()));
    let synced = run(bertlab().arg("sync").arg(&out));
    assert_eq!(synced.code, 0, "{}\n{}", synced.stdout, synced.stderr);
    assert_eq!(mlflow_histories(&uri, name), sorted(parquet_histories(&out.join("metrics.parquet"))), "{stderr}");
}

#[test]
fn a_server_killed_mid_sweep_and_restarted_after_it_gets_everything_from_sync_once() {
    kill_mid_sweep("cut-after", false);
}

#[test]
fn a_server_killed_and_restarted_during_the_sweep_ends_complete_without_duplicates() {
    kill_mid_sweep("cut-during", true);
}

#[test]
fn a_run_killed_mid_trial_and_run_again_logs_every_step_once_in_one_run() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = write(dir.path(), "killed.toml", &experiment("killed", "steps = 1500\neval_every = 100", ""));
    let tracked = || {
        let mut cmd = bertlab();
        cmd.arg("run").arg(&file).arg("--out").arg(&out).env("MLFLOW_TRACKING_URI", &server.uri);
        cmd
    };
    let mut child = tracked().stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_evals(&out, &mut child, 3);
    child.kill().unwrap(); // SIGKILL: no chance to tell MLflow anything
    child.wait().unwrap();
    let rerun = run(&mut tracked());
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert!(rerun.stderr.contains("all records delivered"), "{}", rerun.stderr);
    // One run for the trial (mlflow_histories checks), every step once.
    let steps = |h: HashMap<String, HashMap<String, Vec<(i64, f64)>>>| -> HashMap<String, HashMap<String, Vec<i64>>> {
        h.into_iter().map(|(t, by_key)| (t, by_key.into_iter().map(|(k, p)| (k, p.iter().map(|x| x.0).collect())).collect())).collect()
    };
    assert_eq!(steps(mlflow_histories(&server.uri, "killed")), steps(sorted(parquet_histories(&out.join("metrics.parquet")))));
}

#[test]
fn trials_early_stopping_left_at_a_rung_end_killed_and_the_rest_finished() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let grid = "[sweep.grid]\n\"train.lr\" = [1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2]\n\n[sweep.early_stop]\nmethod = \"asha\"\nmin_steps = 20\neta = 3";
    let file = write(dir.path(), "pruned.toml", &experiment("pruned", "steps = 60\neval_every = 20", grid));
    let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out).env("MLFLOW_TRACKING_URI", &server.uri));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("all records delivered to MLflow"), "{}", r.stderr);
    let trials = read_table(&out.join("trials.parquet"));
    let status: HashMap<String, String> = strings(&trials, "trial_id").into_iter().zip(strings(&trials, "status")).collect();
    assert!(status.values().any(|s| s == "pruned") && status.values().any(|s| s == "completed"), "{status:?}");
    let client = Client::new(Endpoint::with_env_credentials(&server.uri), Duration::from_secs(30));
    let experiment = client.experiment_id("pruned").unwrap();
    let histories = parquet_histories(&out.join("metrics.parquet"));
    let mut children = 0;
    for run in client.runs_tagged(&experiment, "bertlab.experiment", "pruned").unwrap() {
        let Some(trial) = run["data"]["tags"].as_array().unwrap().iter().find(|t| t["key"] == "bertlab.trial_id").and_then(|t| t["value"].as_str()) else { continue };
        children += 1;
        let want = if status[trial] == "pruned" { "KILLED" } else { "FINISHED" };
        assert_eq!(run["info"]["status"], want, "{trial} ({})", status[trial]);
        let run_id = run["info"]["run_id"].as_str().unwrap();
        for (key, points) in &histories[trial] {
            let mut logged: Vec<(i64, f64)> = client.metric_history(run_id, key).unwrap().iter().map(|m| (m.step, m.value)).collect();
            logged.sort_by_key(|p| p.0);
            assert_eq!(&logged, points, "{trial} {key}");
        }
    }
    assert_eq!(children, 6);
}
