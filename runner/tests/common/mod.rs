//! Shared helpers for the CLI tests: run the real `bertlab` binary from the
//! workspace root on experiment files written to a temporary folder, and
//! read the Parquet tables it writes.
#![allow(dead_code)] // each test binary uses its own subset

pub mod mlflow;
pub mod slurm;

use polars::prelude::{DataFrame, ParquetReader, SerReader};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The virtual environment's Python, for the tests that check against
/// transformers, scikit-learn or MLflow: `make setup` names it in
/// `.cargo/config.toml` (`BERTLAB_PYTHON`), which cargo passes on to the
/// tests; else `.venv`.
pub fn venv_python() -> String {
    std::env::var("BERTLAB_PYTHON").unwrap_or_else(|_| workspace_root().join(".venv/bin/python").display().to_string())
}

/// `bertlab` with its cache shared by all tests of this build.
pub fn bertlab() -> Command {
    launching_bertlab(env!("CARGO_BIN_EXE_bertlab"))
}

/// `program` (a launcher that starts `bertlab`, or `bertlab` itself) in
/// the environment the tests give `bertlab`.
pub fn launching_bertlab(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root())
        .env("BERTLAB_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("bertlab-cache"))
        .env_remove("BERTLAB_LOG")
        // Tests that track start their own server and say so.
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_EXPERIMENT_NAME");
    cmd
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Run {
    let Output { status, stdout, stderr } = cmd.output().expect("bertlab runs");
    Run {
        code: status.code().expect("exited normally, not by a signal"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A tiny but real pretraining setup on the bundled corpus; `extra` is
/// appended (more sections, or a [sweep.grid]).
pub fn experiment(name: &str, train: &str, extra: &str) -> String {
    format!(
        r#"[experiment]
name = "{name}"

[model]
layers = 1
hidden = 32
heads = 2

[data]
corpus = ["experiments/data/*.txt"]
vocab_size = 2000
seq_len = 32

[train]
batch_size = 16
lr = 2e-3
warmup_steps = 5
device = "cpu"
{train}

{extra}
"#
    )
}

/// [`experiment`] without dropout (so that how a step is cut cannot change
/// its numbers) for 20 steps, evaluated every 10, with `data.nsp` as given.
pub fn pretraining_without_dropout(name: &str, nsp: bool) -> String {
    experiment(name, "steps = 20\neval_every = 10\nlog_every = 1", "")
        .replace("[model]\n", "[model]\ndropout = 0.0\nattention_dropout = 0.0\n")
        .replace("seq_len = 32\n", &format!("seq_len = 32\nnsp = {nsp}\n"))
}

/// Fine-tuning without dropout, one epoch of the topic sentences in
/// batches of 48 (each epoch ends on a batch of 24), from a model
/// pretrained for 5 steps in `dir`.
pub fn fine_tuning_without_dropout(dir: &Path) -> String {
    let pretrained = run_experiment(dir, "pretrained", &experiment("pretrained", "steps = 5\neval_every = 0", ""), &[]);
    let init = std::fs::read_dir(pretrained.join("trials")).unwrap().next().unwrap().unwrap().path();
    topics_experiment(
        "topics",
        &init.display().to_string(),
        "dropout = 0.0\nattention_dropout = 0.0\n",
        "epochs = 1\nbatch_size = 48\nlr = 1e-3\neval_every = 5\nlog_every = 1\n",
    )
}

/// A classification experiment `name` fine-tuned on the bundled topic
/// sentences from `init` (a path, glob or `hf:` name), on the CPU, with
/// `model` and `train` lines added to those sections (`train` comes last,
/// so it may go on with more sections).
pub fn topics_experiment(name: &str, init: &str, model: &str, train: &str) -> String {
    format!(
        r#"[experiment]
name = "{name}"
task = "classification"
metric = "eval/accuracy"
goal = "maximize"

[model]
init = {init:?}
{model}
{TOPICS_DATA}
[train]
device = "cpu"
{train}"#
    )
}

/// Runs `text` as `dir/<name>.toml` into `dir/<name>` with `--set` flags
/// `sets`, asserting success; the run folder.
pub fn run_experiment(dir: &Path, name: &str, text: &str, sets: &[&str]) -> PathBuf {
    let file = write(dir, &format!("{name}.toml"), text);
    let out = dir.join(name);
    let mut cmd = bertlab();
    cmd.arg("run").arg(&file).arg("--out").arg(&out);
    for set in sets {
        cmd.arg("--set").arg(set);
    }
    let r = run(&mut cmd);
    assert_eq!(r.code, 0, "{name}: {}", r.stderr);
    out
}

/// Every point of `key`, by step, of the one trial of run folder `out`.
pub fn one_series(out: &Path, key: &str) -> Vec<(i64, f64)> {
    let id = &strings(&read_table(&out.join("trials.parquet")), "trial_id")[0];
    series(&read_table(&out.join("metrics.parquet")), id, key)
}

/// Two series of the same steps, each value within 1e-5 of the other,
/// relative.
pub fn assert_close(expected: &[(i64, f64)], got: &[(i64, f64)], what: &str) {
    assert_eq!(expected.len(), got.len(), "{what}: {expected:?} / {got:?}");
    for ((step, a), (other, b)) in expected.iter().zip(got) {
        assert_eq!(step, other, "{what}");
        assert!((a - b).abs() <= 1e-5 * a.abs(), "{what} at step {step}: {a} expected, {b} got");
    }
}

/// Two run folders of one trial, trained differently (cut into
/// micro-batches, over several devices): the same trial id, and each of
/// `keys` the same series within 1e-5.
pub fn assert_same_trial_close(expected: &Path, got: &Path, keys: &[&str], what: &str) {
    let id = |out: &Path| strings(&read_table(&out.join("trials.parquet")), "trial_id");
    assert_eq!(id(expected), id(got), "{what}: how a step is cut or where it runs is not part of the trial's id");
    for key in keys {
        let (a, b) = (one_series(expected, key), one_series(got, key));
        assert!(a.len() >= 3, "{what} {key}: {a:?}");
        assert_close(&a, &b, &format!("{what} {key}"));
    }
}

/// The `[data]` section of fine-tuning on the bundled topic sentences
/// (600 training rows, 200 dev rows, two classes).
pub const TOPICS_DATA: &str = r#"[data]
train = "experiments/data/topics-train.tsv"
eval = "experiments/data/topics-dev.tsv"
text_columns = ["sentence"]
label_column = "label"
seq_len = 64
"#;

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A table of a run folder (a folder of parts, one per trial) as one
/// frame, its parts in the order their trials were first started; or one
/// Parquet file.
pub fn read_table(path: &Path) -> DataFrame {
    let read = |file: &Path| ParquetReader::new(std::fs::File::open(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))).finish().unwrap();
    if path.is_file() {
        return read(path);
    }
    let run_dir = path.parent().unwrap();
    let started = |part: &Path| {
        let id = part.file_stem().unwrap().to_str().unwrap();
        let record = std::fs::read(run_dir.join("trials").join(id).join("record.json")).unwrap_or_default();
        serde_json::from_slice::<serde_json::Value>(&record).ok().and_then(|r| r["created_ms"].as_i64()).unwrap_or_default()
    };
    let mut parts: Vec<PathBuf> = std::fs::read_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).map(|e| e.unwrap().path()).collect();
    parts.retain(|p| p.extension().is_some_and(|e| e == "parquet"));
    parts.sort_by_key(|p| (started(p), p.clone()));
    let frames: Vec<DataFrame> = parts.iter().map(|p| read(p)).collect();
    if frames.is_empty() {
        return DataFrame::empty();
    }
    polars::functions::concat_df_diagonal(&frames).unwrap()
}

/// Each trial's `train/loss` lines in its points log, every attempt
/// counted: the steps it trained (`log_every = 1`). A step trained twice
/// fails the test.
pub fn steps_trained(out: &Path) -> BTreeMap<String, i64> {
    let mut steps = BTreeMap::new();
    for entry in std::fs::read_dir(out.join("trials")).unwrap() {
        let entry = entry.unwrap();
        let points = std::fs::read_to_string(entry.path().join("points.tsv")).unwrap_or_default();
        let lines: Vec<i64> = points.lines().filter(|l| l.split('\t').nth(1) == Some("train/loss")).map(|l| l.split('\t').next().unwrap().parse().unwrap()).collect();
        let mut distinct = lines.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), lines.len(), "{:?} trained a step twice", entry.file_name());
        steps.insert(entry.file_name().into_string().unwrap(), lines.len() as i64);
    }
    steps
}

