//! `bertlab run`: load and check every experiment first (nothing trains if
//! any is invalid), prepare each distinct corpus once, run the trials, then
//! write the report and print the summary. With `--launcher slurm` the
//! trials are submitted as a job array instead (`--wait` follows it); each
//! array task is this command again with `--slurm-task --trial ID`.
use super::progress::Progress;
use crate::config::launch::Launcher;
use crate::config::{self, Loaded};
use crate::data::{self, cache::Cache, Dataset, Examples};
use crate::error::InputError;
use crate::launch::slurm::{self, follow::Followed, submit, task::Task};
use crate::launch::search::{self as searching, Searcher, Slots};
use crate::launch::world::{Launched, World};
use crate::launch::{self, Job, Sinks, Tally};
use crate::store::Store;
use crate::sweep;
use crate::trial::{bind, Trial};
use crate::track::{self, client::KeyValue, Tracker};
use crate::settings::DeviceSpec;
use crate::signals;
use crate::train::device;
use runfolder::TrialStatus;
use anyhow::Result;
use clap::Args;
use std::cell::OnceCell;
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
    /// Where the trials train, overriding `[launch] launcher`: local, or
    /// slurm (one job array, through sbatch).
    #[arg(long, value_enum)]
    launcher: Option<Launcher>,
    /// With --launcher slurm: follow the jobs until they end, then write
    /// the report.
    #[arg(long)]
    wait: bool,
    /// With --launcher slurm: submit failed trials again too.
    #[arg(long)]
    retry_failed: bool,
    /// Train only this trial of the sweep (its id, as `plan` shows it).
    #[arg(long, value_name = "TRIAL_ID")]
    trial: Option<String>,
    /// This process is an array task of a Slurm submission (internal):
    /// with --trial, that trial; without, a worker of an adaptive sweep.
    #[arg(long, hide = true)]
    slurm_task: bool,
}

