//! Rejected input: a one-line error naming the file, the key and where
//! possible the line; exit code 2; nothing trained, no run folder written.
mod common;
use common::*;
use std::path::Path;

/// Runs `text` as an experiment and checks the rejection; returns stderr.
fn rejected(dir: &Path, text: &str, extra_args: &[&str]) -> String {
    let file = write(dir, "bad.toml", text);
    let out = dir.join("out");
    let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out).args(extra_args));
    assert_eq!(r.code, 2, "expected exit 2, got {}: {}", r.code, r.stderr);
    assert!(!out.join("trials.parquet").exists(), "a rejected experiment must not train");
    let error = r.stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line: {}", r.stderr));
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    error.to_string()
}

fn tiny(data: &str, model: &str) -> String {
    format!("[experiment]\nname = \"bad\"\n\n[model]\nlayers = 1\n{model}\n\n[data]\n{data}\nseq_len = 32\n\n[train]\nsteps = 2\ndevice = \"cpu\"\n")
}

#[test]
fn a_glob_matching_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let error = rejected(dir.path(), &tiny("corpus = [\"no/such/*.txt\"]", "hidden = 32\nheads = 2"), &[]);
    assert!(error.contains("bad.toml:") && error.contains("data.corpus") && error.contains("no/such/*.txt"), "{error}");
}

#[test]
fn a_missing_corpus_section() {
    let dir = tempfile::tempdir().unwrap();
    let error = rejected(dir.path(), "[experiment]\nname = \"bad\"\n", &[]);
    assert!(error.contains("bad.toml") && error.contains("data.corpus"), "{error}");
}

#[test]
fn an_empty_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write(dir.path(), "empty.txt", "\n \n\n");
    let error = rejected(dir.path(), &tiny(&format!("corpus = [{:?}]", corpus.display().to_string()), "hidden = 32\nheads = 2"), &[]);
    assert!(error.contains("data.corpus") && error.contains("empty") && error.contains("empty.txt"), "{error}");
}

#[test]
fn an_unreadable_corpus_file() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("gone.txt");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &corpus).unwrap();
    let error = rejected(dir.path(), &tiny(&format!("corpus = [{:?}]", corpus.display().to_string()), "hidden = 32\nheads = 2"), &[]);
    assert!(error.contains("gone.txt") && error.contains("data.corpus") && error.contains("cannot read"), "{error}");
}

#[test]
fn a_corpus_that_is_not_text() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("binary.txt");
    std::fs::write(&corpus, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let error = rejected(dir.path(), &tiny(&format!("corpus = [{:?}]", corpus.display().to_string()), "hidden = 32\nheads = 2"), &[]);
    assert!(error.contains("binary.txt") && error.contains("UTF-8"), "{error}");
}

#[test]
fn hidden_not_divisible_by_heads() {
    let dir = tempfile::tempdir().unwrap();
    let error = rejected(dir.path(), &tiny("corpus = [\"experiments/data/*.txt\"]", "hidden = 30\nheads = 4"), &[]);
    // [model] starts on line 4; heads is on line 7.
    assert!(error.contains("bad.toml:7:") && error.contains("model.heads") && error.contains("divisible"), "{error}");
}

#[test]
fn a_swept_value_that_breaks_a_trial_names_the_sweep_axis() {
    let dir = tempfile::tempdir().unwrap();
    let text = tiny("corpus = [\"experiments/data/*.txt\"]", "heads = 4") + "\n[sweep.grid]\n\"model.hidden\" = [32, 30]\n";
    let error = rejected(dir.path(), &text, &[]);
    assert!(error.contains("bad.toml:6:") && error.contains("model.heads") && error.contains("model.hidden=30"), "{error}");

    let text = tiny("corpus = [\"experiments/data/*.txt\"]", "hidden = 32\nheads = 2") + "\n[sweep.grid]\n\"train.steps\" = [1, 0]\n";
    let error = rejected(dir.path(), &text, &[]);
    assert!(error.contains("bad.toml:18:") && error.contains("sweep.grid.\"train.steps\"") && error.contains("value 0"), "{error}");
}

#[test]
fn malformed_toml_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let error = rejected(dir.path(), "[experiment]\nname = \"bad\n", &[]);
    assert!(error.contains("bad.toml:2: TOML syntax"), "{error}");
}

#[test]
fn unknown_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = tiny("corpus = [\"experiments/data/*.txt\"]", "hidden = 32\nheads = 2").replace("steps = 2", "stepz = 2");
    let error = rejected(dir.path(), &text, &[]);
    assert!(error.contains("bad.toml") && error.contains("train") && error.contains("stepz"), "{error}");

    let text = tiny("corpus = [\"experiments/data/*.txt\"]", "hiden = 32\nheads = 2");
    let error = rejected(dir.path(), &text, &[]);
    assert!(error.contains("model.hiden") && error.contains("did you mean `hidden`"), "{error}");
}

#[test]
fn out_of_range_values_from_flags_and_environment_name_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let text = tiny("corpus = [\"experiments/data/*.txt\"]", "hidden = 32\nheads = 2");
    let error = rejected(dir.path(), &text, &["--set", "train.steps=0"]);
    assert!(error.contains("--set train.steps") && error.contains("> 0"), "{error}");

    let error = rejected(dir.path(), &text, &["--set", "model.layers=[2,4]"]);
    assert!(error.contains("sweep"), "{error}");

    let file = write(dir.path(), "env.toml", &text);
    let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(dir.path().join("env-out")).env("BERTLAB_TRAIN__LR", "-1"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("BERTLAB_TRAIN__LR") && r.stderr.contains("train.lr"), "{}", r.stderr);
}

