//! End-to-end training through the CLI: real tiny BERTs trained by libtorch
//! on the bundled corpus, results read back from the Parquet tables.
mod common;
use common::*;
use polars::prelude::DataFrame;
use std::path::Path;
use std::sync::{RwLock, RwLockReadGuard};

/// The time-budget test measures wall-clock time, so it runs alone: every
/// other test here holds this lock shared, the budget test exclusively
/// (side by side on two cores, it managed a handful of steps in 3 s).
static MACHINE: RwLock<()> = RwLock::new(());

fn shared_machine() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `bertlab run file --out out` with `extra` arguments, which must succeed,
/// and the run folder's trials and metrics tables.
fn trained(file: &Path, out: &Path, extra: &[&str]) -> (DataFrame, DataFrame) {
    let r = run(bertlab().arg("run").arg(file).arg("--out").arg(out).args(extra));
    assert_eq!(r.code, 0, "{extra:?}: {}", r.stderr);
    (read_table(&out.join("trials.parquet")), read_table(&out.join("metrics.parquet")))
}

#[test]
fn training_lowers_eval_loss_and_fills_the_tables() {
    let _machine = shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "learn.toml", &experiment("learn", "steps = 80\neval_every = 40", ""));
    let out = dir.path().join("out");
    let (trials, metrics) = trained(&file, &out, &[]);
    for column in ["trial_id", "experiment", "status", "seed", "params", "train/loss", "eval/loss", "eval/accuracy", "perf/tokens_per_s", "wall_s", "error"] {
        assert!(trials.column(column).is_ok(), "trials.parquet lacks {column}: {:?}", trials.get_column_names());
    }
    assert_eq!(strings(&trials, "status"), ["completed"]);
    let id = &strings(&trials, "trial_id")[0];

    assert_eq!(
        metrics.get_column_names().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        ["trial_id", "step", "key", "value", "wall_s"]
    );
    let eval = series(&metrics, id, "eval/loss");
    assert_eq!(eval.iter().map(|p| p.0).collect::<Vec<_>>(), [0, 40, 80]);
    let (first, last) = (eval[0].1, eval[2].1);
    // Untrained, the loss is about ln(vocab) ≈ 7.6; 80 steps take it well down.
    assert!(last < first - 1.0, "eval/loss went from {first} to {last}");
    assert_eq!(floats(&trials, "eval/loss")[0], last);
    assert_eq!(series(&metrics, id, "train/loss").len(), 80);

    let trial_dir = out.join("trials").join(id);
    for file in ["config.toml", "log.txt", "model.safetensors"] {
        assert!(trial_dir.join(file).is_file(), "missing trials/{id}/{file}");
    }
    assert!(out.join("report.md").is_file() && out.join("report.html").is_file());
}

#[test]
fn same_seed_gives_identical_losses() {
    let _machine = shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let grid = "[sweep.grid]\n\"train.lr\" = [2e-3]";
    let file = write(dir.path(), "det.toml", &experiment("det", "steps = 20\neval_every = 0", grid));
    let losses = |out: &str, seed: u64| {
        let seeds = format!("--set=experiment.seeds=[{seed}]");
        let (trials, metrics) = trained(&file, &dir.path().join(out), &[&seeds]);
        series(&metrics, &strings(&trials, "trial_id")[0], "train/loss")
    };
    let a = losses("a", 0);
    let b = losses("b", 0);
    assert_eq!(a.len(), 20);
    assert_eq!(a, b, "same seed, different train/loss");
    assert_ne!(a, losses("c", 1), "a different seed should change the losses");
}

#[test]
fn rerun_skips_completed_trials_and_a_changed_value_runs_only_new_ones() {
    let _machine = shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sweep = |hidden: &str| {
        let axes = format!("[sweep.grid]\n\"model.hidden\" = {hidden}\n\n[derive]\n\"model.intermediate\" = \"2 * model.hidden\"");
        experiment("rerun", "steps = 5\neval_every = 0", &axes)
    };
    let file = write(dir.path(), "rerun.toml", &sweep("[32, 48]"));
    let first = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out));
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.stderr.matches("done ").count(), 2, "{}", first.stderr);
    let ids = strings(&read_table(&out.join("trials.parquet")), "trial_id");

    let again = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stderr.matches("done ").count(), 0, "{}", again.stderr);
    assert_eq!(again.stderr.matches("skip ").count(), 2, "{}", again.stderr);
    assert!(again.stdout.contains("2 skipped"), "{}", again.stdout);
    assert_eq!(strings(&read_table(&out.join("trials.parquet")), "trial_id"), ids);

    write(dir.path(), "rerun.toml", &sweep("[32, 64]"));
    let changed = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out));
    assert_eq!(changed.code, 0, "{}", changed.stderr);
    assert_eq!(changed.stderr.matches("skip ").count(), 1, "{}", changed.stderr);
    assert_eq!(changed.stderr.matches("done ").count(), 1, "{}", changed.stderr);
    assert!(changed.stderr.contains("model.hidden=64"), "{}", changed.stderr);
    let trials = read_table(&out.join("trials.parquet"));
    assert_eq!(trials.height(), 3);
    assert_eq!(floats(&trials, "model.hidden"), [32.0, 48.0, 64.0]);
    assert_eq!(floats(&trials, "model.intermediate"), [64.0, 96.0, 128.0]);
    // The terminal summary shows this sweep; the 48-wide trial is only in the report.
    assert!(changed.stdout.contains("(1 more configurations are in the report.)"), "{}", changed.stdout);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert_eq!(markdown_rows(&report, "Configurations").len(), 3, "{report}");

    let fresh = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out).arg("--fresh"));
    assert_eq!(fresh.stderr.matches("done ").count(), 2, "{}", fresh.stderr);
}

