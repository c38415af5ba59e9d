//! Hugging Face interop of the `bert` plugin against the real `transformers`
//! in the project's virtual environment: the same outputs from a folder
//! `transformers` saved, a trial that `transformers` loads after export with
//! the same outputs, and parameter counts equal to `num_parameters()`.
mod common;
use common::*;
use models::zoo::bert::{bert_model_param_count, Bert};
use models::Plugin;
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Kind, Tensor};

/// The reference script under the virtual environment's Python.
fn python() -> Command {
    let mut cmd = Command::new(venv_python());
    cmd.arg(workspace_root().join("python/tests/hf_reference.py")).env("TRANSFORMERS_OFFLINE", "1").env("HF_HUB_OFFLINE", "1");
    cmd
}

fn ok(r: Run, what: &str) -> Run {
    assert_eq!(r.code, 0, "{what} failed:\n{}\n{}", r.stdout, r.stderr);
    r
}

/// Max |a - b| of each output over the positions the attention mask keeps.
fn differences(ours: &Path, theirs: &Path, input: &Path) -> Vec<(String, f64)> {
    let batch: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(input).unwrap()).unwrap();
    let mask: Vec<i64> = batch["attention_mask"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_i64().unwrap())).collect();
    let rows = batch["attention_mask"].as_array().unwrap().len() as i64;
    let keep = Tensor::from_slice(&mask).view([rows, -1]).to_kind(Kind::Bool);
    let read = |p: &Path| Tensor::read_safetensors(p).unwrap().into_iter().collect::<std::collections::HashMap<_, _>>();
    let (ours, theirs) = (read(ours), read(theirs));
    ["last_hidden_state", "logits"]
        .iter()
        .map(|key| {
            let (a, b) = (&ours[*key], &theirs[*key]);
            assert_eq!(a.size(), b.size(), "{key}");
            let diff = (a - b).abs().index(&[Some(keep.shallow_clone())]).max().double_value(&[]);
            (key.to_string(), diff)
        })
        .collect()
}

#[test]
fn forward_matches_transformers_on_every_layout_it_saves() {
    // (layout, whether it has the MLM head whose logits can be compared)
    for (layout, has_mlm_head) in
        [("masked-lm", true), ("untied", true), ("pretraining", true), ("bert-model", false), ("sequence-classification", false)]
    {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("hf");
        std::fs::create_dir(&folder).unwrap();
        ok(run(python().arg("make-model").arg(&folder).arg(layout)), "making the reference model");
        let ours = dir.path().join("ours.safetensors");
        let input = folder.join("input.json");
        let r = ok(run(bertlab().arg("forward").arg("--model").arg(&folder).arg("--input").arg(&input).arg("--out").arg(&ours)), "bertlab forward");
        assert!(r.stdout.contains("logits [2, 8, 97]"), "{layout}: {}", r.stdout);
        assert_eq!(r.stderr.contains("has no cls.predictions"), !has_mlm_head, "{layout}: {}", r.stderr);
        for (key, diff) in differences(&ours, &folder.join("expected.safetensors"), &input) {
            if key == "last_hidden_state" || has_mlm_head {
                assert!(diff < 1e-4, "{layout}: {key}: max abs difference {diff}");
            }
        }
    }
}

#[test]
fn an_exported_trial_loads_in_transformers_with_the_same_outputs() {
    for tie in [1, 0] {
        exported_trial_round_trip(tie);
    }
}

fn exported_trial_round_trip(tie: i64) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let text = experiment("rt", "steps = 5\neval_every = 0", "").replace("heads = 2\n", &format!("heads = 2\ntie_embeddings = {tie}\n"));
    let file = write(dir.path(), "rt.toml", &text);
    ok(run(bertlab().arg("run").arg(&file).arg("--out").arg(&out)), "training");
    let trial: PathBuf = std::fs::read_dir(out.join("trials")).unwrap().next().unwrap().unwrap().path();

    let exported = dir.path().join("hf");
    ok(run(bertlab().arg("export").arg(&trial).arg("--out").arg(&exported)), "export");
    for file in ["config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "tokenizer_config.json"] {
        assert!(exported.join(file).is_file(), "export lacks {file}");
    }
    let input = write(
        dir.path(),
        "input.json",
        r#"{"input_ids": [[2, 100, 200, 300, 3, 0], [2, 5, 6, 7, 8, 3]], "attention_mask": [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]], "token_type_ids": [[0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1]]}"#,
    );
    // The helper exits non-zero if from_pretrained reports any missing,
    // unexpected or mismatched weight.
    let theirs = dir.path().join("theirs.safetensors");
    ok(run(python().arg("forward").arg(&exported).arg(&input).arg(&theirs)), "transformers loading the export");
    let ours = dir.path().join("ours.safetensors");
    ok(run(bertlab().arg("forward").arg("--model").arg(&trial).arg("--input").arg(&input).arg("--out").arg(&ours)), "bertlab forward");
    for (key, diff) in differences(&ours, &theirs, &input) {
        assert!(diff < 1e-4, "tie_embeddings = {tie}: {key}: max abs difference {diff}");
    }
}

