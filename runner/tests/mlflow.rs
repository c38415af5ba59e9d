//! Tracking against a real MLflow server from the project's virtual
//! environment, started here on a free port with a SQLite store: one parent
//! run and one child run per trial, params, and every metric's full history
//! equal to `metrics.parquet`.
mod common;
use bertlab::track::client::{Client, Endpoint};
use common::*;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An MLflow server for one test, stopped when dropped.
struct Server {
    child: Child,
    uri: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let python = std::env::var("BERTLAB_PYTHON").unwrap_or_else(|_| workspace_root().join(".venv/bin/python").display().to_string());
        let db = format!("sqlite:///{}", dir.path().join("mlflow.db").display());
        let child = Command::new(python)
            .args(["-m", "mlflow", "server", "--backend-store-uri", &db, "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            .arg("--default-artifact-root")
            .arg(dir.path().join("artifacts"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mlflow server starts (make setup installs it)");
        let server = Server { child, uri: format!("http://127.0.0.1:{port}"), _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() || ureq::get(&format!("{}/health", server.uri)).call().is_err() {
            assert!(Instant::now() < deadline, "the MLflow server did not come up");
            std::thread::sleep(Duration::from_millis(300));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out).env("MLFLOW_TRACKING_URI", &server.uri));
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
        for (key, points) in &histories[&trial] {
            let mut logged: Vec<(i64, f64)> = client.metric_history(run_id, key).unwrap().iter().map(|m| (m.step, m.value)).collect();
            logged.sort_by_key(|p| p.0);
            assert_eq!(&logged, points, "{trial} {key}");
        }
    }
}

#[test]
fn an_unreachable_server_costs_no_result() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = write(dir.path(), "offline.toml", &experiment("offline", "steps = 6\neval_every = 0", ""));
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out).env("MLFLOW_TRACKING_URI", "http://127.0.0.1:9"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("not every record reached MLflow"), "{}", r.stderr);
    assert_eq!(strings(&read_table(&out.join("trials.parquet")), "status"), ["completed"]);
}