#[test]
fn a_diverging_trial_is_recorded_as_failed_and_the_others_still_run() {
    let _machine = shared_machine();
    // In this process, and in worker processes.
    for jobs in ["1", "2"] {
        diverging_trial(jobs);
    }
}

fn diverging_trial(jobs: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let text = experiment("diverge", "steps = 10\neval_every = 0\ngrad_clip = 0.0", "[sweep.grid]\n\"train.lr\" = [1e30, 1e-3]");
    let file = write(dir.path(), "diverge.toml", &text);
    let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out).args(["--jobs", jobs]));
    assert_eq!(r.code, 1, "one failed trial means exit 1 (--jobs {jobs}): {}", r.stderr);

    let trials = read_table(&out.join("trials.parquet"));
    let lrs = floats(&trials, "train.lr");
    let status = strings(&trials, "status");
    let errors = strings(&trials, "error");
    let failed = lrs.iter().position(|&lr| lr > 1.0).unwrap();
    assert_eq!(status[failed], "failed");
    assert!(errors[failed].contains("diverged"), "{}", errors[failed]);
    assert_eq!(status[1 - failed], "completed");
    assert!(out.join("report.html").is_file(), "the report is written even when a trial fails");
}

#[test]
fn every_precision_trains_and_auto_is_fp32_on_the_cpu() {
    let _machine = shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let sweep = "[sweep.grid]\n\"train.precision\" = [\"fp32\", \"bf16\", \"fp16\", \"auto\"]";
    let file = write(dir.path(), "precision.toml", &experiment("precision", "steps = 40\neval_every = 0", sweep));
    let (trials, metrics) = trained(&file, &dir.path().join("out"), &[]);
    let mut last = std::collections::BTreeMap::new();
    for (id, precision) in strings(&trials, "trial_id").iter().zip(strings(&trials, "train.precision")) {
        let eval = series(&metrics, id, "eval/loss");
        let (first, end) = (eval[0].1, eval[eval.len() - 1].1);
        assert!(end < first - 0.5, "{precision}: eval/loss went from {first} to {end}");
        last.insert(precision, end);
    }
    // Mixed precision changes the arithmetic, not the training: the curves end
    // close to fp32's. `auto` on the CPU is fp32, bit for bit.
    for precision in ["bf16", "fp16"] {
        assert!((last[precision] - last["fp32"]).abs() < 0.25, "{last:?}");
    }
    assert_eq!(last["auto"], last["fp32"], "{last:?}");
}

#[test]
fn jobs_2_runs_trials_in_worker_processes_with_the_results_of_jobs_1() {
    let _machine = shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let sweep = "[sweep.grid]\n\"model.hidden\" = [16, 32]\n\"train.lr\" = [1e-3, 2e-3]";
    let file = write(dir.path(), "jobs.toml", &experiment("jobs", "steps = 30\neval_every = 15", sweep));
    let mut finals = Vec::new();
    for jobs in ["1", "2"] {
        let out = dir.path().join(format!("jobs{jobs}"));
        let (trials, metrics) = trained(&file, &out, &["--jobs", jobs]);
        assert_eq!(strings(&trials, "status"), ["completed"; 4], "--jobs {jobs}");
        let mut by_trial = std::collections::BTreeMap::new();
        for id in strings(&trials, "trial_id") {
            // Every point of every series arrived, in order.
            assert_eq!(series(&metrics, &id, "train/loss").len(), 30, "--jobs {jobs}");
            let eval: Vec<i64> = series(&metrics, &id, "eval/loss").iter().map(|p| p.0).collect();
            assert_eq!(eval, [0, 15, 30], "--jobs {jobs}");
            assert!(out.join("trials").join(&id).join("model.safetensors").is_file());
            by_trial.insert(id.clone(), series(&metrics, &id, "eval/loss").last().unwrap().1);
        }
        finals.push(by_trial);
    }
    // Same trials, same seeds: the same losses, up to the summation order of
    // a different thread count per process.
    assert_eq!(finals[0].keys().collect::<Vec<_>>(), finals[1].keys().collect::<Vec<_>>());
    for (id, loss) in &finals[0] {
        let other = finals[1][id];
        assert!((loss - other).abs() < 1e-3 * loss.abs(), "{id}: --jobs 1 {loss} vs --jobs 2 {other}");
    }
}

