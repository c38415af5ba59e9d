//! The GLUE metrics of `bertlab::train::metrics` agree with scikit-learn
//! (accuracy, F1, Matthews) and scipy (Pearson, Spearman) from the project's
//! virtual environment on fixed pseudo-random predictions.
mod common;
use bertlab::scoring::metrics::{accuracy, f1, matthews, pearson, spearman};
use common::venv_python;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

const TOLERANCE: f64 = 1e-6;

/// Reads `{"labels": [[pred, truth], ...], "scores": [[pred, truth], ...]}`
/// and writes the reference metrics of each pair in the same order.
const REFERENCE: &str = r#"
import json, sys
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from scipy.stats import pearsonr, spearmanr
cases = json.load(sys.stdin)
json.dump({
    "labels": [{"accuracy": float(accuracy_score(t, p)), "f1": float(f1_score(t, p, zero_division=0)),
                "matthews": float(matthews_corrcoef(t, p))} for p, t in cases["labels"]],
    "scores": [{"pearson": float(pearsonr(p, t).statistic), "spearman": float(spearmanr(p, t).statistic)}
               for p, t in cases["scores"]],
}, sys.stdout)
"#;

/// Runs the reference on `cases`; panics (never skips) when Python or its packages are missing.
fn reference(cases: &Value) -> Value {
    let python = venv_python();
    let mut child = Command::new(&python)
        .args(["-c", REFERENCE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {python} (run `make setup`): {e}"));
    child.stdin.take().unwrap().write_all(cases.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the sklearn/scipy reference failed (is scikit-learn installed? `make setup`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the reference writes JSON")
}

/// A 64-bit LCG (Knuth's MMIX constants): the same values on every machine.
struct Lcg(u64);

impl Lcg {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn bit(&mut self, p: f64) -> i64 {
        (self.uniform() < p) as i64
    }
}

/// `n` labels, positive with probability `positive`, and predictions that
/// flip each with probability `flip`.
fn labels(rng: &mut Lcg, n: usize, positive: f64, flip: f64) -> (Vec<i64>, Vec<i64>) {
    let truth: Vec<i64> = (0..n).map(|_| rng.bit(positive)).collect();
    let predicted = truth.iter().map(|&t| t ^ rng.bit(flip)).collect();
    (predicted, truth)
}

fn label_cases() -> Vec<(&'static str, Vec<i64>, Vec<i64>)> {
    let mut rng = Lcg(42);
    let (balanced_p, balanced_t) = labels(&mut rng, 300, 0.5, 0.25);
    // Imbalanced, as CoLA and QQP are: accuracy flatters, F1 and Matthews don't.
    let (imbalanced_p, imbalanced_t) = labels(&mut rng, 400, 0.08, 0.1);
    // A model that always says 0: F1 and Matthews hit their zero-division cases.
    let (_, never_t) = labels(&mut rng, 200, 0.1, 0.0);
    vec![
        ("balanced", balanced_p, balanced_t),
        ("imbalanced", imbalanced_p, imbalanced_t),
        ("never positive", vec![0; never_t.len()], never_t),
    ]
}

fn score_cases() -> Vec<(&'static str, Vec<f64>, Vec<f64>)> {
    let mut rng = Lcg(7);
    // STS-B-like: similarity 0..5 in steps of 0.2, predictions rounded to 0.5,
    // so both sides are full of ties.
    let truth: Vec<f64> = (0..300).map(|_| (rng.uniform() * 25.0).round() / 5.0).collect();
    let predicted = truth.iter().map(|t| ((t + 2.0 * rng.uniform() - 1.0).clamp(0.0, 5.0) * 2.0).round() / 2.0).collect();
    // Continuous and far from zero, where a one-pass formula loses digits.
    let far_t: Vec<f64> = (0..250).map(|_| 1000.0 + rng.uniform()).collect();
    let far_p = far_t.iter().map(|t| t + 0.5 * rng.uniform()).collect();
    vec![("ties", predicted, truth), ("far from zero", far_p, far_t)]
}

fn agree(case: &str, metric: &str, ours: f64, theirs: &Value) {
    let theirs = theirs[metric].as_f64().unwrap_or_else(|| panic!("{case}: no {metric} in {theirs}"));
    assert!((ours - theirs).abs() < TOLERANCE, "{case}: {metric} is {ours}, the reference says {theirs}");
}

#[test]
fn metrics_agree_with_sklearn_and_scipy() {
    let (labels, scores) = (label_cases(), score_cases());
    let cases = json!({
        "labels": labels.iter().map(|(_, p, t)| json!([p, t])).collect::<Vec<_>>(),
        "scores": scores.iter().map(|(_, p, t)| json!([p, t])).collect::<Vec<_>>(),
    });
    let reference = reference(&cases);
    assert_eq!(reference["labels"].as_array().map(Vec::len), Some(labels.len()), "{reference}");
    assert_eq!(reference["scores"].as_array().map(Vec::len), Some(scores.len()), "{reference}");
    for ((case, p, t), theirs) in labels.iter().zip(reference["labels"].as_array().unwrap()) {
        agree(case, "accuracy", accuracy(p, t), theirs);
        agree(case, "f1", f1(p, t), theirs);
        agree(case, "matthews", matthews(p, t), theirs);
    }
    for ((case, p, t), theirs) in scores.iter().zip(reference["scores"].as_array().unwrap()) {
        agree(case, "pearson", pearson(p, t), theirs);
        agree(case, "spearman", spearman(p, t), theirs);
    }
    // The cases test what they are meant to: not all agreement is trivial.
    let (_, p, t) = &labels[2];
    assert_eq!((f1(p, t), matthews(p, t)), (0.0, 0.0), "never positive");
    let (_, p, t) = &scores[0];
    assert!(spearman(p, t) < 1.0 && spearman(p, t) > 0.5, "ties: {}", spearman(p, t));
}