#[test]
fn a_corpus_with_no_sentence_pairs_for_next_sentence_prediction() {
    let dir = tempfile::tempdir().unwrap();
    // One document of one sentence: no pair can be made from it.
    let corpus = write(dir.path(), "one.txt", "A single sentence without any continuation at all.\n");
    let data = format!("corpus = [{:?}]\nvocab_size = 100\nnsp = true", corpus.display().to_string());
    let error = rejected(dir.path(), &tiny(&data, "hidden = 32\nheads = 2"), &[]);
    assert!(error.contains("data.corpus") && error.contains("data.nsp") && error.contains("two or more sentences"), "{error}");
}

#[test]
fn slurm_keys_are_checked_up_front_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny("corpus = [\"experiments/data/*.txt\"]", "hidden = 32\nheads = 2");
    let error = rejected(dir.path(), &format!("{base}\n[launch.slurm]\ntime = \"1h\"\n"), &["--launcher", "slurm"]);
    assert!(error.contains("bad.toml:18") && error.contains("launch.slurm.time") && error.contains("not a Slurm time"), "{error}");
    let error = rejected(dir.path(), &format!("{base}\n[launch.slurm]\ntime = \"2\"\nsignal_lead = 300\n"), &[]);
    assert!(error.contains("bad.toml:19") && error.contains("launch.slurm.signal_lead") && error.contains("not shorter"), "{error}");
    let error = rejected(dir.path(), &format!("{base}\n[launch.slurm]\npartion = \"gpu\"\n"), &[]);
    assert!(error.contains("unknown field `partion`") && error.contains("did you mean `partition`"), "{error}");
    let error = rejected(dir.path(), &base, &["--set", "launch.launcher=cluster"]);
    assert!(error.contains("--set launch.launcher") && error.contains("cluster"), "{error}");
    // Flags that only the other launcher takes.
    let error = rejected(dir.path(), &base, &["--launcher", "slurm", "--jobs", "2"]);
    assert!(error.contains("--jobs") && error.contains("max_parallel"), "{error}");
    let error = rejected(dir.path(), &base, &["--wait"]);
    assert!(error.contains("--wait") && error.contains("--launcher slurm"), "{error}");
    let error = rejected(dir.path(), &base, &["--trial", "0123456789ab"]);
    assert!(error.contains("bad.toml") && error.contains("no trial 0123456789ab"), "{error}");
}

#[test]
fn early_stopping_keys_are_checked_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny("corpus = [\"experiments/data/*.txt\"]", "hidden = 32\nheads = 2").replace("steps = 2\n", "steps = 100\neval_every = 10\n");
    let error = rejected(dir.path(), &format!("{base}\n[sweep.early_stop]\nmethod = \"asha\"\nmin_steps = 15\n"), &[]);
    assert!(error.contains("bad.toml:20") && error.contains("sweep.early_stop.min_steps") && error.contains("multiple of train.eval_every"), "{error}");
    let error = rejected(dir.path(), &format!("{base}\n[sweep.early_stop]\nmethod = \"hyperband\"\nmin_steps = 10\n"), &[]);
    assert!(error.contains("sweep.early_stop.method") && error.contains("hyperband"), "{error}");
    let error = rejected(dir.path(), &format!("[experiment]\nmetric = \"train/loss\"\n{}\n[sweep.early_stop]\nmethod = \"median\"\nmin_steps = 10\n", base.replace("[experiment]\n", "")), &[]);
    assert!(error.contains("bad.toml:2") && error.contains("experiment.metric") && error.contains("evaluated"), "{error}");
}

#[test]
fn search_keys_are_checked_up_front_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny("corpus = [\"experiments/data/*.txt\"]", "hidden = 32\nheads = 2");
    let search = |body: &str| format!("{base}\n[sweep.search]\nmethod = \"tpe\"\n{body}\n");
    let lr = "\"train.lr\" = { log_uniform = [1e-5, 1e-2] }";
    let cases = [
        (search("trials = 2\n\"model.heads\" = { choice = [2, 3] }"), vec!["bad.toml:20", "sweep.search.\"model.heads\"", "value 3", "divisible"]),
        (search(&format!("trials = 4\n{lr}\n\n[sweep.grid]\n\"model.layers\" = [1, 2]")), vec!["sweep.search", "`model.layers` cannot be on another axis"]),
        (search("trials = 2\n\"data.seq_len\" = { choice = [16, 32] }"), vec!["sweep.search", "[data] key"]),
        (search(&format!("trials = 0\n{lr}")), vec!["bad.toml:19", "sweep.search.trials", ">= 1"]),
        (search(lr).replace("method = \"tpe\"", "method = \"bayes\"\ntrials = 4"), vec!["sweep.search.method", "bayes", "\"tpe\""]),
        (search("trials = 7\n\"model.layers\" = { int_uniform = [1, 3] }\n\"train.batch_size\" = { choice = [8, 16] }"), vec!["sweep.search.trials", "space of 6 configurations"]),
    ];
    for (text, says) in cases {
        let error = rejected(dir.path(), &text, &[]);
        assert!(says.iter().all(|s| error.contains(s)), "{says:?}: {error}");
    }
    let error = rejected(dir.path(), &search(&format!("trials = 4\n{lr}")), &["--trial", "abc"]);
    assert!(error.contains("--trial") && error.contains("suggestions"), "{error}");
}
