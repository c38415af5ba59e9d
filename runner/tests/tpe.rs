//! bertlab's TPE against a peer: Optuna's `TPESampler` (from `.venv`) and
//! bertlab's search engine minimise the same deterministic functions, 20
//! seeds of 40 trials each. After 40 trials bertlab's median best is no
//! worse than Optuna's by more than 5% of the function's range, and both
//! beat random search (`[sweep.random]`'s draws) on the median.
mod common;

use bertlab::sweep::search::{Point, Search};
use bertlab::sweep::tpe::{Observed, Outcome};
use serde_json::{json, Value};

const SEEDS: u64 = 20;
const TRIALS: u64 = 40;

fn quadratic(lr: f64, layers: i64) -> f64 {
    let penalty = match layers {
        2 => 0.5,
        4 => 0.0,
        _ => 0.3,
    };
    (lr.log10() + 3.5).powi(2) + penalty
}

fn branin(x1: f64, x2: f64) -> f64 {
    use std::f64::consts::PI;
    let (b, c, t) = (5.1 / (4.0 * PI * PI), 5.0 / PI, 1.0 / (8.0 * PI));
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

fn number(point: &Point, key: &str) -> f64 {
    point.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.as_f64()).unwrap()
}

struct Function {
    name: &'static str,
    /// `[sweep.search]`'s keys for it.
    space: Value,
    value: fn(&Point) -> f64,
    /// Its value at the points the peer script checks, and its range.
    checks: Vec<f64>,
    range: f64,
}

fn functions() -> Vec<Function> {
    vec![
        Function {
            name: "quadratic",
            space: json!({"train.lr": {"log_uniform": [1e-5, 1e-1]}, "model.layers": {"choice": [2, 4, 6]}}),
            value: |p| quadratic(number(p, "train.lr"), number(p, "model.layers") as i64),
            checks: vec![quadratic(1e-3, 2), quadratic(3e-5, 6), quadratic(0.05, 4)],
            // From 0 (lr = 10^-3.5, 4 layers) to (−1 + 3.5)² + 0.5.
            range: 6.75,
        },
        Function {
            name: "branin",
            space: json!({"x1": {"uniform": [-5, 10]}, "x2": {"uniform": [0, 15]}}),
            value: |p| branin(number(p, "x1"), number(p, "x2")),
            checks: vec![branin(-5.0, 0.0), branin(std::f64::consts::PI, 2.275), branin(1.0, 7.0)],
            // Its minimum is 0.397887; its maximum on the box, at (−5, 0).
            range: branin(-5.0, 0.0) - 0.397887,
        },
    ]
}

/// The best value after `TRIALS` suggestions of bertlab's search, one per
/// seed; `startup = TRIALS` makes it random search.
fn bertlab_best(function: &Function, startup: u64) -> Vec<f64> {
    (0..SEEDS)
        .map(|seed| {
            let mut table = function.space.as_object().unwrap().clone();
            table.extend([("method".into(), json!("tpe")), ("trials".into(), json!(TRIALS)), ("startup".into(), json!(startup)), ("seed".into(), json!(seed))]);
            let search = Search::parse(&table, |_| Ok(())).unwrap().unwrap();
            let mut observed = Vec::new();
            for draw in 0..TRIALS {
                let point = search.suggest(draw, &observed).unwrap();
                let value = (function.value)(&point);
                observed.push(Observed { values: search.values(&point), outcome: Outcome::Complete(value) });
            }
            observed.iter().map(|o| match o.outcome {
                Outcome::Complete(v) => v,
                _ => unreachable!(),
            }).fold(f64::INFINITY, f64::min)
        })
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (values[(n - 1) / 2] + values[n / 2]) / 2.0
}

#[test]
fn bertlab_tpe_is_as_good_as_optunas_and_both_beat_random_search() {
    let out = std::process::Command::new(common::venv_python())
        .arg(common::workspace_root().join("python/tests/tpe_peer.py"))
        .args([SEEDS.to_string(), TRIALS.to_string()])
        .output()
        .expect("running the Optuna script");
    assert!(out.status.success(), "tpe_peer.py failed (is optuna in .venv? `make setup`): {}", String::from_utf8_lossy(&out.stderr));
    let peer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut lines = Vec::new();
    for function in functions() {
        let theirs = &peer[function.name];
        let checks: Vec<f64> = theirs["checks"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        for (a, b) in checks.iter().zip(&function.checks) {
            assert!((a - b).abs() < 1e-9, "{}: the two sides' functions differ ({a} against {b})", function.name);
        }
        let optuna = median(theirs["curves"].as_array().unwrap().iter().map(|c| c[TRIALS as usize - 1].as_f64().unwrap()).collect());
        let tpe = median(bertlab_best(&function, 10));
        let random = median(bertlab_best(&function, TRIALS));
        lines.push(format!("{}: median best after {TRIALS} trials over {SEEDS} seeds: bertlab TPE {tpe:.4}, Optuna TPE {optuna:.4}, random {random:.4} (range {:.2})", function.name, function.range));
        assert!(tpe - optuna <= 0.05 * function.range, "{}", lines.join("\n"));
        assert!(tpe < random && optuna < random, "{}", lines.join("\n"));
    }
    eprintln!("{}", lines.join("\n"));
}
