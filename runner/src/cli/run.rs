//! `bertlab run`: load and check every experiment first (nothing trains if
//! any is invalid), prepare each distinct corpus once, run the trials, then
//! write the report and print the summary.
use super::progress::Progress;
use crate::config::{self, Loaded};
use crate::data::{self, cache::Cache, Dataset, Examples};
use crate::error::InputError;
use crate::launch::{self, Job, Sinks, Tally};
use crate::store::Store;
use crate::sweep;
use crate::trial::{bind, Trial};
use crate::track::{self, client::KeyValue, Tracker};
use crate::settings::DeviceSpec;
use crate::signals;
use crate::train::device;
use anyhow::Result;
use clap::Args;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

#[derive(Args)]
pub struct RunArgs {
    /// Experiment files or glob patterns.
    #[arg(required = true, value_name = "FILE_OR_GLOB")]
    files: Vec<String>,
    /// Override a value, e.g. --set train.steps=50 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Run folder (default runs/<experiment name>); one experiment only.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Device for every trial, overriding train.device: auto, cpu, cuda, cuda:N.
    #[arg(long)]
    device: Option<String>,
    /// Trials run at once, each in its own worker process: GPUs are taken in
    /// turn, CPU threads are divided between CPU trials.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Run every trial again from its start: completed ones too, and
    /// unfinished ones without their checkpoints.
    #[arg(long)]
    fresh: bool,
    /// With --jobs N: times a trial whose worker died (killed, out of
    /// memory) goes on from its checkpoint in a new worker. A trial that
    /// fails on its own (a diverged loss, bad data) is not retried.
    #[arg(long, default_value_t = 1)]
    retries: u32,
}

/// An experiment checked and expanded, ready to run.
struct Checked {
    loaded: Loaded,
    trials: Vec<Trial>,
    /// Trials the constraints dropped and repeats merged, for the opening line.
    dropped: usize,
    duplicates: usize,
    out: PathBuf,
}

pub fn run(args: RunArgs) -> Result<i32> {
    if args.jobs == 0 {
        return Err(InputError::new("must be at least 1").key("--jobs").into());
    }
    signals::install(signals::Role::Sweep)?;
    let files = expand_files(&args.files)?;
    if args.out.is_some() && files.len() > 1 {
        return Err(InputError::new(format!("--out names one run folder but {} experiments were given", files.len())).into());
    }
    let mut planned = Vec::new();
    for file in &files {
        let loaded = config::load(file, &args.sets)?;
        let sweep::Expanded { mut trials, dropped, duplicates } = sweep::expand(&loaded)?;
        if let Some(device) = &args.device {
            DeviceSpec::parse(device).map_err(|m| InputError::new(m).key("--device"))?;
            trials.iter_mut().for_each(|t| t.config.train.device = device.clone());
        }
        let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&loaded.experiment.experiment.name));
        planned.push(Checked { loaded, trials, dropped, duplicates, out });
    }

    let cache = Cache::from_env();
    let options = launch::Options { fresh: args.fresh, parallel: args.jobs, retries: args.retries };
    let mut worst = 0;
    for plan in &mut planned {
        let prepared = prepare_data(plan, &cache)?;
        let jobs = bind(plan, &prepared)?;
        let tally = run_one(plan, &jobs, &options)?;
        worst = worst.max(i32::from(tally.failed > 0));
        if let Some(signal) = signals::requested() {
            eprintln!("stop  {}: {} trials interrupted, their checkpoints kept; the same command resumes them", signal.name(), tally.interrupted);
            return Ok(signal.exit_code());
        }
    }
    Ok(worst)
}

/// Files named directly, or matched by glob patterns (a pattern that
/// matches nothing is an error, like a missing file).
fn expand_files(patterns: &[String]) -> Result<Vec<PathBuf>, InputError> {
    let mut files = Vec::new();
    for pattern in patterns {
        let matched: Vec<PathBuf> = glob::glob(pattern).map(|paths| paths.filter_map(Result::ok).collect()).unwrap_or_default();
        if matched.is_empty() {
            return Err(InputError::new("no such experiment file").from_source(pattern.clone()));
        }
        files.extend(matched);
    }
    Ok(files)
}

/// The datasets of a sweep, and for each trial (in the plan's order) the
/// one it trains on.
struct Prepared {
    datasets: Vec<Dataset>,
    of_trial: Vec<usize>,
}

