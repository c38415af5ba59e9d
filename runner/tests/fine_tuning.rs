//! Fine-tuning end to end through the CLI: a tiny BERT pretrained on the
//! bundled corpus, then fine-tuned from its trial folder (found by a glob)
//! on labelled examples, on real text and on every kind of GLUE layout.
mod common;
use common::{bertlab, experiment, floats, markdown_rows, read_table, run, run_experiment, strings, topics_experiment, venv_python, workspace_root, write};
use std::path::Path;

/// Pretrains a tiny model into `dir/pretrained` and returns the glob that
/// finds its trial folder.
fn pretrained(dir: &Path) -> String {
    let out = run_experiment(dir, "pretrained", &experiment("pretrain", "steps = 150\neval_every = 0", "").replace("hidden = 32", "hidden = 64"), &[]);
    format!("{}/trials/*", out.display())
}

#[test]
fn a_pretrained_checkpoint_fine_tuned_on_real_sentences_beats_the_majority_class() {
    let dir = tempfile::tempdir().unwrap();
    let init = pretrained(dir.path());
    let out = run_experiment(
        dir.path(),
        "topics",
        &topics_experiment(
            "topics",
            &init,
            "",
            r#"epochs = 4
batch_size = 16
lr = 1e-3
warmup_steps = 10
eval_every = 0

[[baseline]]
name = "majority class"
source = "the dev set is balanced: 100 sentences of each class"
metrics = { "eval/accuracy" = 0.5 }
"#,
        ),
        &[],
    );
    let trials = read_table(&out.join("trials.parquet"));
    assert_eq!(strings(&trials, "task"), ["topics-train"]);
    let accuracy = floats(&trials, "eval/accuracy")[0];
    // 200 balanced dev sentences: chance is 0.5 ± 0.035, so 0.65 is 4 sigma.
    assert!(accuracy >= 0.65, "fine-tuned accuracy {accuracy} does not clearly beat the majority class (0.5)");
    assert!((floats(&trials, "eval/score")[0] - 100.0 * accuracy).abs() < 1e-9);
    // 600 examples in batches of 16 for 4 epochs.
    let config = std::fs::read_to_string(out.join("trials").join(&strings(&trials, "trial_id")[0]).join("config.toml")).unwrap();
    assert!(config.contains("steps = 152") && config.contains("task = \"classification\""), "{config}");

    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let baseline = markdown_rows(&report, "Baselines");
    assert_eq!(baseline.len(), 1, "{report}");
    assert_eq!(&baseline[0][0], "majority class");
    assert_eq!(baseline[0][5].parse::<f64>().unwrap(), (accuracy * 1e4).round() / 1e4);
    assert!(baseline[0][6].starts_with('+'), "{:?}", baseline[0]);
    let selection = markdown_rows(&report, "Model selection");
    assert_eq!(selection[0][1], format!("{:.1}", 100.0 * accuracy), "{report}");

    // Exported, the classifier is Hugging Face's BertForSequenceClassification:
    // transformers, with its own tokenizer on the exported vocab.txt, scores
    // the dev set as bertlab did.
    let trial = out.join("trials").join(&strings(&trials, "trial_id")[0]);
    let exported = dir.path().join("exported");
    let export = run(bertlab().arg("export").arg(&trial).arg("--out").arg(&exported));
    assert_eq!(export.code, 0, "{}", export.stderr);
    let python = venv_python();
    let theirs = run(std::process::Command::new(python)
        .arg(workspace_root().join("python/tests/hf_reference.py"))
        .args(["classify"])
        .arg(&exported)
        .arg(workspace_root().join("experiments/data/topics-dev.tsv"))
        .arg("64")
        .env("HF_HUB_OFFLINE", "1"));
    assert_eq!(theirs.code, 0, "{}", theirs.stderr);
    let theirs: serde_json::Value = serde_json::from_str(theirs.stdout.trim()).unwrap();
    let loss = floats(&trials, "eval/loss")[0];
    assert!((theirs["loss"].as_f64().unwrap() - loss).abs() < 1e-4, "transformers {theirs} vs bertlab eval/loss {loss}");
    assert!((theirs["accuracy"].as_f64().unwrap() - accuracy).abs() < 1e-6, "transformers {theirs} vs bertlab eval/accuracy {accuracy}");
}

