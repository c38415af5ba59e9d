//! `[sweep.early_stop]` on a real tiny sweep: 9 learning rates from too
//! small to diverging, 180 steps, rungs at 20 and 60 (eta 3). ASHA and the
//! median rule find the full grid's best within 2% for at most 45% of its
//! steps, never train a step twice, and train what the grid trained bit
//! for bit; a run killed at random instants and resumed makes exactly the
//! decisions of an uninterrupted one; `--jobs 2` makes decisions the rung
//! rules allow.
mod common;
use common::*;
use std::collections::HashMap;
use std::path::Path;

const STEPS: i64 = 180;
const TRIALS: i64 = 9;

fn sweep(name: &str, early_stop: &str) -> String {
    experiment(name, &format!("steps = {STEPS}\neval_every = 20"), &format!("[sweep.grid]\n\"train.lr\" = [1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1.0, 1000.0]\n\n{early_stop}"))
}

const ASHA: &str = "[sweep.early_stop]\nmethod = \"asha\"\nmin_steps = 20\neta = 3";
const MEDIAN: &str = "[sweep.early_stop]\nmethod = \"median\"\nmin_steps = 20\neta = 3";

fn run_into(file: &Path, out: &Path, args: &[&str]) -> Run {
    run(bertlab().arg("run").arg(file).arg("--out").arg(out).args(args))
}

/// The best `eval/loss` of the completed trials.
fn best(out: &Path) -> f64 {
    let trials = read_table(&out.join("trials.parquet"));
    let (status, loss) = (strings(&trials, "status"), floats(&trials, "eval/loss"));
    status.iter().zip(loss).filter(|(s, l)| *s == "completed" && l.is_finite()).map(|(_, l)| l).fold(f64::INFINITY, f64::min)
}

fn log_lines(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("early-stop.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The full grid.
fn grid(dir: &Path) -> (std::path::PathBuf, f64, Series) {
    let file = write(dir, "grid.toml", &sweep("grid", ""));
    let out = dir.join("grid");
    let done = run_into(&file, &out, &[]);
    assert_eq!(done.code, 1, "the diverging trial fails: {}", done.stderr);
    (out.clone(), best(&out), series_of(&out))
}

/// Early stopping against the grid: the best within 2%, at most 45% of
/// the grid's steps, none twice, and every point the grid's too.
fn against_the_grid(dir: &Path, (grid_out, grid_best, grid_series): &(std::path::PathBuf, f64, Series), method: &str, early_stop: &str) {
    let grid_best = *grid_best;
    let grid_steps: i64 = steps_trained(grid_out).values().sum();
    let file = write(dir, &format!("{method}.toml"), &sweep(method, early_stop));
    let out = dir.join(method);
    let done = run_into(&file, &out, &[]);
    assert_eq!(done.code, 1, "{}", done.stderr);
    assert!(done.stdout.contains("pruned by early stopping"), "{}", done.stdout);
    let found = best(&out);
    let steps: i64 = steps_trained(&out).values().sum();
    eprintln!("{method}: best eval/loss {found:.4} against the grid's {grid_best:.4}; {steps} of the grid's {grid_steps} steps ({:.0}%)", 100.0 * steps as f64 / grid_steps as f64);
    assert!(found <= grid_best * 1.02, "{method}: best {found} is not within 2% of the grid's {grid_best}");
    assert!(steps as f64 <= 0.45 * (STEPS * TRIALS) as f64, "{method}: {steps} steps of the grid's {}", STEPS * TRIALS);
    // The trial ids are the grid's ([sweep.early_stop] is not part of a
    // trial), and what a trial trained across its rungs is what the grid
    // trained, bit for bit.
    let series = series_of(&out);
    assert!(!series.is_empty());
    for (point, bits) in &series {
        if point.1 != "perf/checkpoint_s" {
            assert_eq!(grid_series.get(point), Some(bits), "{method}: {point:?} differs from the grid's");
        }
    }
    let statuses = statuses(&out);
    assert!(statuses.iter().any(|s| s == "pruned"), "{statuses:?}");
    let status = run(bertlab().arg("status").arg(&out));
    assert!(status.stdout.contains("| pruned |"), "{}", status.stdout);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("pruned by early stopping"), "{report}");
}

#[test]
fn asha_and_the_median_rule_find_the_grids_best_for_under_half_its_steps() {
    let dir = tempfile::tempdir().unwrap();
    let grid = grid(dir.path());
    against_the_grid(dir.path(), &grid, "asha", ASHA);
    against_the_grid(dir.path(), &grid, "median", MEDIAN);
}

/// The decisions as a sequence, without the values' last digits' noise
/// (there is none on the CPU, but the sequence is what must repeat).
fn decisions(out: &Path) -> Vec<String> {
    log_lines(out).iter().map(|e| format!("{} {} {}", e["event"], e["trial"], e["rung"])).collect()
}

#[test]
fn a_run_killed_and_resumed_makes_the_same_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "asha.toml", &sweep("killed", ASHA).replace("eval_every = 20", "eval_every = 20\ncheckpoint_every = 10"));
    let reference = dir.path().join("reference");
    assert_eq!(run_into(&file, &reference, &[]).code, 1);
    let expected = decisions(&reference);
    let out = dir.path().join("out");
    let kills = kill_at_random_instants(&file, &out, 7);
    let last = run_into(&file, &out, &[]);
    assert_eq!(last.code, 1, "{}", last.stderr);
    assert!(kills >= 3, "only {kills} kills landed");
    assert_eq!(decisions(&out), expected, "after {kills} kills");
    let got = series_of(&out);
    let want = series_of(&reference);
    assert_same_series(&got.into_iter().filter(|p| p.0 .1 != "perf/checkpoint_s").collect(), &want.into_iter().filter(|p| p.0 .1 != "perf/checkpoint_s").collect(), "the resumed sweep");
}