/// An experiment checked and expanded, ready to run.
struct Checked {
    loaded: Loaded,
    /// Every trial of the sweep (what its report covers).
    trials: Vec<Trial>,
    /// The trials this process trains: all, or the one `--trial` names.
    selected: Vec<Trial>,
    /// Trials the constraints dropped and repeats merged, for the opening line.
    dropped: usize,
    duplicates: usize,
    out: PathBuf,
    /// Its ranks are processes torchrun or srun started.
    launched: bool,
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
        let mut loaded = config::load(file, &args.sets)?;
        if let Some(launcher) = args.launcher {
            loaded.experiment.launch.launcher = launcher;
        }
        if args.slurm_task {
            // Recorded in run.toml as where the trial trains.
            loaded.experiment.launch.launcher = Launcher::Slurm;
        }
        let sweep::Expanded { mut trials, dropped, duplicates } = sweep::expand(&loaded)?;
        if let Some(device) = &args.device {
            DeviceSpec::parse(device).map_err(|m| InputError::new(m).key("--device"))?;
            trials.iter_mut().for_each(|t| t.config.train.device = device.clone());
        }
        let searched = !loaded.experiment.sweep.search.is_empty();
        if searched && args.trial.is_some() {
            return Err(InputError::new("a search's trials come from its suggestions, one after another: run the whole experiment").key("--trial").into());
        }
        let selected = match &args.trial {
            Some(id) => trials.iter().filter(|t| t.id == *id).cloned().collect(),
            None => trials.clone(),
        };
        if selected.is_empty() && !searched {
            let id = args.trial.as_deref().unwrap_or_default();
            return Err(InputError::new(format!("has no trial {id} (`bertlab plan` lists its trials; was the file changed after the trial was submitted?)")).in_file(file).into());
        }
        let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&loaded.experiment.experiment.name));
        planned.push(Checked { loaded, trials, selected, dropped, duplicates, out, launched: false });
    }
    let submits = !args.slurm_task && planned.iter().any(|p| p.loaded.experiment.launch.launcher == Launcher::Slurm);
    check_launch_flags(&args, submits)?;
    if let Some(cpus) = Task::cpus().filter(|_| args.slurm_task) {
        tch::set_num_threads(cpus);
    }
    // Started by torchrun or srun as one of several ranks: rank 0 runs the
    // sweep, the others train beside it.
    let launched = Launched::from_env()?;
    if let Some(launched) = &launched {
        check_world(launched, &planned, &args, submits)?;
        planned.iter_mut().for_each(|plan| plan.launched = true);
    }
    let world = launched.map(Launched::meet).transpose()?;
    if let Some(world) = world.as_ref().filter(|w| w.launched.rank > 0) {
        return world.follow();
    }
    let _dismiss = world.as_ref().map(Dismiss);
    let task = if args.slurm_task { Some(Task::from_env()?) } else { None };

    let cache = Cache::from_env();
    let mut worst = 0;
    for plan in &mut planned {
        let experiment = &plan.loaded.experiment;
        let early_stop = experiment.sweep.early_stop.clone().map(|settings| launch::early_stop::Rules {
            settings,
            metric: experiment.experiment.metric.clone(),
            maximize: experiment.experiment.goal.as_str() == "maximize",
        });
        let options = launch::Options { fresh: args.fresh, parallel: args.jobs, devices: experiment.train.ranks(), retries: args.retries, early_stop, world: world.as_ref() };
        let plan = &*plan;
        let prepared = prepare_data(plan, &cache)?;
        let jobs = bind(plan, &prepared)?;
        if submits {
            if !plan.loaded.experiment.sweep.search.is_empty() {
                // The tasks read the vocabulary trained here, from the cache.
                if let Some(trial) = sweep::Expansion::new(&plan.loaded)?.base_trial().ok().flatten() {
                    SharedData::default().bind(plan, &cache, trial)?;
                }
            }
            worst = worst.max(submit_one(plan, &jobs, &args, &cache)?);
            continue;
        }
        let tally = if plan.loaded.experiment.sweep.search.is_empty() {
            run_one(plan, Trials::Listed(&jobs), &options, task.is_some())?
        } else {
            let expansion = sweep::Expansion::new(&plan.loaded)?;
            let slots = searching::slots(&expansion);
            let data = SharedData::default();
            let bind = |trial: Trial| data.bind(plan, &cache, trial);
            run_one(plan, Trials::Searched { expansion: &expansion, slots: &slots, bind: &bind }, &options, task.is_some())?
        };
        worst = worst.max(i32::from(tally.failed > 0));
        if let Some(signal) = signals::requested() {
            eprintln!("stop  {}: {} trials interrupted, their checkpoints kept; the same command resumes them", signal.name(), tally.interrupted);
            // A trial that ended before the signal took effect needs no
            // second slot (and requeueing would kill this process while it
            // writes the tables).
            if let Some(task) = task.as_ref().filter(|_| tally.interrupted > 0) {
                eprintln!("{}", task.requeue(&plan.out));
            }
            return Ok(signal.exit_code());
        }
    }
    Ok(worst)
}

/// Under torchrun or srun: every experiment's trials train on all the
/// ranks, one trial at a time, here.
fn check_world(world: &Launched, planned: &[Checked], args: &RunArgs, submits: bool) -> Result<(), InputError> {
    let refuse = |flag: &str, why: String| Err(InputError::new(why).key(flag.to_string()));
    if args.jobs > 1 {
        return refuse("--jobs", format!("under {} every trial trains on all {} ranks it started, one trial at a time", world.launcher(), world.size));
    }
    if submits {
        return refuse("--launcher", format!("submits to Slurm; under {} the trials train on the ranks it started", world.launcher()));
    }
    if !torch_ops::distributed::has_gloo() {
        return Err(InputError::new(format!("under {} the ranks meet through c10d's Gloo process groups, and this bertlab was built without Gloo's headers: install Debian's libgloo-dev (`make gloo`) and build again", world.launcher())));
    }
    for plan in planned {
        world.check(&plan.loaded.experiment.train).map_err(|m| plan.loaded.error_at("train.devices", m))?;
        for trial in &plan.selected {
            world.device(bind::device(&trial.config).map_err(|e| plan.loaded.locate(e))?)?;
        }
    }
    Ok(())
}

