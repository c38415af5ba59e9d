//! The experiment language through `bertlab plan`: malformed files are
//! refused with file, key and line (exit 2); layers of configuration win in
//! order; `extends` composes files; plan lists dropped trials and why.
mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

const BASE: &str = "[experiment]\nname = \"m\"\n\n[data]\ncorpus = [\"experiments/data/*.txt\"]\n";

/// Plans `file` and returns the JSON plan, asserting success.
fn plan_json(file: &Path, extra: &[&str], env: &[(&str, &str)]) -> Value {
    let r = run(bertlab().arg("plan").arg(file).args(["--format", "json"]).args(extra).envs(env.iter().copied()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

#[test]
fn malformed_files_are_refused_with_file_key_and_line() {
    // (what is wrong, the file's text after BASE, key in the message, line, words in the message)
    let cases: &[(&str, &str, &str, usize, &str)] = &[
        ("syntax error", "[train]\nsteps = = 3\n", "", 8, "TOML syntax"),
        ("unknown key", "[train]\nstpes = 3\n", "train.stpes", 8, "did you mean `steps`"),
        ("wrong type", "[train]\nsteps = \"many\"\n", "train.steps", 8, "expected i64"),
        ("micro-batch not dividing the batch", "[train]\nbatch_size = 16\nmicro_batch_size = 6\n", "train.micro_batch_size", 9, "6 does not divide train.batch_size = 16"),
        ("no devices", "[train]\ndevices = 0\n", "train.devices", 8, "must be at least 1"),
        ("devices not splitting the batch", "[train]\nbatch_size = 16\ndevices = 3\n", "train.devices", 9, "3 devices do not split train.batch_size = 16"),
        (
            "micro-batch not dividing a device's share",
            "[train]\nbatch_size = 16\ndevices = 2\nmicro_batch_size = 3\n",
            "train.micro_batch_size",
            10,
            "3 does not divide the 8 examples each of train.devices = 2 takes",
        ),
        ("devices on a sweep axis", "[sweep.grid]\n\"train.devices\" = [1, 2]\n", "sweep.grid.\"train.devices\"", 8, "where each trial trains, not what"),
        ("not a duration", "[train]\nbudget = \"a day\"\n", "train.budget", 8, "not a duration like"),
        ("unknown precision", "[train]\nprecision = \"fp8\"\n", "train.precision", 8, "not one of fp32, bf16, fp16, auto"),
        ("out-of-range value", "[model]\ndropout = 1.5\n", "model.dropout", 8, "out of range"),
        ("unknown plugin", "[train]\nsteps = 3\n", "experiment.model", 3, "did you mean `bert`"),
        ("bad expression", "[derive]\n\"model.heads\" = \"model.hidden / / 2\"\n", "derive.\"model.heads\"", 8, "operator"),
        (
            "cycle",
            "[derive]\n\"model.heads\" = \"model.intermediate / 64\"\n\"model.intermediate\" = \"model.heads * 64\"\n",
            "derive.\"model.heads\"",
            8,
            "cycle: model.heads -> model.intermediate -> model.heads",
        ),
        ("empty axis", "[sweep.grid]\n\"model.layers\" = []\n", "sweep.grid.\"model.layers\"", 8, "at least one value"),
        (
            "unequal zip lengths",
            "[[sweep.zip]]\n\"train.lr\" = [1e-3, 2e-3]\n\"train.steps\" = [1, 2, 3]\n",
            "sweep.zip.0.\"train.steps\"",
            9,
            "equal lengths",
        ),
        (
            "bad distribution bounds",
            "[sweep.random]\nsamples = 2\n\"train.lr\" = { log_uniform = [0, 1e-3] }\n",
            "sweep.random.\"train.lr\"",
            9,
            "> 0",
        ),
        ("unknown sweep key", "[sweep.grid]\n\"model.hiden\" = [64]\n", "sweep.grid.\"model.hiden\"", 8, "did you mean `model.hidden`"),
        ("unknown GLUE task", "[sweep.grid]\n\"data.format\" = [\"glue/sst3\"]\n", "sweep.grid.\"data.format\"", 8, "`sst3` is not a GLUE task"),
        ("a model.init glob that matches nothing", "[model]\ninit = \"no/such/folder-*\"\n", "model.init", 8, "matches no folder"),
        ("missing extends target", "", "extends", 1, "no-such-base.toml"),
        ("unknown key in an expression", "[derive]\n\"model.heads\" = \"model.hiden / 64\"\n", "derive.\"model.heads\"", 8, "model.hidden"),
        ("constraint that is not boolean", "[constraints]\nrequire = [\"model.hidden + 1\"]\n", "constraints.require[0]", 8, "true or false"),
        (
            "a key on two axes",
            "[sweep.grid]\n\"train.lr\" = [1e-3]\n\n[sweep.random]\nsamples = 2\n\"train.lr\" = { uniform = [1e-4, 1e-3] }\n",
            "sweep.random.\"train.lr\"",
            12,
            "swept twice",
        ),
        ("fractional derived integer", "[derive]\n\"model.heads\" = \"model.hidden / 5.0\"\n", "derive.\"model.heads\"", 8, "whole number"),
        (
            "swept value the plugin refuses",
            "[model]\nheads = 3\n\n[sweep.grid]\n\"model.hidden\" = [96, 128]\n",
            "model.heads",
            8,
            "(in the trial with model.hidden=128)",
        ),
        ("extends below a section", "[train]\nextends = \"x.toml\"\n", "train.extends", 8, "top of the file"),
        (
            "baseline matching an unknown key",
            "[[baseline]]\nname = \"B\"\nmatch = { \"model.hiden\" = 64 }\nmetrics = { \"eval/loss\" = 1.0 }\n",
            "baseline.0.match.\"model.hiden\"",
            9,
            "did you mean `model.hidden`",
        ),
        ("baseline without metrics", "[[baseline]]\nname = \"B\"\n", "baseline.0.name", 8, "has no metrics"),
        ("unknown baseline field", "[[baseline]]\nname = \"B\"\nmetric = { \"eval/loss\" = 1.0 }\n", "baseline.0.metric", 9, "did you mean `metrics`"),
        ("heatmap over a key not swept", "[report]\nheatmap = [\"model.layers\", \"model.hidden\"]\n", "report.heatmap", 8, "not swept or derived"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, text, key, line, says) in cases {
        let mut file_text = format!("{BASE}\n{text}");
        if *what == "unknown plugin" {
            file_text = file_text.replace("name = \"m\"", "name = \"m\"\nmodel = \"bret\"");
        }
        if *what == "missing extends target" {
            file_text = format!("extends = \"no-such-base.toml\"\n{file_text}");
        }
        let file = write(dir.path(), "m.toml", &file_text);
        let r = run(bertlab().arg("plan").arg(&file));
        assert_eq!(r.code, 2, "{what}: expected exit 2, got {}: {}", r.code, r.stderr);
        assert!(!r.stderr.contains("panicked"), "{what}: {}", r.stderr);
        let error = r.stderr.lines().next().unwrap_or_default();
        assert!(error.starts_with(&format!("error: {}:{line}: ", file.display())), "{what}: wrong file or line: {error}");
        assert!(error.contains(&format!("{key}: ")) || key.is_empty(), "{what}: key `{key}` missing: {error}");
        assert!(error.contains(says), "{what}: `{says}` missing: {error}");
        assert_eq!(r.stderr.lines().count(), 1, "{what}: one line expected: {}", r.stderr);
    }
}

#[test]
fn later_layers_win_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    // A derivation copies train.steps into a column plan shows.
    let file = write(dir.path(), "m.toml", &format!("{BASE}\n[train]\nsteps = 40\n\n[derive]\n\"train.warmup_steps\" = \"train.steps / 4\"\n"));
    let warmup = |plan: &Value| plan["trials"][0]["derived"]["train.warmup_steps"].as_i64().unwrap();
    assert_eq!(warmup(&plan_json(&file, &[], &[])), 10);
    assert_eq!(warmup(&plan_json(&file, &[], &[("BERTLAB_TRAIN__STEPS", "80")])), 20);
    assert_eq!(warmup(&plan_json(&file, &["--set", "train.steps=120"], &[("BERTLAB_TRAIN__STEPS", "80")])), 30);

    let r = run(bertlab().arg("plan").arg(&file).args(["--set", "model.layers=[2,4]"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--set model.layers") && r.stderr.contains("[sweep.grid]"), "{}", r.stderr);
}

#[test]
fn extends_composes_files_relative_to_each_and_errors_name_the_base() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("recipes")).unwrap();
    write(dir.path(), "recipes/base.toml", &format!("{BASE}\n[model]\nlayers = 3\nhidden = 64\nheads = 2\n\n[train]\nsteps = 50\n"));
    let file = write(dir.path(), "top.toml", "extends = \"recipes/base.toml\"\n\n[experiment]\nname = \"top\"\n\n[train]\nsteps = 60\n\n[derive]\n\"train.warmup_steps\" = \"train.steps / 10 + model.layers\"\n");
    let plan = plan_json(&file, &[], &[]);
    assert_eq!(plan["experiment"], "top");
    // steps from the top file (60), layers from the base (3).
    assert_eq!(plan["trials"][0]["derived"]["train.warmup_steps"], 9);

    // A bad value in the base is reported in the base, at its line.
    write(dir.path(), "recipes/base.toml", &format!("{BASE}\n[model]\nlayers = 3\nhidden = 64\nheads = 5\n"));
    let r = run(bertlab().arg("plan").arg(&file));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let base = dir.path().join("recipes/base.toml");
    assert!(r.stderr.contains(&format!("{}:10: model.heads", base.display())), "{}", r.stderr);
}

#[test]
fn every_section_key_can_be_swept_even_those_a_trial_config_leaves_out_when_unset() {
    // `train.tf32` and `data.nsp` are left out of a serialised config when
    // off and `train.epochs` when unset; the sweep still knows them.
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{BASE}\n[sweep.grid]\n\"train.tf32\" = [false, true]\n\"data.nsp\" = [false, true]\n\"train.epochs\" = [1]\n");
    let plan = plan_json(&write(dir.path(), "m.toml", &text), &[], &[]);
    assert_eq!(plan["summary"]["new"], 4, "{plan}");
}

#[test]
fn plan_lists_dropped_trials_with_their_constraint() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[experiment]\nname = \"m\"\nseeds = [0, 1]\n\n[data]\ncorpus = [\"experiments/data/*.txt\"]\n\n\
                [sweep.grid]\n\"model.layers\" = [1, 2, 3]\n\"model.hidden\" = [32, 64]\n\n\
                [derive]\n\"model.heads\" = \"model.hidden / 32\"\n\n\
                [constraints]\nrequire = [\"model.layers * model.hidden <= 128\"]\n";
    let file = write(dir.path(), "m.toml", &text);
    let plan = plan_json(&file, &[], &[]);
    let trials = plan["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3 * 2 * 2);
    let dropped: Vec<&Value> = trials.iter().filter(|t| t["status"] == "dropped").collect();
    // Only layers 3 x hidden 64 = 192 exceeds the budget: one point, two seeds.
    assert_eq!(dropped.len(), 2, "{dropped:?}");
    assert!(dropped.iter().all(|t| t["dropped_by"] == "model.layers * model.hidden <= 128" && t["trial_id"].is_null()));
    assert_eq!(plan["summary"]["new"], 10);
    assert_eq!(plan["summary"]["dropped"], 2);
    let kept = trials.iter().find(|t| t["status"] == "new").unwrap();
    assert!(kept["params"].as_i64().unwrap() > 0 && kept["flops_per_token"].as_i64().unwrap() > 0);

    let table = run(bertlab().arg("plan").arg(&file));
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.contains("dropped by `model.layers * model.hidden <= 128`"), "{}", table.stdout);
    assert!(table.stdout.contains("10 to run, 0 already completed"), "{}", table.stdout);
}

#[test]
fn the_example_experiments_plan_cleanly() {
    for example in ["quickstart", "depth-width", "lr-batch-zip", "random-search"] {
        let file = workspace_root().join(format!("experiments/{example}.toml"));
        let plan = plan_json(&file, &[], &[]);
        assert!(plan["summary"]["new"].as_u64().unwrap() + plan["summary"]["completed"].as_u64().unwrap() >= 4, "{example}");
    }
    // The published recipes plan without their data (a corpus and a
    // vocabulary the user brings).
    let base = plan_json(&workspace_root().join("experiments/bert-base-devlin2018.toml"), &[], &[]);
    assert_eq!(base["trials"][0]["params"], 110_106_428, "BertForPreTraining's count for BERT-Base");
}

/// A Hugging Face folder of BERT-Tiny's shape (weights are not read by `plan`).
fn tiny_checkpoint(folder: &Path) {
    std::fs::create_dir_all(folder).unwrap();
    let config = r#"{"model_type": "bert", "num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 2, "intermediate_size": 512, "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "initializer_range": 0.02, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}"#;
    std::fs::write(folder.join("config.json"), config).unwrap();
    std::fs::write(folder.join("model.safetensors"), "").unwrap();
    std::fs::write(folder.join("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n").unwrap();
}

#[test]
fn the_fine_tuning_and_cramming_recipes_plan() {
    // Turc et al.'s grid over every checkpoint the glob finds: 9 GLUE tasks
    // x 5 batch sizes x 4 learning rates each.
    let dir = tempfile::tempdir().unwrap();
    for name in ["bert_uncased_L-2_H-128_A-2", "bert_uncased_L-4_H-128_A-2"] {
        tiny_checkpoint(&dir.path().join("checkpoints").join(name));
    }
    let glob = format!("--set=model.init={}/checkpoints/bert_uncased_L-*_H-*_A-*", dir.path().display());
    let glue = plan_json(&workspace_root().join("experiments/glue-finetune-turc2019.toml"), &[&glob], &[]);
    let trials = glue["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 2 * 9 * 5 * 4);
    assert!(trials.iter().all(|t| t["status"] == "new" && t["swept"]["model.init"].as_str().is_some_and(|i| i.contains("bert_uncased_L-"))), "{:?}", trials[0]);
    // As written, the recipe sweeps the 24 published miniatures, by hub id,
    // found in the Hugging Face cache.
    let recipe: toml::Value = toml::from_str(&std::fs::read_to_string(workspace_root().join("experiments/glue-finetune-turc2019.toml")).unwrap()).unwrap();
    let ids: Vec<&str> = recipe["model"]["init"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
    assert_eq!(ids.len(), 24);
    let hub = dir.path().join("hub");
    for id in &ids {
        let repo = hub.join(format!("models--{}", id.trim_start_matches("hf:").replace('/', "--")));
        tiny_checkpoint(&repo.join("snapshots").join("c".repeat(40)));
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "c".repeat(40)).unwrap();
    }
    let by_id = plan_json(&workspace_root().join("experiments/glue-finetune-turc2019.toml"), &[], &[("HF_HUB_CACHE", &hub.display().to_string())]);
    let swept: std::collections::BTreeSet<&str> = by_id["trials"].as_array().unwrap().iter().map(|t| t["swept"]["model.init"].as_str().unwrap()).collect();
    assert_eq!(swept, ids.iter().copied().collect(), "one starting point per hub id");
    assert_eq!(by_id["trials"].as_array().unwrap().len(), 24 * 9 * 5 * 4);
    let published: Vec<f64> = recipe["baseline"].as_array().unwrap().iter().map(|b| b["metrics"]["glue/score"].as_float().unwrap()).collect();
    assert_eq!(published, [64.2, 65.8, 71.2, 73.5]);

    // The crammed BERT trains for a wall-clock budget.
    let cramming = plan_json(&workspace_root().join("experiments/cramming-geiping2022.toml"), &[], &[]);
    assert_eq!(cramming["trials"].as_array().unwrap().len(), 1);
    let recipe: toml::Value = toml::from_str(&std::fs::read_to_string(workspace_root().join("experiments/cramming-geiping2022.toml")).unwrap()).unwrap();
    assert_eq!(recipe["train"]["budget"].as_str(), Some("24h"));
    assert_eq!(recipe["experiment"]["model"].as_str(), Some("crammed-bert"));
    // Batch 4096 as the paper's code reaches it: accumulated micro-batches.
    let trial = &cramming["trials"][0];
    assert_eq!((trial["batch_size"].as_i64(), trial["micro_batch_size"].as_i64(), trial["accumulation_steps"].as_i64()), (Some(4096), Some(128), Some(32)), "{trial}");
    let table = run(bertlab().arg("plan").arg(workspace_root().join("experiments/cramming-geiping2022.toml")));
    assert!(table.stdout.contains("| 4096 = 32 × 128 |"), "{}", table.stdout);
    // On 8 devices each takes 512 of the batch, in 4 micro-batches.
    let eight = plan_json(&workspace_root().join("experiments/cramming-geiping2022.toml"), &["--set", "train.devices=8"], &[]);
    let trial = &eight["trials"][0];
    assert_eq!((trial["devices"].as_i64(), trial["micro_batch_size"].as_i64(), trial["accumulation_steps"].as_i64()), (Some(8), Some(128), Some(4)), "{trial}");
    assert_eq!(trial["trial_id"], cramming["trials"][0]["trial_id"], "devices are not part of the trial");
    let table = run(bertlab().arg("plan").arg(workspace_root().join("experiments/cramming-geiping2022.toml")).args(["--set", "train.devices=8"]));
    assert!(table.stdout.contains("| 4096 = 8 devices × 4 × 128 |"), "{}", table.stdout);

    // Fine-tuning without labelled examples is refused before anything runs.
    let file = write(dir.path(), "ft.toml", &format!("{BASE}\n[model]\ninit = \"{}/checkpoints/bert_uncased_L-2_H-128_A-2\"\n", dir.path().display()));
    let r = run(bertlab().arg("plan").arg(&file).env("BERTLAB_EXPERIMENT__TASK", "classification"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("data.train: fine-tuning needs labelled training examples"), "{}", r.stderr);
}

#[test]
fn the_miniatures_recipe_plans_24_trials_at_the_published_sizes() {
    let file = workspace_root().join("experiments/bert-miniatures-turc2019.toml");
    let plan = plan_json(&file, &[], &[]);
    let trials = plan["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 24);
    // Every published size in the file's [[baseline]] rows is what plan
    // counts for the matching configuration, to the 0.1M the paper gives.
    let recipe: toml::Value = toml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let baselines = recipe["baseline"].as_array().unwrap();
    assert_eq!(baselines.len(), 5);
    for baseline in baselines {
        let wanted = |key: &str| baseline["match"][key].as_integer().unwrap();
        let trial = trials
            .iter()
            .find(|t| t["swept"]["model.layers"] == wanted("model.layers") && t["swept"]["model.hidden"] == wanted("model.hidden"))
            .unwrap_or_else(|| panic!("no trial for {baseline}"));
        let published = baseline["metrics"]["params"].as_float().unwrap();
        let planned = trial["params"].as_i64().unwrap() as f64;
        assert_eq!((planned / 1e5).round(), (published / 1e5).round(), "{}: plan {planned}, published {published}", baseline["name"]);
    }
}