/// Runs only where libtorch sees a GPU (CI has none; run it on a GPU machine
/// with `cargo test --release --test training -- gpu`).
#[test]
fn gpu_fp32_curve_matches_the_cpu_curve_for_the_same_seed() {
    let _machine = shared_machine();
    let doctor = run(bertlab().arg("doctor"));
    if !doctor.stdout.contains("cuda          available") {
        eprintln!("skipped: no CUDA device");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // No dropout: the CPU's and the GPU's random generators differ.
    let model = "[model]\nlayers = 2\nhidden = 64\nheads = 2\ndropout = 0.0\nattention_dropout = 0.0";
    let file = write(dir.path(), "gpu.toml", &experiment("gpu", "steps = 60\neval_every = 20\nprecision = \"fp32\"", "").replace("[model]\nlayers = 1\nhidden = 32\nheads = 2", model));
    let mut curves = Vec::new();
    for device in ["cpu", "cuda"] {
        let (trials, metrics) = trained(&file, &dir.path().join(device), &["--device", device]);
        curves.push(series(&metrics, &strings(&trials, "trial_id")[0], "train/loss"));
    }
    assert_eq!(curves[0].len(), 60);
    for ((step, cpu), (_, gpu)) in curves[0].iter().zip(&curves[1]) {
        assert!((cpu - gpu).abs() < 1e-4 * cpu.abs(), "step {step}: cpu {cpu} vs cuda {gpu}");
    }
}

#[test]
fn a_time_budget_ends_training_and_the_learning_rate_decays_over_it() {
    let _alone = MACHINE.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "budget.toml", &experiment("budget", "steps = 1000000\nbudget = \"3s\"\neval_every = 0", ""));
    let (trials, metrics) = trained(&file, &dir.path().join("out"), &[]);
    assert_eq!(strings(&trials, "status"), ["completed"]);
    let id = &strings(&trials, "trial_id")[0];
    let losses = series(&metrics, id, "train/loss");
    let last = losses.last().unwrap().0;
    assert!(last > 10 && last < 1_000_000, "stopped after {last} steps");
    assert_eq!(series(&metrics, id, "eval/loss").iter().map(|p| p.0).collect::<Vec<_>>(), [0, last], "evaluated at the start and where it stopped");
    let lr = series(&metrics, id, "train/lr");
    // Warm-up of 5 steps, then down towards zero as the budget runs out.
    let peak = lr.iter().map(|p| p.1).fold(0.0, f64::max);
    assert!(lr.last().unwrap().1 < 0.1 * peak, "{:?}", &lr[lr.len() - 3..]);
    assert!(lr.windows(2).skip(5).all(|w| w[1].1 <= w[0].1), "the rate only decreases after warm-up");
}

#[test]
fn next_sentence_prediction_trains_on_sentence_pairs_and_counts_bert_for_pretraining() {
    let _machine = shared_machine();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "nsp.toml", &experiment("nsp", "steps = 40\neval_every = 20", "").replace("seq_len = 32", "seq_len = 64\nnsp = true"));
    let (trials, metrics) = trained(&file, &dir.path().join("out"), &[]);
    let accuracy = floats(&trials, "eval/nsp_accuracy")[0];
    assert!((0.0..=1.0).contains(&accuracy) && floats(&trials, "eval/nsp_loss")[0].is_finite());
    let id = &strings(&trials, "trial_id")[0];
    assert_eq!(series(&metrics, id, "eval/nsp_loss").iter().map(|p| p.0).collect::<Vec<_>>(), [0, 20, 40]);
    let eval = series(&metrics, id, "eval/loss");
    assert!(eval[2].1 < eval[0].1 - 0.5, "the masked-LM part still learns: {eval:?}");

    // With the next-sentence head (and its pooler), `params` is Hugging Face's
    // BertForPreTraining count: the size Turc et al. publish for BERT-Mini
    // (11.3M); `transformers` gives 11,267,900 for this configuration.
    let mini = "--set=model.layers=4 --set=model.hidden=256 --set=model.heads=4 --set=model.intermediate=1024 --set=model.vocab_size=30522 --set=data.nsp=true";
    let plan = run(bertlab().arg("plan").arg(&file).args(mini.split(' ')).args(["--format", "json"]));
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(plan["trials"][0]["params"], 11_267_900, "{plan}");
}