/// Tells the other ranks the sweep is over however rank 0's run ends.
struct Dismiss<'a>(&'a World);

impl Drop for Dismiss<'_> {
    fn drop(&mut self) {
        self.0.dismiss();
    }
}

/// Flags that only one launcher takes, refused with the other.
fn check_launch_flags(args: &RunArgs, submits: bool) -> Result<(), InputError> {
    let refuse = |flag: &str, why: &str| Err(InputError::new(why.to_string()).key(flag.to_string()));
    if submits {
        if args.jobs > 1 {
            return refuse("--jobs", "with --launcher slurm each trial is an array task: launch.slurm.max_parallel says how many run at once");
        }
        if args.fresh {
            return refuse("--fresh", "with --launcher slurm a requeued task would start its trial over: delete the trials' folders to start them over");
        }
        if args.trial.is_some() {
            return refuse("--trial", "trains one trial here; with --launcher slurm, submit the whole sweep");
        }
    } else {
        if args.wait {
            return refuse("--wait", "follows Slurm jobs: it goes with --launcher slurm");
        }
        if args.retry_failed {
            return refuse("--retry-failed", "resubmits failed trials to Slurm: it goes with --launcher slurm (a local run retries failed trials anyway)");
        }
    }
    Ok(())
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
    let mut prepared = Prepared { datasets: Vec::new(), of_trial: Vec::with_capacity(plan.selected.len()) };
    let mut by_key = HashMap::new();
    for trial in &plan.selected {
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
fn tracker(plan: &Checked, trials: u64) -> Option<Tracker> {
    let experiment = &plan.loaded.experiment;
    let settings = track::Settings::resolve(experiment.tracking.mlflow_uri.as_deref(), &experiment.experiment.name)?;
    let tag = |key: &str, value: String| KeyValue { key: key.into(), value };
    let mut tags = vec![
        tag("bertlab.experiment", experiment.experiment.name.clone()),
        tag("bertlab.plugin", experiment.experiment.model.clone()),
        tag("bertlab.version", env!("CARGO_PKG_VERSION").into()),
        tag("bertlab.trials", trials.to_string()),
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
fn run_info(plan: &Checked, jobs: &[&Job]) -> reports::RunInfo {
    let experiment = &plan.loaded.experiment;
    let launch = toml::Value::try_from(&experiment.launch).ok();
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
        launch,
    }
}

/// The commit of the git tree the experiment file is in, if any.
fn git_commit(file: &std::path::Path) -> Option<String> {
    let folder = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let out = std::process::Command::new("git").arg("-C").arg(folder).args(["rev-parse", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Completes each trial with what only its dataset knows, and its device.
fn bind<'a>(plan: &Checked, prepared: &'a Prepared) -> Result<Vec<Job<'a>>> {
    plan.selected.iter().zip(&prepared.of_trial).map(|(trial, &index)| bind_one(plan, &prepared.datasets[index], trial.clone())).collect()
}

/// One trial completed with what only its dataset knows, and its device
/// ([`bind`]).
fn bind_one<'a>(plan: &Checked, data: &'a Dataset, mut trial: Trial) -> Result<Job<'a>> {
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
    let device = bind::devices(&trial.config, plan.launched).map_err(locate)?[0];
    Ok(Job { trial, data, device })
}

/// A search's one dataset, prepared for its first suggestion (the search
/// keys leave `[data]` alone, so every suggestion shares it).
#[derive(Default)]
struct SharedData {
    /// The data key ([`data_key`]) and its examples.
    prepared: OnceCell<(String, Dataset)>,
}

impl SharedData {
    fn bind<'a>(&'a self, plan: &Checked, cache: &Cache, trial: Trial) -> Result<Job<'a>> {
        let key = data_key(&trial);
        if self.prepared.get().is_none() {
            let dataset = data::prepare(trial.config.task, &trial.config.data, cache).map_err(|e| locate(&plan.loaded, e))?;
            eprintln!("data  {}", dataset.summary);
            let _ = self.prepared.set((key.clone(), dataset));
        }
        let (shared, data) = self.prepared.get().expect("just prepared");
        if *shared != key {
            let message = format!("trial {} ({}) reads other data than the search's first: a search's trials share one corpus (does a search key change model.init?)", trial.id, trial.label());
            return Err(plan.loaded.error_at("sweep.search", message).into());
        }
        bind_one(plan, data, trial)
    }
}

