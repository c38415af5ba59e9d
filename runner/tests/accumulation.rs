//! Gradient accumulation (`train.micro_batch_size`): a step cut into
//! micro-batches makes the update of the whole batch, so without dropout
//! every `train/loss` and `eval/loss` point matches the plain batch's to
//! 1e-5 relative, for masked-LM pretraining (with next-sentence pairs too)
//! and for fine-tuning, whose last batch of an epoch is short.
mod common;
use common::*;
use std::path::{Path, PathBuf};

/// Runs `text` as `dir/<name>.toml` with `extra` `--set` flags; the run folder.
fn run_experiment(dir: &Path, name: &str, text: &str, sets: &[&str]) -> PathBuf {
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

/// Every point of `key`, by step, of the run's one trial.
fn points(out: &Path, key: &str) -> Vec<(i64, f64)> {
    let id = &strings(&read_table(&out.join("trials.parquet")), "trial_id")[0];
    series(&read_table(&out.join("metrics.parquet")), id, key)
}

fn assert_close(plain: &[(i64, f64)], accumulated: &[(i64, f64)], what: &str) {
    assert_eq!(plain.len(), accumulated.len(), "{what}: {plain:?} / {accumulated:?}");
    for ((step, a), (other, b)) in plain.iter().zip(accumulated) {
        assert_eq!(step, other, "{what}");
        assert!((a - b).abs() <= 1e-5 * a.abs(), "{what} at step {step}: {a} plain, {b} accumulated");
    }
}

/// The two runs of `text`: plain and with `micro_batch_size`; they must be
/// the same trial and train the same numbers.
fn compare(dir: &Path, name: &str, text: &str, keys: &[&str], micro: &str) {
    let plain = run_experiment(dir, &format!("{name}-plain"), text, &[]);
    let accumulated = run_experiment(dir, &format!("{name}-micro"), text, &[micro]);
    let id = |out: &Path| strings(&read_table(&out.join("trials.parquet")), "trial_id");
    assert_eq!(id(&plain), id(&accumulated), "{name}: how a step is cut is not part of the trial's id");
    for key in keys {
        let (a, b) = (points(&plain, key), points(&accumulated, key));
        assert!(a.len() >= 3, "{name} {key}: {a:?}");
        assert_close(&a, &b, &format!("{name} {key}"));
    }
}

#[test]
fn micro_batches_train_as_the_whole_batch_in_pretraining() {
    let dir = tempfile::tempdir().unwrap();
    for (name, nsp) in [("mlm", false), ("nsp", true)] {
        let text = experiment(name, "steps = 20\neval_every = 10\nlog_every = 1", "").replace("[model]\n", "[model]\ndropout = 0.0\nattention_dropout = 0.0\n")
            .replace("seq_len = 32\n", &format!("seq_len = 32\nnsp = {nsp}\n"));
        compare(dir.path(), name, &text, &["train/loss", "eval/loss"], "train.micro_batch_size=4");
    }
}

#[test]
fn micro_batches_train_as_the_whole_batch_in_fine_tuning() {
    let dir = tempfile::tempdir().unwrap();
    let pretrained = run_experiment(dir.path(), "pretrained", &experiment("pretrained", "steps = 5\neval_every = 0", ""), &[]);
    let init = std::fs::read_dir(pretrained.join("trials")).unwrap().next().unwrap().unwrap().path();
    // 600 training rows in batches of 48: each epoch ends on a batch of 24,
    // cut into micro-batches of 16 and 8.
    let text = format!(
        r#"[experiment]
name = "topics"
task = "classification"
metric = "eval/accuracy"
goal = "maximize"

[model]
init = {:?}
dropout = 0.0
attention_dropout = 0.0

[data]
train = "experiments/data/topics-train.tsv"
eval = "experiments/data/topics-dev.tsv"
text_columns = ["sentence"]
label_column = "label"
seq_len = 64

[train]
epochs = 1
batch_size = 48
lr = 1e-3
eval_every = 5
log_every = 1
device = "cpu"
"#,
        init.display().to_string()
    );
    compare(dir.path(), "topics", &text, &["train/loss", "eval/loss"], "train.micro_batch_size=16");
}
