//! Properties of sweep expansion over generated experiments: the trial
//! count, unique ids that do not depend on how the file is ordered, zipped
//! pairs kept together, random draws in bounds and reproducible, derived
//! values correct; and loading never panics, whatever the text.
use bertlab::config;
use bertlab::sweep::{Expansion, Planned};
use bertlab::trial::Trial;
use proptest::prelude::*;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

/// A generated experiment, written as TOML in either key order.
#[derive(Debug, Clone)]
struct Study {
    layers: Vec<i64>,
    hiddens: Vec<i64>,
    /// Zipped (lr, batch size) pairs; empty for no zip group.
    zip: Vec<(f64, i64)>,
    /// Random samples of dropout in [0, 0.3) and warm-up in 0..=20; 0 for none.
    samples: u64,
    random_seed: u64,
    seeds: Vec<u64>,
    /// Drop trials with more layers than this.
    max_layers: i64,
}

fn study() -> impl Strategy<Value = Study> {
    (
        proptest::sample::subsequence(vec![1i64, 2, 3, 4], 1..=4),
        proptest::sample::subsequence(vec![32i64, 64, 96], 1..=3),
        proptest::collection::vec((1e-4f64..1e-2, 1i64..64), 0..4),
        0u64..4,
        0u64..i64::MAX as u64, // TOML integers are signed
        proptest::sample::subsequence(vec![0u64, 1, 2], 1..=3),
        0i64..5,
    )
        .prop_map(|(layers, hiddens, zip, samples, random_seed, seeds, max_layers)| Study {
            layers,
            hiddens,
            zip,
            samples,
            random_seed,
            seeds,
            max_layers,
        })
}

impl Study {
    /// The experiment file; `reversed` writes every table and key in the
    /// opposite order, which must not change anything.
    fn toml(&self, reversed: bool) -> String {
        let list = |v: &[String]| format!("[{}]", v.join(", "));
        let ints = |v: &[i64]| list(&v.iter().map(i64::to_string).collect::<Vec<_>>());
        let mut sections: Vec<Vec<String>> = vec![
            vec![
                "[experiment]".into(),
                "name = \"prop\"".into(),
                format!("seeds = {}", list(&self.seeds.iter().map(u64::to_string).collect::<Vec<_>>())),
            ],
            vec!["[data]".into(), "corpus = [\"corpus/*.txt\"]".into(), "seq_len = 32".into()],
            vec!["[model]".into(), "heads = 1".into(), "dropout = 0.1".into()],
            vec![
                "[sweep.grid]".into(),
                format!("\"model.layers\" = {}", ints(&self.layers)),
                format!("\"model.hidden\" = {}", ints(&self.hiddens)),
            ],
            vec![
                "[derive]".into(),
                "\"model.intermediate\" = \"3 * model.hidden + model.layers\"".into(),
                "\"train.eval_every\" = \"model.intermediate % 7\"".into(),
            ],
            vec!["[constraints]".into(), format!("require = [\"model.layers <= {}\"]", self.max_layers)],
        ];
        if !self.zip.is_empty() {
            let lrs: Vec<String> = self.zip.iter().map(|(lr, _)| format!("{lr:e}")).collect();
            let batches: Vec<String> = self.zip.iter().map(|(_, b)| b.to_string()).collect();
            sections.push(vec![
                "[[sweep.zip]]".into(),
                format!("\"train.lr\" = {}", list(&lrs)),
                format!("\"train.batch_size\" = {}", list(&batches)),
            ]);
        }
        if self.samples > 0 {
            sections.push(vec![
                "[sweep.random]".into(),
                format!("samples = {}", self.samples),
                format!("seed = {}", self.random_seed),
                "\"model.dropout\" = { uniform = [0.0, 0.3] }".into(),
                "\"train.warmup_steps\" = { int_uniform = [0, 20] }".into(),
            ]);
        }
        if reversed {
            sections.reverse();
            for section in &mut sections {
                section[1..].reverse();
            }
        }
        sections.iter().map(|s| s.join("\n")).collect::<Vec<_>>().join("\n\n") + "\n"
    }

    fn points(&self) -> usize {
        self.layers.len() * self.hiddens.len() * self.zip.len().max(1) * (self.samples as usize).max(1)
    }