#[test]
fn forward_refuses_ids_outside_the_vocabulary_and_folders_without_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("hf");
    std::fs::create_dir(&folder).unwrap();
    ok(run(python().arg("make-model").arg(&folder)), "making the reference model");
    let input = write(dir.path(), "in.json", r#"{"input_ids": [[2, 97, 3]]}"#);
    let r = run(bertlab().arg("forward").arg("--model").arg(&folder).arg("--input").arg(&input).arg("--out").arg(dir.path().join("o.safetensors")));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("in.json: input_ids: 97 is outside [0, 97)"), "{}", r.stderr);

    let r = run(bertlab().arg("forward").arg("--model").arg(dir.path()).arg("--input").arg(&input).arg("--out").arg(dir.path().join("o.safetensors")));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("neither a trial folder"), "{}", r.stderr);

    // A config that does not fit the weights: every problem is listed.
    let config = folder.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap().replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
    std::fs::write(&config, text).unwrap();
    let input = write(dir.path(), "in.json", r#"{"input_ids": [[2, 9, 3]]}"#);
    let r = run(bertlab().arg("forward").arg("--model").arg(&folder).arg("--input").arg(&input).arg("--out").arg(dir.path().join("o.safetensors")));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("(16 problems)") && r.stderr.contains("bert.encoder.layer.2.output.dense.weight: missing from the checkpoint"), "{}", r.stderr);
}

/// The README's table of published sizes, rendered from counts computed by
/// bertlab and checked against `transformers`.
#[test]
fn published_sizes_have_the_parameter_counts_of_transformers() {
    let r = ok(run(&mut python().arg("param-counts")), "counting with transformers");
    let sizes: Vec<serde_json::Value> = serde_json::from_str(r.stdout.trim()).unwrap();
    let mut table = vec![
        "| model | layers | hidden | heads | `BertModel` | `BertForMaskedLM` (bertlab's `params`) |".to_string(),
        "| --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    for size in &sizes {
        let given = serde_json::json!({"layers": size["layers"], "hidden": size["hidden"], "heads": size["heads"], "vocab_size": 30522});
        let knobs = Bert.resolve(given.as_object().unwrap()).unwrap();
        let (encoder, mlm) = (bert_model_param_count(&knobs).unwrap(), Bert.param_count(&knobs).unwrap());
        assert_eq!(encoder, size["bert_model"].as_i64().unwrap(), "{}: BertModel", size["name"]);
        assert_eq!(mlm, size["bert_for_masked_lm"].as_i64().unwrap(), "{}: BertForMaskedLM", size["name"]);
        let n = |v: i64| v.to_string().as_bytes().rchunks(3).rev().map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(",");
        table.push(format!("| {} | {} | {} | {} | {} | {} |", size["name"].as_str().unwrap(), size["layers"], size["hidden"], size["heads"], n(encoder), n(mlm)));
    }
    let table = table.join("\n");
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    assert!(readme.contains(&table), "README.md should hold this table (regenerated by this test):\n{table}");
}

#[test]
fn init_starts_training_from_a_folder_with_its_knobs_and_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let file = write(dir.path(), "first.toml", &experiment("first", "steps = 20\neval_every = 0", ""));
    ok(run(bertlab().arg("run").arg(&file).arg("--out").arg(&first)), "training");
    let trial: PathBuf = std::fs::read_dir(first.join("trials")).unwrap().next().unwrap().unwrap().path();
    let exported = dir.path().join("hf");
    ok(run(bertlab().arg("export").arg(&trial).arg("--out").arg(&exported)), "export");
    let trained = read_table(&first.join("metrics.parquet"));
    let final_eval = series(&trained, &strings(&read_table(&first.join("trials.parquet")), "trial_id")[0], "eval/loss").last().unwrap().1;

    // From the Hugging Face folder and from the trial folder itself: the
    // untrained step-0 evaluation is the first model's final one (same
    // weights, same tokenizer, same held-out batches).
    for (name, folder) in [("from-hf", &exported), ("from-trial", &trial)] {
        let out = dir.path().join(name);
        let text = format!(
            "[experiment]\nname = \"{name}\"\n\n[model]\ninit = {:?}\ndropout = 0.0\n\n[data]\ncorpus = [\"experiments/data/*.txt\"]\nseq_len = 32\n\n[train]\nsteps = 2\nbatch_size = 16\neval_every = 0\ndevice = \"cpu\"\n",
            folder.display().to_string()
        );
        let file = write(dir.path(), &format!("{name}.toml"), &text);
        ok(run(bertlab().arg("run").arg(&file).arg("--out").arg(&out)), name);
        let trials = read_table(&out.join("trials.parquet"));
        let id = &strings(&trials, "trial_id")[0];
        let step0 = series(&read_table(&out.join("metrics.parquet")), id, "eval/loss")[0].1;
        assert!((step0 - final_eval).abs() < 1e-4, "{name}: step-0 eval/loss {step0}, the first model ended at {final_eval}");
        let config = std::fs::read_to_string(out.join("trials").join(id).join("config.toml")).unwrap();
        assert!(config.contains("init = ") && config.contains("hidden = 32"), "{config}");
    }

    // The weights fix the architecture: a different width is refused.
    let text = format!("[experiment]\nname = \"bad\"\n\n[model]\ninit = {:?}\nhidden = 64\n\n[data]\ncorpus = [\"experiments/data/*.txt\"]\n", exported.display().to_string());
    let file = write(dir.path(), "bad.toml", &text);
    let r = run(bertlab().arg("plan").arg(&file));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("bad.toml:6: model.hidden: 64 differs from the init folder's 32"), "{}", r.stderr);
}