/// Runs `bertlab run FILE --out OUT` again and again, killing its process
/// group (SIGKILL) at pseudo-random instants 1.5 to 4 s in (from `seed`),
/// until a run ends by itself or 30 were killed; returns the kills.
pub fn kill_at_random_instants(file: &Path, out: &Path, mut seed: u64) -> usize {
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};
    let mut kills = 0;
    for _ in 0..30 {
        let mut child = bertlab().arg("run").arg(file).arg("--out").arg(out).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).process_group(0).spawn().unwrap();
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let wait = Duration::from_millis(1500 + (seed >> 33) % 2500);
        let started = Instant::now();
        while started.elapsed() < wait && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        // SAFETY: kill(2) on the process group this test started.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        child.wait().unwrap();
        kills += 1;
    }
    kills
}

/// The `status` column of run folder `out`'s trials table: empty while the
/// sweep has not written a part yet.
pub fn statuses(out: &Path) -> Vec<String> {
    let trials = read_table(&out.join("trials.parquet"));
    if trials.column("status").is_err() {
        return Vec::new();
    }
    strings(&trials, "status")
}

pub fn strings(frame: &DataFrame, column: &str) -> Vec<String> {
    let column = frame.column(column).unwrap();
    (0..frame.height())
        .map(|i| {
            let value = column.get(i).unwrap();
            value.get_str().map(str::to_owned).unwrap_or_else(|| value.to_string())
        })
        .collect()
}