    fn dropped(&self) -> usize {
        let over = self.layers.iter().filter(|&&l| l > self.max_layers).count();
        over * self.hiddens.len() * self.zip.len().max(1) * (self.samples as usize).max(1) * self.seeds.len()
    }
}

/// Expands `text`, returning the trials run and how many were dropped.
fn expand(dir: &Path, text: &str) -> (Vec<Trial>, usize) {
    let file = dir.join("prop.toml");
    std::fs::write(&file, text).unwrap();
    let loaded = config::load(&file, &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let expansion = Expansion::new(&loaded).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut trials = Vec::new();
    let mut dropped = 0;
    for planned in expansion.iter() {
        match planned.unwrap_or_else(|e| panic!("{e}\n{text}")) {
            Planned::Run(trial) => trials.push(trial),
            Planned::Dropped { .. } => dropped += 1,
        }
    }
    (trials, dropped)
}

fn model_int(trial: &Trial, knob: &str) -> i64 {
    trial.config.model[knob].as_i64().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn expansion_properties(study in study()) {
        let dir = tempfile::tempdir().unwrap();
        let (trials, dropped) = expand(dir.path(), &study.toml(false));

        // Count: product of axis lengths x samples x seeds, minus the dropped.
        prop_assert_eq!(dropped, study.dropped());
        prop_assert_eq!(trials.len() + dropped, study.points() * study.seeds.len());
        prop_assert!(trials.iter().all(|t| model_int(t, "layers") <= study.max_layers));

        // Ids: unique, and the same whatever order the file is written in.
        let ids: Vec<&str> = trials.iter().map(|t| t.id.as_str()).collect();
        prop_assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        let (reordered, _) = expand(dir.path(), &study.toml(true));
        prop_assert_eq!(ids, reordered.iter().map(|t| t.id.as_str()).collect::<Vec<_>>());

        for trial in &trials {
            // Zipped pairs stay pairs.
            if !study.zip.is_empty() {
                let pair = (trial.config.train.lr, trial.config.train.batch_size);
                prop_assert!(study.zip.iter().any(|(lr, b)| (lr - pair.0).abs() <= 1e-12 * lr && *b == pair.1), "{:?}", pair);
            }
            // Random draws in bounds.
            if study.samples > 0 {
                let dropout = trial.config.model["dropout"].as_f64().unwrap();
                prop_assert!((0.0..0.3).contains(&dropout));
                prop_assert!((0..=20).contains(&trial.config.train.warmup_steps));
            }
            // Derived values, the second reading the first.
            let intermediate = 3 * model_int(trial, "hidden") + model_int(trial, "layers");
            prop_assert_eq!(model_int(trial, "intermediate"), intermediate);
            prop_assert_eq!(trial.config.train.eval_every, intermediate % 7);
        }
    }

    #[test]
    fn random_draws_are_reproducible_and_ignore_unrelated_axes(study in study()) {
        prop_assume!(study.samples > 0);
        let dir = tempfile::tempdir().unwrap();
        let draws = |trials: &[Trial]| -> Vec<(String, i64)> {
            let mut seen: Vec<(String, i64)> = trials
                .iter()
                .map(|t| (t.config.model["dropout"].to_string(), t.config.train.warmup_steps))
                .collect();
            seen.sort();
            seen.dedup();
            seen
        };
        let (first, _) = expand(dir.path(), &study.toml(false));
        let (again, _) = expand(dir.path(), &study.toml(false));
        prop_assert_eq!(draws(&first), draws(&again));
        // An extra grid axis multiplies the trials but draws the same values.
        let wider = study.toml(false).replace("[sweep.grid]\n", "[sweep.grid]\n\"train.weight_decay\" = [0.0, 0.01]\n");
        let (widened, _) = expand(dir.path(), &wider);
        prop_assert_eq!(widened.len(), 2 * first.len());
        prop_assert_eq!(draws(&first), draws(&widened));
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn loading_and_expanding_never_panics_on_toml_ish_text(text in toml_ish()) {
        prop_assert!(survives(&text), "panicked on:\n{}", text);
    }

    #[test]
    fn loading_and_expanding_never_panics_on_damaged_studies(text in damaged_study()) {
        prop_assert!(survives(&text), "panicked on:\n{}", text);
    }
}

/// Loads and expands `text` (a few points of it): errors are fine, a panic
/// is not.
fn survives(text: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fuzz.toml");
    std::fs::write(&file, text).unwrap();
    std::panic::catch_unwind(|| {
        if let Ok(loaded) = config::load(&file, &[]) {
            if let Ok(expansion) = Expansion::new(&loaded) {
                for planned in expansion.iter().take(50) {
                    let _ = planned;
                }
            }
        }
    })
    .is_ok()
}

/// A valid study with some of its lines replaced by [`toml_ish`] lines, so
/// the damage reaches the sweep, derivation and constraint code too.
fn damaged_study() -> impl Strategy<Value = String> {
    (study(), prop::collection::vec((any::<prop::sample::Index>(), toml_ish_line()), 1..4)).prop_map(|(study, damage)| {
        let mut lines: Vec<String> = study.toml(false).lines().map(String::from).collect();
        for (at, line) in damage {
            let i = at.index(lines.len());
            lines[i] = line;
        }
        lines.join("\n")
    })
}

/// Text that is mostly TOML and mostly about experiments: section headers,
/// known and unknown keys, values of every type (and some that are not
/// TOML), expressions and distributions, some of them nonsense.
fn toml_ish() -> impl Strategy<Value = String> {
    prop::collection::vec(toml_ish_line(), 0..25).prop_map(|lines| lines.join("\n"))
}

fn toml_ish_line() -> impl Strategy<Value = String> {
    let header = prop::sample::select(vec![
        "[experiment]", "[model]", "[data]", "[train]", "[sweep.grid]", "[[sweep.zip]]", "[sweep.random]",
        "[derive]", "[constraints]", "[sweep]", "[[baseline]]", "[model.extra]", "[", "[[derive]]",
    ])
    .prop_map(String::from);
    let key = prop::sample::select(vec![
        "name", "model", "seeds", "layers", "hidden", "heads", "dropout", "corpus", "steps", "lr", "samples", "seed",
        "require", "extends", "\"model.layers\"", "\"model.hidden\"", "\"train.lr\"", "\"model.heads\"", "\"data.seq_len\"",
        "\"bogus.key\"", "\"model.\"", "\"\"", "vocab_size", "seq_len", "tokenizer", "grid", "zip", "random",
    ])
    .prop_map(String::from);
    let value = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}").replace("NaN", "nan")),
        "[a-z0-9 ._/*+%()<>=!-]{0,20}".prop_map(|s| format!("{s:?}")),
        prop::collection::vec(-3i64..1000, 0..4).prop_map(|v| format!("{v:?}")),
        prop::sample::select(vec![
            "{ uniform = [0.0, 1.0] }", "{ log_uniform = [0, 1] }", "{ int_uniform = [5, 1] }", "{ choice = [] }",
            "{ normal = [0, 1], min = 50 }", "{ normal = [0, -1] }", "{ uniform = 3 }", "\"model.hidden / 0\"",
            "\"model.hidden % model.heads == 0\"", "\"if(model.layers > 2, 64, 32)\"", "\"model.heads / 2\"",
            "[\"model.layers < 3\"]", "[\"model.hidden\"]", "true", "\"bert\"", "\"no/such/*.txt\"", "1e400", "= =",
            "\"nope.toml\"", "[[1, 2], [3]]", "18446744073709551615", "-0.0", "\"max(model.hidden, 1\"",
        ])
        .prop_map(String::from),
    ];
    let line = prop_oneof![
        1 => header,
        4 => (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => "[ -~]{0,30}",
    ];
    line
}

#[test]
fn a_generated_study_is_valid_toml() {
    // Guards the generator itself: a broken template would make the
    // properties above vacuous.
    let study = Study { layers: vec![1, 2], hiddens: vec![32], zip: vec![(1e-3, 8)], samples: 2, random_seed: 1, seeds: vec![0], max_layers: 1 };
    let dir = tempfile::tempdir().unwrap();
    let (trials, dropped) = expand(dir.path(), &study.toml(false));
    assert_eq!((trials.len(), dropped), (2, 2));
    let _: Value = serde_json::to_value(&trials[0].config).unwrap();
}