#[test]
fn forward_reads_sharded_and_pytorch_checkpoints_as_transformers_does() {
    for (weights, file) in [("sharded", "model.safetensors.index.json"), ("bin", "pytorch_model.bin"), ("bin-sharded", "pytorch_model.bin.index.json")] {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("hf");
        std::fs::create_dir(&folder).unwrap();
        ok(run(python().arg("make-model").arg(&folder).arg("masked-lm").arg(weights)), "making the reference model");
        assert!(!folder.join("model.safetensors").exists() && folder.join(file).exists(), "{weights}: only {file}");
        let (ours, input) = (dir.path().join("ours.safetensors"), folder.join("input.json"));
        ok(run(bertlab().arg("forward").arg("--model").arg(&folder).arg("--input").arg(&input).arg("--out").arg(&ours)), weights);
        for (key, diff) in differences(&ours, &folder.join("expected.safetensors"), &input) {
            assert!(diff < 1e-4, "{weights}: {key}: max abs difference {diff}");
        }
    }
}

/// A Hugging Face hub cache as `huggingface_hub` lays it out: three
/// snapshots of `org/tiny` (a tied model in `model.safetensors`, an untied
/// one in `pytorch_model.bin`, a tied one in safetensors shards),
/// `refs/main` naming the first, `refs/v2` the second and `refs/v3` the
/// third.
fn hub_cache(root: &Path) -> [(String, PathBuf); 3] {
    let repo = root.join("models--org--tiny");
    let snapshots = [("a".repeat(40), "masked-lm", "safetensors"), ("b".repeat(40), "untied", "bin"), ("c".repeat(40), "masked-lm", "sharded")].map(|(commit, layout, weights)| {
        let folder = repo.join("snapshots").join(&commit);
        std::fs::create_dir_all(&folder).unwrap();
        ok(run(python().arg("make-model").arg(&folder).arg(layout).arg(weights)), "making a snapshot");
        (commit, folder)
    });
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), &snapshots[0].0).unwrap();
    std::fs::write(repo.join("refs/v2"), &snapshots[1].0).unwrap();
    std::fs::write(repo.join("refs/v3"), &snapshots[2].0).unwrap();
    snapshots
}

#[test]
fn hub_ids_resolve_in_the_local_cache_as_huggingface_hub_does() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub");
    let [(_, main), (second, v2), (_, v3)] = hub_cache(&cache);
    assert!(v3.join("model.safetensors.index.json").exists() && v2.join("pytorch_model.bin").exists());
    for (spec, revision, snapshot) in [("hf:org/tiny", "main", &main), ("hf:org/tiny@v2", "v2", &v2), (&*format!("hf:org/tiny@{second}"), &*second, &v2), ("hf:org/tiny@v3", "v3", &v3)] {
        let ours = dir.path().join("ours.safetensors");
        let input = main.join("input.json");
        let r = ok(run(bertlab().env("HF_HUB_CACHE", &cache).args(["forward", "--model", spec, "--input"]).arg(&input).arg("--out").arg(&ours)), spec);
        // The snapshot huggingface_hub itself would use, offline.
        let theirs = Command::new(venv_python())
            .args(["-c", "import sys; from huggingface_hub import snapshot_download; print(snapshot_download('org/tiny', revision=sys.argv[1], local_files_only=True))", revision])
            .env("HF_HUB_CACHE", &cache)
            .output()
            .unwrap();
        assert!(theirs.status.success(), "{}", String::from_utf8_lossy(&theirs.stderr));
        let theirs = String::from_utf8_lossy(&theirs.stdout).trim().to_string();
        assert_eq!(Path::new(&theirs), snapshot.as_path(), "{spec}: huggingface_hub's snapshot");
        assert!(r.stderr.contains(&format!("model {spec}: {theirs}")), "{spec}: {}", r.stderr);
        for (key, diff) in differences(&ours, &snapshot.join("expected.safetensors"), &input) {
            assert!(diff < 1e-4, "{spec}: {key}: max abs difference {diff}");
        }
    }
    // Not in the cache: one line naming the id, where it looked and how to fetch it.
    let missing = run(bertlab().env("HF_HUB_CACHE", &cache).args(["forward", "--model", "hf:org/absent", "--input", "x.json", "--out", "y.safetensors"]));
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(missing.stderr.contains("hf:org/absent") && missing.stderr.contains("models--org--absent") && missing.stderr.contains("huggingface-cli download org/absent"), "{}", missing.stderr);
}