pub fn floats(frame: &DataFrame, column: &str) -> Vec<f64> {
    let column = frame.column(column).unwrap();
    (0..frame.height()).map(|i| column.get(i).unwrap().extract::<f64>().unwrap_or(f64::NAN)).collect()
}

/// `(step, value)` of one metric of one trial, by step.
pub fn series(metrics: &DataFrame, trial_id: &str, key: &str) -> Vec<(i64, f64)> {
    let ids = strings(metrics, "trial_id");
    let keys = strings(metrics, "key");
    let steps = floats(metrics, "step");
    let values = floats(metrics, "value");
    let mut out: Vec<(i64, f64)> = (0..metrics.height())
        .filter(|&i| ids[i] == trial_id && keys[i] == key)
        .map(|i| (steps[i] as i64, values[i]))
        .collect();
    out.sort_by_key(|p| p.0);
    out
}

/// The rows of the first Markdown table under `## {heading}`, as cells.
pub fn markdown_rows(markdown: &str, heading: &str) -> Vec<Vec<String>> {
    let start = markdown.find(&format!("## {heading}\n")).unwrap_or_else(|| panic!("no section {heading}:\n{markdown}"));
    markdown[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.trim_matches('|').split(" | ").map(|c| c.trim().to_string()).collect())
        .collect()
}

/// Waits until the one trial of run folder `out` has flushed `evals`
/// evaluations to its record (while `child` trains it), and says its id.
pub fn wait_for_evals(out: &Path, child: &mut std::process::Child, evals: usize) -> String {
    let started = std::time::Instant::now();
    loop {
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "the trial never got to {evals} evaluations");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it was killed");
        let trial = std::fs::read_dir(out.join("trials")).ok().and_then(|mut d| d.next()).map(|e| e.unwrap().file_name().into_string().unwrap());
        if let Some(id) = trial {
            let record = std::fs::read(out.join("trials").join(&id).join("record.json")).ok();
            let record = record.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
            if record.and_then(|r| r["curves"]["eval/loss"]["points"].as_array().map(|p| p.len())).is_some_and(|n| n >= evals) {
                return id;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// (trial, key, step) -> the value's bits, for every series a trial's
/// numbers make (`perf/*` is timing, never the same twice).
pub type Series = BTreeMap<(String, String, i64), u64>;

pub fn series_of(out: &Path) -> Series {
    let metrics = read_table(&out.join("metrics.parquet"));
    let (ids, keys, steps, values) = (strings(&metrics, "trial_id"), strings(&metrics, "key"), floats(&metrics, "step"), floats(&metrics, "value"));
    let mut series = Series::new();
    for i in 0..metrics.height() {
        let point = (ids[i].clone(), keys[i].clone(), steps[i] as i64);
        assert!(!series.contains_key(&point), "{point:?} is in metrics.parquet twice");
        if !keys[i].starts_with("perf/") {
            series.insert(point, values[i].to_bits());
        }
    }
    series
}

/// The first difference between two runs' series, in words.
pub fn assert_same_series(got: &Series, expected: &Series, what: &str) {
    assert!(!expected.is_empty());
    if got != expected {
        let missing = expected.keys().find(|k| !got.contains_key(*k));
        let extra = got.keys().find(|k| !expected.contains_key(*k));
        let differs = expected.iter().find(|(k, v)| got.get(*k).is_some_and(|g| g != *v)).map(|(k, v)| (k, f64::from_bits(*v), f64::from_bits(got[k])));
        panic!("{what}: not the uninterrupted run's series: missing {missing:?}, extra {extra:?}, first differing {differs:?}");
    }
}
