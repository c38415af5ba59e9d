//! A real MLflow server for the tests that track, from the project's
//! virtual environment, and what they read back from it.
use super::venv_python;
use bertlab::track::client::{Client, Endpoint};
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An MLflow server for one test, stopped when dropped.
pub struct Server {
    pub child: Child,
    pub uri: String,
    _dir: Option<tempfile::TempDir>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    pub fn start() -> Server {
        Server::on(free_port())
    }

    pub fn on(port: u16) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::with_store(port, dir.path());
        server._dir = Some(dir);
        server
    }

    /// A server whose database and artifacts live in `store`, so that a
    /// restarted server finds what the first one held.
    pub fn with_store(port: u16, store: &Path) -> Server {
        let python = venv_python();
        let db = format!("sqlite:///{}", store.join("mlflow.db").display());
        let child = Command::new(python)
            .args(["-m", "mlflow", "server", "--backend-store-uri", &db, "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            // Artifacts through the server's proxy, as a shared server has them.
            .arg("--artifacts-destination")
            .arg(store.join("artifacts"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: the server's workers go down with it.
            .process_group(0)
            .spawn()
            .expect("mlflow server starts (make setup installs it)");
        let server = Server { child, uri: format!("http://127.0.0.1:{port}"), _dir: None };
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
        // `--`: a negative number after it is a process group, not a signal.
        let _ = Command::new("kill").args(["-s", "KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
        // The port is free once nothing listens on it any more.
        let port = self.uri.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Every run of an MLflow experiment.
pub fn search_runs(uri: &str, experiment: &str) -> Vec<serde_json::Value> {
    let client = Client::new(Endpoint::with_env_credentials(uri), Duration::from_secs(30));
    let id = client.experiment_id(experiment).unwrap();
    let search = ureq::post(&format!("{uri}/api/2.0/mlflow/runs/search"))
        .send_json(serde_json::json!({"experiment_ids": [id], "max_results": 1000}))
        .unwrap()
        .body_mut()
        .read_json::<serde_json::Value>()
        .unwrap();
    search["runs"].as_array().cloned().unwrap_or_default()
}

/// Every metric history of every trial run in the experiment, by trial id.
pub fn mlflow_histories(uri: &str, experiment: &str) -> HashMap<String, HashMap<String, Vec<(i64, f64)>>> {
    let client = Client::new(Endpoint::with_env_credentials(uri), Duration::from_secs(30));
    let mut out = HashMap::new();
    for run in search_runs(uri, experiment) {
        let tags = run["data"]["tags"].as_array().cloned().unwrap_or_default();
        let Some(trial) = tags.iter().find(|t| t["key"] == "bertlab.trial_id").and_then(|t| t["value"].as_str().map(String::from)) else { continue };
        let run_id = run["info"]["run_id"].as_str().unwrap().to_string();
        let mut by_key = HashMap::new();
        // Every key the run holds (its latest values name them).
        let keys: Vec<String> = run["data"]["metrics"].as_array().cloned().unwrap_or_default().iter().filter_map(|m| m["key"].as_str().map(String::from)).collect();
        for key in &keys {
            let mut points: Vec<(i64, f64)> = client.metric_history(&run_id, key).unwrap().iter().map(|m| (m.step, m.value)).collect();
            points.sort_by(|a, b| a.partial_cmp(b).unwrap());
            if !points.is_empty() {
                by_key.insert(key.to_string(), points);
            }
        }
        assert!(out.insert(trial, by_key).is_none(), "two MLflow runs for one trial");
    }
    out
}