#[test]
fn glue_tasks_in_their_distributed_layouts_fine_tune_and_score_as_glue_defines() {
    let dir = tempfile::tempdir().unwrap();
    let init = pretrained(dir.path());
    let checkpoint = glob::glob(&init).unwrap().next().unwrap().unwrap().display().to_string();
    let out = run_experiment(
        dir.path(),
        "glue",
        &format!(
            r#"[experiment]
name = "glue"
task = "classification"
metric = "eval/score"
goal = "maximize"

[model]
init = "{checkpoint}"

[data]
train = "runner/tests/fixtures/glue"
seq_len = 64

[train]
epochs = 2
batch_size = 4
lr = 1e-4
eval_every = 0
device = "cpu"

[sweep.grid]
"data.format" = ["glue/cola", "glue/mrpc", "glue/sts-b", "glue/mnli"]

[[baseline]]
name = "a published score"
source = "made up for the test"
match = {{ "model.init" = "{checkpoint}" }}
metrics = {{ "glue/score" = 50.0 }}
"#
        ),
        &[],
    );
    let trials = read_table(&out.join("trials.parquet"));
    let tasks = strings(&trials, "task");
    let column = |name: &str| -> Vec<Option<f64>> {
        let values = trials.column(name).unwrap().as_materialized_series().f64().unwrap().clone();
        values.iter().collect()
    };
    let row = |task: &str| tasks.iter().position(|t| t == task).unwrap();
    let (cola, mrpc, stsb, mnli) = (row("CoLA"), row("MRPC"), row("STS-B"), row("MNLI"));
    let score = column("eval/score");
    // Each task's GLUE metrics, and its score their mean in points.
    let mcc = column("eval/mcc")[cola].unwrap();
    assert!((score[cola].unwrap() - 100.0 * mcc).abs() < 1e-9);
    let (f1, accuracy) = (column("eval/f1")[mrpc].unwrap(), column("eval/accuracy")[mrpc].unwrap());
    assert!((score[mrpc].unwrap() - 50.0 * (f1 + accuracy)).abs() < 1e-9);
    let (pearson, spearman) = (column("eval/pearson")[stsb].unwrap(), column("eval/spearman")[stsb].unwrap());
    assert!((-1.0..=1.0).contains(&pearson) && (-1.0..=1.0).contains(&spearman));
    assert!((score[stsb].unwrap() - 50.0 * (pearson + spearman)).abs() < 1e-9);
    let (matched, mismatched) = (column("eval/accuracy")[mnli].unwrap(), column("eval/accuracy_mm")[mnli].unwrap());
    assert!((score[mnli].unwrap() - 50.0 * (matched + mismatched)).abs() < 1e-9);
    assert!(column("eval/mcc")[mrpc].is_none(), "MRPC is not scored by Matthews correlation");

    // One checkpoint, four tasks: the GLUE score is the mean of their best scores.
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let selection = markdown_rows(&report, "Model selection");
    assert_eq!(selection.len(), 1, "{report}");
    let glue: f64 = selection[0][5].parse().unwrap();
    let mean = [cola, mnli, mrpc, stsb].iter().map(|&r| score[r].unwrap()).sum::<f64>() / 4.0;
    assert!((glue - mean).abs() < 0.051, "GLUE score {glue} vs the mean of the tasks {mean}");
    assert_eq!(selection[0][6], "50.0");
    assert_eq!(selection[0][7], format!("{:+.1}", glue - 50.0));
}

#[test]
fn fine_tuning_starts_from_a_hub_id_with_the_snapshots_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let trial = glob::glob(&pretrained(dir.path())).unwrap().next().unwrap().unwrap();
    // The pretrained model, exported, as a snapshot in a hub cache.
    let cache = dir.path().join("hub");
    let repo = cache.join("models--org--pretrained");
    let commit = "c".repeat(40);
    let export = run(bertlab().arg("export").arg(&trial).arg("--out").arg(repo.join("snapshots").join(&commit)));
    assert_eq!(export.code, 0, "{}", export.stderr);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), &commit).unwrap();
    let file = write(
        dir.path(),
        "hub.toml",
        &topics_experiment("hub", "hf:org/pretrained", "", "epochs = 1\nbatch_size = 32\nlr = 1e-3\neval_every = 0\n"),
    );
    let out = dir.path().join("hub");
    let done = run(bertlab().env("HF_HUB_CACHE", &cache).arg("run").arg(&file).arg("--out").arg(&out));
    assert_eq!(done.code, 0, "{}", done.stderr);
    let trials = read_table(&out.join("trials.parquet"));
    assert_eq!(strings(&trials, "status"), ["completed"]);
    // The id, not this machine's cache path, is the trial's configuration.
    let config = std::fs::read_to_string(out.join("trials").join(&strings(&trials, "trial_id")[0]).join("config.toml")).unwrap();
    assert!(config.contains("init = \"hf:org/pretrained\"") && config.contains("tokenizer = \"hf:org/pretrained\""), "{config}");
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("## Model selection"));
}
