//! Corpora that Hugging Face `datasets` (from `.venv`) prepared, read
//! through `data.corpus`: its cache by `hf:` name, found where `datasets`
//! itself finds it offline, a `save_to_disk` folder, and its Arrow files by
//! glob. The text is the bundled corpus split in two files; every form,
//! with one vocabulary, trains to the same losses, bit for bit, as those
//! `.txt` files.
mod common;
use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// What `datasets_reference.py make-corpus` made, once for both tests.
struct Prepared {
    work: PathBuf,
    /// The two `.txt` files it was made from.
    text: [PathBuf; 2],
    /// The files `datasets` reads offline for `tiny/paragraphs` and `org/tiny`.
    found: HashMap<String, Vec<String>>,
}

fn prepared() -> &'static Prepared {
    static PREPARED: OnceLock<Prepared> = OnceLock::new();
    PREPARED.get_or_init(|| {
        let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap().keep();
        // The bundled corpus, cut at a paragraph boundary into two files.
        let corpus = std::fs::read_to_string(workspace_root().join("experiments/data/python-reference.txt")).unwrap();
        let paragraphs: Vec<&str> = corpus.split("\n\n").collect();
        let half = paragraphs.len() / 2;
        let text = [(0, &paragraphs[..half]), (1, &paragraphs[half..])].map(|(i, part)| {
            let file = work.join(format!("part{i}.txt"));
            std::fs::write(&file, part.join("\n\n")).unwrap();
            file
        });
        let made = Command::new(venv_python())
            .arg(workspace_root().join("python/tests/datasets_reference.py"))
            .arg("make-corpus")
            .arg(work.join("made"))
            .args(&text)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&made.stdout);
        assert!(made.status.success(), "datasets could not prepare the corpus:\n{stdout}\n{}", String::from_utf8_lossy(&made.stderr));
        let found = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        Prepared { work: work.join("made"), text, found }
    })
}

/// `bertlab run` of a six-step pretraining on `corpus`, with the cache of
/// `prepared`; the run folder and what it printed.
fn train(name: &str, corpus: &[String], extra_data: &str) -> (PathBuf, Run) {
    let prepared = prepared();
    let out = prepared.work.parent().unwrap().join("runs").join(name);
    let corpus = format!("corpus = {corpus:?}\n{extra_data}\n");
    let text = experiment(name, "steps = 6\neval_every = 3", "").replace("corpus = [\"experiments/data/*.txt\"]\n", &corpus);
    let file = write(prepared.work.parent().unwrap(), &format!("{name}.toml"), &text);
    let r = run(bertlab().arg("run").arg(&file).arg("--out").arg(&out).env("HF_DATASETS_CACHE", prepared.work.join("cache")));
    (out, r)
}

/// Every `train/loss` and `eval/loss` point of the run's one trial.
fn losses(out: &Path) -> Vec<(i64, f64)> {
    let id = &strings(&read_table(&out.join("trials.parquet")), "trial_id")[0];
    let metrics = read_table(&out.join("metrics.parquet"));
    [series(&metrics, id, "train/loss"), series(&metrics, id, "eval/loss")].concat()
}

#[test]
fn every_form_of_a_datasets_corpus_trains_as_its_text_does() {
    let prepared = prepared();
    let path = |p: &Path| p.display().to_string();
    let text: Vec<String> = prepared.text.iter().map(|p| path(p)).collect();
    // One vocabulary for all: WordPiece training is not reproducible from
    // one process to the next (the `tokenizers` trainer breaks ties in
    // hash order), and the cache keys on the files, which differ by form.
    let (first, r) = train("vocabulary", &text, "");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let trial = std::fs::read_dir(first.join("trials")).unwrap().next().unwrap().unwrap().path();
    let vocabulary = format!("tokenizer = {:?}", path(&trial.join("tokenizer.json")));
    let (out, r) = train("text", &text, &vocabulary);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let expected = losses(&out);
    assert!(expected.len() >= 2, "{expected:?}");
    let cache = prepared.work.join("cache");
    let forms = [
        ("hf-name-config", "hf:tiny/paragraphs", "tiny/paragraphs"),
        ("hf-org-name", "hf:org/tiny", "org/tiny"),
        ("hf-org-name-config-split", "hf:org/tiny/paragraphs:train", "org/tiny"),
    ];
    for (name, spec, theirs) in forms {
        let (out, r) = train(name, &[spec.to_string()], &vocabulary);
        assert_eq!(r.code, 0, "{spec}: {}", r.stderr);
        // The files datasets itself reads for the name, two shards in order.
        let files = &prepared.found[theirs];
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(r.stderr.contains(&format!("corpus {spec}: {}", files.join(", "))), "{spec}: {}", r.stderr);
        assert_eq!(losses(&out), expected, "{spec}");
    }
    let saved = path(&prepared.work.join("saved"));
    let shards = format!("{}/tiny/paragraphs/*/*/tiny-train-*.arrow", path(&cache));
    for (name, corpus) in [("saved-folder", saved), ("arrow-glob", shards)] {
        let (out, r) = train(name, &[corpus.clone()], &vocabulary);
        assert_eq!(r.code, 0, "{corpus}: {}", r.stderr);
        assert_eq!(losses(&out), expected, "{corpus}");
    }
}

#[test]
fn a_corpus_not_on_disk_as_named_is_one_line_saying_what_there_is() {
    let prepared = prepared();
    let cache = prepared.work.join("cache");
    let dict = prepared.work.join("saved-dict").display().to_string();
    let cases: [(&str, &[String], &str, Vec<String>); 5] = [
        ("absent", &["hf:absent".into()], "", vec![cache.join("absent").display().to_string(), "datasets.load_dataset('absent')".into()]),
        ("no-config", &["hf:tiny/nope".into()], "", vec!["no configuration `nope`".into(), "(it has: paragraphs)".into()]),
        ("no-split", &["hf:tiny/paragraphs:validation".into()], "", vec!["no split `validation` (it has: ".into(), "test".into()]),
        ("dict", &[dict.clone()], "", vec![format!("{dict}: data.corpus: holds the splits train, test: name one's folder, e.g. {dict}/train")]),
        ("column", &["hf:tiny/paragraphs".into()], "text_column = \"body\"", vec!["has no column `body` (it has: text); data.text_column".into()]),
    ];
    for (name, corpus, extra, wanted) in cases {
        let (_, r) = train(&format!("bad-{name}"), corpus, extra);
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        for want in &wanted {
            assert!(r.stderr.contains(want.as_str()), "{name}: wanted {want:?} in:\n{}", r.stderr);
        }
    }
}