/// Reads and packs each distinct `[data]` configuration of the sweep once,
/// before any training, so a bad corpus rejects the run up front.
fn prepare_data(plan: &Checked, cache: &Cache) -> Result<Prepared> {
    let mut prepared = Prepared { datasets: Vec::new(), of_trial: Vec::with_capacity(plan.trials.len()) };
    let mut by_key = HashMap::new();
    for trial in &plan.trials {
        let index = match by_key.entry(data_key(trial)) {
            Entry::Occupied(known) => *known.get(),
            Entry::Vacant(new) => {
                let dataset = data::prepare(trial.config.task, &trial.config.data, cache).map_err(|e| locate(&plan.loaded, e))?;
                eprintln!("data  {}", dataset.summary);
                prepared.datasets.push(dataset);
                *new.insert(prepared.datasets.len() - 1)
            }
        };
        prepared.of_trial.push(index);
    }
    Ok(prepared)
}

/// Trials whose task and `[data]` agree share their examples. A tokenizer
/// counts by its content, not its path: the checkpoints of a sweep over
/// `model.init` each carry a copy of the same vocabulary (the 24 BERT
/// miniatures share BERT's), and their examples need tokenizing only once.
fn data_key(trial: &Trial) -> String {
    let mut data = trial.config.data.clone();
    if let Ok(bytes) = std::fs::read(&data.tokenizer) {
        data.tokenizer = data::cache::key(&[&bytes]);
    }
    serde_json::to_string(&(trial.config.task, &data)).expect("data section serialises")
}

/// Errors from the data layer know their key but not where it was written.
fn locate(loaded: &Loaded, error: InputError) -> InputError {
    match (&error.source, &error.key) {
        (None, Some(key)) => loaded.error_at(key, error.message),
        _ => error,
    }
}

/// The MLflow tracker, when tracking is configured: the parent run is named
/// after the experiment and tagged with what produced it.
fn tracker(plan: &Checked, jobs: &[Job]) -> Option<Tracker> {
    let experiment = &plan.loaded.experiment;
    let settings = track::Settings::resolve(experiment.tracking.mlflow_uri.as_deref(), &experiment.experiment.name)?;
    let tag = |key: &str, value: String| KeyValue { key: key.into(), value };
    let mut tags = vec![
        tag("bertlab.experiment", experiment.experiment.name.clone()),
        tag("bertlab.plugin", experiment.experiment.model.clone()),
        tag("bertlab.version", env!("CARGO_PKG_VERSION").into()),
        tag("bertlab.trials", jobs.len().to_string()),
    ];
    if let Some(commit) = git_commit(&plan.loaded.path) {
        tags.push(tag("mlflow.source.git.commit", commit));
    }
    eprintln!("track MLflow at {} (experiment {})", settings.endpoint.uri, settings.experiment);
    Some(Tracker::start(settings, &plan.out, &experiment.experiment.name, tags))
}

/// Delivers trials an earlier or the current execution could not (the
/// spool), saying what happened; an unreachable server is not an error here.
fn deliver_spool(run_dir: &std::path::Path) {
    match track::deliver_spool(run_dir) {
        None => {}
        Some(Ok(done)) if done.trials > 0 => eprintln!("track delivered {} spooled trials ({} points) to MLflow", done.trials, done.points),
        Some(Ok(_)) => {}
        Some(Err(e)) => tracing::debug!("spool not delivered: {e}"),
    }
}

/// What the report needs to know about this execution (`run.toml`).
fn run_info(plan: &Checked, jobs: &[Job]) -> reports::RunInfo {
    let experiment = &plan.loaded.experiment;
    let mut devices: Vec<String> = jobs.iter().map(|job| device::name(job.device)).collect();
    devices.sort();
    devices.dedup();
    reports::RunInfo {
        experiment: reports::run_info::ExperimentInfo {
            name: experiment.experiment.name.clone(),
            file: plan.loaded.path.display().to_string(),
            model: experiment.experiment.model.clone(),
            metric: experiment.experiment.metric.clone(),
            goal: experiment.experiment.goal.as_str().into(),
        },
        report: experiment.report.clone(),
        baseline: experiment.baseline.clone(),
        provenance: reports::run_info::Provenance {
            bertlab: env!("CARGO_PKG_VERSION").into(),
            git_commit: git_commit(&plan.loaded.path),
            libtorch: super::doctor::libtorch(),
            devices,
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        },
    }
}