/// The trials `run_one` trains: listed up front, or suggested by a search
/// as it goes.
enum Trials<'a> {
    Listed(&'a [Job<'a>]),
    Searched { expansion: &'a sweep::Expansion<'a>, slots: &'a Slots<'a>, bind: &'a dyn Fn(Trial) -> Result<Job<'a>> },
}

/// Trains `jobs` here. An array task (`task`) writes the report only when
/// its trial was the sweep's last to settle: the report is the sweep's,
/// and the tasks before it would each write it for nothing.
fn run_one<'a>(plan: &Checked, trials: Trials<'a>, options: &launch::Options, task: bool) -> Result<Tally> {
    let experiment = &plan.loaded.experiment.experiment;
    let store = Store::open(&plan.out)?;
    let (listed, searcher, total): (Vec<&'a Job<'a>>, Option<Searcher<'a>>, u64) = match trials {
        Trials::Listed(jobs) => (jobs.iter().collect(), None, jobs.len() as u64),
        Trials::Searched { expansion, slots, bind } => {
            let searcher = Searcher::new(expansion, slots, bind, &store.folder, options.fresh)?;
            (searcher.jobs(), Some(searcher), expansion.len())
        }
    };
    let mut notes = Vec::new();
    if plan.dropped > 0 {
        notes.push(format!("{} dropped by constraints", plan.dropped));
    }
    if plan.duplicates > 0 {
        notes.push(format!("{} repeats of the same configuration run once", plan.duplicates));
    }
    let dropped = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join(", ")) };
    let up_to = if searcher.is_some() { "up to " } else { "" };
    eprintln!("run   {} ({}): {up_to}{total} trials{dropped} -> {}", experiment.name, plan.loaded.path.display(), plan.out.display());
    deliver_spool(&plan.out);
    let tracker = tracker(plan, total);
    let progress = Progress::new(total);
    let sinks = Sinks { experiment: &experiment.name, display: &progress, tracker: tracker.as_ref() };
    let tally = launch::run(&listed, searcher, &store, options, &sinks)?;
    progress.finish();

    // A search's sweep is the trials it suggested, in this run or before.
    let (jobs, sweep): (Vec<&Job>, HashSet<String>) = match trials {
        Trials::Listed(jobs) => (jobs.iter().collect(), plan.trials.iter().map(|trial| trial.id.clone()).collect()),
        Trials::Searched { slots, .. } => {
            let jobs: Vec<&Job> = slots.iter().filter_map(OnceCell::get).collect();
            // Other processes' suggestions too (Slurm workers share the search).
            let ids = runfolder::decisions::suggested_trials(&plan.out)?.into_iter().collect();
            (jobs, ids)
        }
    };
    run_info(plan, &jobs).write(&plan.out)?;
    // Under early stopping a trial left at its rung is done with, once
    // nothing else trains; a search, once it made every suggestion.
    let adaptive = options.early_stop.is_some() || matches!(trials, Trials::Searched { .. });
    let ended = |status| matches!(status, Some(TrialStatus::Completed | TrialStatus::Failed)) || (adaptive && status == Some(TrialStatus::Pruned));
    let settled = || sweep.len() as u64 >= total && sweep.iter().all(|id| ended(store.status(id)));
    let report = if !task || settled() { Some(reports::write(std::slice::from_ref(&plan.out), &plan.out.join(runfolder::names::REPORT), Some(&sweep))?) } else { None };
    if let Some(tracker) = tracker {
        if let Some(report) = &report {
            tracker.sweep_artifacts(vec![report.html.clone(), report.markdown.clone()]);
        }
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
    let left = match tally.left.len() {
        0 => String::new(),
        n => format!(", {n} left to other runs ({})", owners(&tally.left)),
    };
    let interrupted = match tally.interrupted {
        0 => String::new(),
        n => format!(", {n} interrupted (checkpoints kept)"),
    };
    let pruned = match sweep.iter().filter(|id| store.status(id) == Some(TrialStatus::Pruned)).count() {
        0 => String::new(),
        n => format!(", {n} pruned by early stopping"),
    };
    let counts = format!("{} completed, {} failed, {} skipped (already completed){interrupted}{pruned}{left}", tally.completed, tally.failed, tally.skipped);
    match report {
        Some(report) => {
            println!("{}", report.summary);
            println!("{counts}. Results: {}/{}, {}; report: {}", plan.out.display(), runfolder::names::TRIALS_TABLE, runfolder::names::METRICS_TABLE, report.html.display());
        }
        None => println!("{counts}. Results: {}/{}; the sweep's last task writes the report", plan.out.display(), runfolder::names::TRIALS_TABLE),
    }
    Ok(tally)
}