#[test]
fn two_workers_make_decisions_the_rung_rules_allow() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "asha.toml", &sweep("jobs2", ASHA));
    let out = dir.path().join("out");
    // `plan` shows the rungs and what the sweep can cost.
    let plan = run(bertlab().arg("plan").arg(&file).args(["--format", "json"]));
    let summary = &serde_json::from_str::<serde_json::Value>(&plan.stdout).unwrap()["summary"]["early_stop"];
    assert_eq!(summary["rungs"], serde_json::json!([20, 60]));
    assert_eq!(summary["most_steps"], STEPS * TRIALS);
    assert_eq!(summary["fewest_steps"], (TRIALS - 1) * 20 + STEPS);
    let done = run_into(&file, &out, &["--jobs", "2"]);
    assert_eq!(done.code, 1, "{}", done.stderr);
    let trained = steps_trained(&out);
    // Replayed in order: a promotion at a rung is of a trial among the best
    // ⌊n/3⌋ of the n there then; a trial left waiting is not.
    let mut reached: HashMap<i64, Vec<(String, f64)>> = HashMap::new();
    let mut promoted = 0;
    let mut promotions: Vec<(String, i64)> = Vec::new();
    for entry in log_lines(&out) {
        let (trial, rung) = (entry["trial"].as_str().unwrap().to_string(), entry["rung"].as_i64().unwrap());
        let arrivals = reached.entry(rung).or_default();
        match entry["event"].as_str().unwrap() {
            "reached" => arrivals.push((trial, entry["value"].as_f64().unwrap_or(f64::INFINITY))),
            event => {
                let mut ranked = arrivals.clone();
                ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
                let rank = ranked.iter().position(|(t, _)| *t == trial).expect("judged after arriving");
                let keep = arrivals.len() / 3;
                match event {
                    // The end of a finite sweep: the best one left goes on.
                    "promoted" if entry["finishing"] == true => {
                        let left: Vec<&(String, f64)> = ranked.iter().filter(|(t, _)| !promotions.contains(&(t.clone(), rung))).collect();
                        assert_eq!(left[0].0, trial, "{trial} finishing from {rung} is not the best left");
                        promotions.push((trial, rung));
                    }
                    "promoted" => {
                        assert!(rank < keep, "{trial} promoted at {rung} as {} of {}", rank + 1, arrivals.len());
                        promoted += 1;
                        promotions.push((trial, rung));
                    }
                    "waits" => assert!(rank >= keep, "{trial} left waiting at {rung} as {} of {}", rank + 1, arrivals.len()),
                    other => panic!("{other}"),
                }
            }
        }
    }
    assert!(promoted >= 3, "{promoted} promotions");
    // Every trial trained to the rung it is recorded at, or to its end.
    let trials = read_table(&out.join("trials.parquet"));
    for (id, status) in strings(&trials, "trial_id").iter().zip(strings(&trials, "status")) {
        let record: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("trials").join(id).join("record.json")).unwrap()).unwrap();
        if status != "failed" {
            assert_eq!(trained[id], record["step"].as_i64().unwrap(), "{id} ({status})");
        }
    }
}