/// The commit of the git tree the experiment file is in, if any.
fn git_commit(file: &std::path::Path) -> Option<String> {
    let folder = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let out = std::process::Command::new("git").arg("-C").arg(folder).args(["rev-parse", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Completes each trial with what only its dataset knows, and its device
/// ([`bind`]).
fn bind<'a>(plan: &Checked, prepared: &'a Prepared) -> Result<Vec<Job<'a>>> {
    let mut jobs = Vec::new();
    for (trial, &index) in plan.trials.iter().zip(&prepared.of_trial) {
        let data = &prepared.datasets[index];
        let mut trial = trial.clone();
        let train_examples = match &data.examples {
            Examples::Labeled(labeled) => {
                trial.task = Some(labeled.task.clone());
                Some(labeled.train.len())
            }
            Examples::Pretraining { .. } => None,
        };
        let facts = bind::Facts { vocab: data.vocab.size() as i64, train_examples };
        let locate = |e| plan.loaded.locate(e);
        bind::complete(&mut trial.config, &facts).map_err(locate)?;
        let device = bind::device(&trial.config).map_err(locate)?;
        jobs.push(Job { trial, data, device });
    }
    Ok(jobs)
}

fn run_one(plan: &Checked, jobs: &[Job], options: &launch::Options) -> Result<Tally> {
    let experiment = &plan.loaded.experiment.experiment;
    let store = Store::open(&plan.out)?;
    let mut notes = Vec::new();
    if plan.dropped > 0 {
        notes.push(format!("{} dropped by constraints", plan.dropped));
    }
    if plan.duplicates > 0 {
        notes.push(format!("{} repeats of the same configuration run once", plan.duplicates));
    }
    let dropped = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join(", ")) };
    eprintln!("run   {} ({}): {} trials{dropped} -> {}", experiment.name, plan.loaded.path.display(), jobs.len(), plan.out.display());
    deliver_spool(&plan.out);
    let tracker = tracker(plan, jobs);
    let progress = Progress::new(jobs.len() as u64);
    let sinks = Sinks { experiment: &experiment.name, display: &progress, tracker: tracker.as_ref() };
    let tally = launch::run(jobs, &store, options, &sinks)?;
    progress.finish();

    run_info(plan, jobs).write(&plan.out)?;
    let sweep: HashSet<String> = jobs.iter().map(|job| job.trial.id.clone()).collect();
    let report = reports::write(std::slice::from_ref(&plan.out), &plan.out.join(runfolder::names::REPORT), Some(&sweep))?;
    if let Some(tracker) = tracker {
        tracker.sweep_artifacts(vec![report.html.clone(), report.markdown.clone()]);
        if let Some(problem) = tracker.finish() {
            eprintln!("track MLflow stopped answering during the run: {problem}");
        }
        deliver_spool(&plan.out);
        match track::pending(&plan.out) {
            0 => eprintln!("track all records delivered to MLflow"),
            n => eprintln!(
                "track not every record reached MLflow: {n} trials wait in {}; `bertlab sync {}` delivers them",
                plan.out.join(runfolder::names::TRACKING_SPOOL).display(),
                plan.out.display()
            ),
        }
    }
    println!("{}", report.summary);
    let left = match tally.left.len() {
        0 => String::new(),
        n => format!(", {n} left to other runs ({})", owners(&tally.left)),
    };
    let interrupted = match tally.interrupted {
        0 => String::new(),
        n => format!(", {n} interrupted (checkpoints kept)"),
    };
    println!(
        "{} completed, {} failed, {} skipped (already completed){interrupted}{left}. Results: {}/{}, {}; report: {}",
        tally.completed,
        tally.failed,
        tally.skipped,
        plan.out.display(),
        runfolder::names::TRIALS_TABLE,
        runfolder::names::METRICS_TABLE,
        report.html.display()
    );
    Ok(tally)
}

/// `host:1234: 2 trials, host:5678: 1 trial`.
fn owners(left: &[String]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for owner in left {
        match counts.iter_mut().find(|(o, _)| o == owner) {
            Some((_, n)) => *n += 1,
            None => counts.push((owner, 1)),
        }
    }
    counts.iter().map(|(o, n)| format!("{o}: {n} trial{}", if *n == 1 { "" } else { "s" })).collect::<Vec<_>>().join(", ")
}