/// `--launcher slurm`: records the run, opens its MLflow parent run, and
/// submits the trials nothing owns as one job array; with `--wait`,
/// follows the jobs to their end and writes the report. Exit 1 when a
/// trial failed or was left unfinished at the end of `--wait`.
fn submit_one(plan: &Checked, jobs: &[Job], args: &RunArgs, cache: &Cache) -> Result<i32> {
    let experiment = &plan.loaded.experiment;
    let run_dir = std::path::absolute(&plan.out)?;
    Store::open(&run_dir)?;
    run_info(plan, &jobs.iter().collect::<Vec<_>>()).write(&run_dir)?;
    // A search's trials are its suggestions, made by the workers as they go.
    let search = sweep::Expansion::new(&plan.loaded)?.search().map(|s| s.trials * experiment.experiment.seeds.len() as u64);
    let sweep_now = || -> Result<Vec<String>> {
        match search {
            Some(_) => runfolder::decisions::suggested_trials(&run_dir),
            None => Ok(plan.trials.iter().map(|t| t.id.clone()).collect()),
        }
    };
    let total = search.unwrap_or(plan.trials.len() as u64);
    let up_to = if search.is_some() { "up to " } else { "" };
    eprintln!("run   {} ({}): {up_to}{total} trials -> {} through Slurm", experiment.experiment.name, plan.loaded.path.display(), plan.out.display());
    // The parent run exists before any task logs under it.
    if let Some(problem) = tracker(plan, total).and_then(Tracker::finish) {
        eprintln!("track MLflow did not answer ({problem}); each task tries again, and `bertlab sync` delivers what they could not");
    }
    let mut command = vec![std::env::current_exe()?.display().to_string(), "run".into(), std::path::absolute(&plan.loaded.path)?.display().to_string(), "--out".into(), run_dir.display().to_string()];
    for set in &args.sets {
        command.extend(["--set".to_string(), set.clone()]);
    }
    if let Some(device) = &args.device {
        command.extend(["--device".to_string(), device.clone()]);
    }
    command.push("--slurm-task".into());
    let sweep = sweep_now()?;
    // Early stopping and a search decide what trains as the sweep goes: the
    // array's tasks are workers.
    let adaptive = experiment.sweep.early_stop.is_some() || search.is_some();
    let workers = adaptive.then(|| experiment.launch.slurm.max_parallel.map_or(DEFAULT_WORKERS, |n| n as usize));
    let request = submit::Request {
        run_dir: &run_dir,
        trials: &sweep,
        slurm: &experiment.launch.slurm,
        job_name: format!("bertlab-{}", experiment.experiment.name),
        command,
        exports: task_environment(cache)?,
        workdir: std::env::current_dir()?,
        retry_failed: args.retry_failed,
        ranks: experiment.train.ranks(),
        workers,
        search_left: search.is_some_and(|total| (sweep.len() as u64) < total),
    };
    let submitted = submit::submit(&request)?;
    let mut left = Vec::new();
    if submitted.completed > 0 {
        left.push(format!("{} completed", submitted.completed));
    }
    if submitted.failed > 0 {
        left.push(format!("{} failed (--retry-failed submits them again)", submitted.failed));
    }
    if submitted.pruned > 0 {
        left.push(format!("{} pruned by early stopping", submitted.pruned));
    }
    if !submitted.owned.is_empty() {
        let owners: Vec<String> = submitted.owned.iter().map(|(_, by)| by.clone()).collect();
        left.push(format!("{} owned by live jobs or processes ({})", submitted.owned.len(), owners.join(", ")));
    }
    if let Some(job) = &submitted.workers_live {
        left.push(format!("the workers of job {job} still run"));
    }
    let left = if left.is_empty() { String::new() } else { format!("; left out: {}", left.join(", ")) };
    match &submitted.submission {
        Some(submission) if submission.workers > 0 => eprintln!("slurm submitted job {}: {} worker tasks{left}; script {}", submission.job_id, submission.workers, submission.script.display()),
        Some(submission) => eprintln!("slurm submitted job {}: {} array tasks{left}; script {}", submission.job_id, submission.trials.len(), submission.script.display()),
        None => eprintln!("slurm nothing to submit{left}"),
    }
    println!("bertlab status {}", plan.out.display());
    if !args.wait {
        return Ok(0);
    }
    let job_ids = slurm::job_ids(&slurm::submissions(&run_dir)?);
    let progress = Progress::new(total);
    let followed = slurm::follow::follow(&run_dir, &job_ids, &sweep_now, &progress)?;
    progress.finish();
    if let Followed::Stopped = followed {
        eprintln!("stop  following; the jobs go on (`bertlab status {}`, `bertlab cancel {}`)", plan.out.display(), plan.out.display());
        return Ok(0);
    }
    let store = Store::open(&run_dir)?;
    let sweep = sweep_now()?;
    let count = |status: TrialStatus| sweep.iter().filter(|id| store.status(id) == Some(status)).count();
    let (completed, failed, pruned) = (count(TrialStatus::Completed), count(TrialStatus::Failed), count(TrialStatus::Pruned));
    let unfinished = sweep.len() - completed - failed - pruned;
    let ids: HashSet<String> = sweep.iter().cloned().collect();
    let report = reports::write(std::slice::from_ref(&plan.out), &plan.out.join(runfolder::names::REPORT), Some(&ids))?;
    println!("{}", report.summary);
    let unfinished_note = if unfinished > 0 { format!(", {unfinished} unfinished (the jobs ended before them: submit again to resume them)") } else { String::new() };
    let pruned_note = if pruned > 0 { format!(", {pruned} pruned by early stopping") } else { String::new() };
    println!("{completed} completed, {failed} failed{pruned_note}{unfinished_note}. Results: {}/{}; report: {}", plan.out.display(), runfolder::names::TRIALS_TABLE, report.html.display());
    Ok(i32::from(failed > 0 || unfinished > 0))
}

/// Worker tasks of an adaptive sweep's array without `launch.slurm.max_parallel`.
const DEFAULT_WORKERS: usize = 4;

/// What an array task needs from this environment whatever sbatch's
/// `--export` passes on: the keys set as `BERTLAB_SECTION__KEY`, the MLflow
/// server, and the cache, so every node reads the vocabularies this
/// submission trained (a trained vocabulary differs between trainings).
fn task_environment(cache: &Cache) -> Result<Vec<(String, String)>> {
    let mut exports: Vec<(String, String)> = std::env::vars().filter(|(name, _)| (name.starts_with("BERTLAB_") && name.contains("__")) || name == "MLFLOW_TRACKING_URI").collect();
    exports.sort();
    exports.push(("BERTLAB_CACHE_DIR".into(), std::path::absolute(cache.root())?.display().to_string()));
    Ok(exports)
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
