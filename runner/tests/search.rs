//! `[sweep.search]` end to end on a real tiny model: a TPE search over the
//! learning rate and dropout, with a constraint and ASHA on top, through
//! `plan` and the report; one seed gives one sequence of suggestions, and a
//! run killed at random instants and resumed makes exactly the suggestions
//! and decisions of an uninterrupted one; `--jobs 2` gets distinct
//! suggestions, the trials still training counted as constant liars.
mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const STEPS: i64 = 180;

/// A search of `trials` suggestions (`startup` random) with `extra` below.
fn searched(name: &str, trials: u64, startup: u64, extra: &str) -> String {
    let search = format!(
        "[sweep.search]\nmethod = \"tpe\"\ntrials = {trials}\nstartup = {startup}\nseed = 3\n\"train.lr\" = {{ log_uniform = [1e-5, 1e-1] }}\n\"model.dropout\" = {{ uniform = [0.0, 0.3] }}\n\n{extra}"
    );
    experiment(name, &format!("steps = {STEPS}\neval_every = 20\ncheckpoint_every = 10"), &search)
}

const ASHA: &str = "[sweep.early_stop]\nmethod = \"asha\"\nmin_steps = 20\neta = 3\n";
const CONSTRAINT: &str = "[constraints]\nrequire = [\"train.lr < 1e-2\"]\n";

fn suggestions(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("search.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn run_into(file: &Path, out: &Path, args: &[&str]) -> Run {
    run(bertlab().arg("run").arg(file).arg("--out").arg(out).args(args))
}

#[test]
fn a_search_with_early_stopping_runs_its_suggestions_through_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let text = searched("search", 6, 3, &format!("{ASHA}\n{CONSTRAINT}")).replace("name = \"search\"", "name = \"search\"\nseeds = [0, 1]");
    let file = write(dir.path(), "search.toml", &text);
    let out = dir.path().join("out");

    let plan = run(bertlab().arg("plan").arg(&file).arg("--out").arg(&out));
    assert!(plan.stdout.contains("search tpe over model.dropout uniform [0, 0.3], train.lr log_uniform [0.00001, 0.1]: 6 suggestions, the first 3 random (seed 3) × seeds [0, 1] = up to 12 trials"), "{}", plan.stdout);
    assert!(plan.stdout.contains("0 of 6 suggestions made"), "{}", plan.stdout);

    let done = run_into(&file, &out, &[]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let made = suggestions(&out);
    assert_eq!(made.len(), 6);
    // Each suggestion is trained once per seed, within the constraint; the
    // draws the constraint dropped were drawn again.
    let mut ids: Vec<&str> = made.iter().flat_map(|s| s["trials"].as_array().unwrap().iter().map(|t| t.as_str().unwrap())).collect();
    assert_eq!(ids.len(), 12);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12, "a trial suggested twice");
    for s in &made {
        assert!(s["point"]["train.lr"].as_f64().unwrap() < 1e-2, "{s}");
    }
    let draws: Vec<u64> = made.iter().map(|s| s["draw"].as_u64().unwrap()).collect();
    assert!(draws.windows(2).all(|w| w[0] < w[1]), "{draws:?}");
    assert!(*draws.last().unwrap() > 5, "no draw was dropped by the constraint: {draws:?}");
    assert_eq!(done.stderr.matches("random start-up draw").count(), 3, "{}", done.stderr);
    assert_eq!(done.stderr.matches("TPE over").count(), 3, "{}", done.stderr);
    // ASHA on top: some trials stopped, none trained a step twice, each
    // trained to the step it is recorded at.
    let statuses = statuses(&out);
    assert!(statuses.iter().any(|s| s == "pruned") && statuses.iter().any(|s| s == "completed"), "{statuses:?}");
    let trained = steps_trained(&out);
    let total: i64 = trained.values().sum();
    assert!(total < 12 * STEPS, "{total}");

    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let share = format!("{:.0}% of the steps of its suggestions", 100.0 * total as f64 / (12 * STEPS) as f64);
    assert!(report.contains("## Search and early stopping") && report.contains(&share), "{share}\n{report}");
    for chart in ["eval-loss-by-rung.svg", "best-eval-loss-so-far.svg"] {
        let svg = std::fs::read_to_string(out.join("report-charts").join(chart)).unwrap();
        assert!(svg.contains("<circle"), "{chart} draws no points");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("id=\"spending\""));

    // plan lists the suggestions made; a second run trains nothing new.
    let plan = run(bertlab().arg("plan").arg(&file).arg("--out").arg(&out).args(["--format", "json"]));
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(plan["summary"]["suggested"], 6);
    assert_eq!(plan["trials"].as_array().unwrap().len(), 12);
    let again = run_into(&file, &out, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(!again.stderr.contains("search suggestion") && !again.stderr.contains("start "), "{}", again.stderr);
    assert_eq!(suggestions(&out), made);
}

/// Suggestions and early stopping's decisions, as written.
fn decisions(out: &Path) -> (String, String) {
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    (read("search.jsonl"), read("early-stop.jsonl"))
}

#[test]
fn one_seed_gives_one_search_and_a_killed_run_resumes_it_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "search.toml", &searched("killed", 36, 3, ASHA));
    let reference = dir.path().join("reference");
    let done = run_into(&file, &reference, &[]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let expected = decisions(&reference);
    let again: PathBuf = dir.path().join("again");
    assert_eq!(run_into(&file, &again, &[]).code, 0);
    assert_eq!(decisions(&again), expected, "the same seed searched differently");

    let out = dir.path().join("out");
    let kills = kill_at_random_instants(&file, &out, 11);
    let last = run_into(&file, &out, &[]);
    assert_eq!(last.code, 0, "{}", last.stderr);
    assert!(kills >= 3, "only {kills} kills landed");
    assert_eq!(decisions(&out), expected, "after {kills} kills");
    // A SIGKILL between checkpoints loses the steps since the last one, so
    // those are trained again: the series, not the point logs, must match.
    let keep = |s: Series| -> Series { s.into_iter().filter(|p| p.0 .1 != "perf/checkpoint_s").collect() };
    assert_same_series(&keep(series_of(&out)), &keep(series_of(&reference)), "the resumed search");
}

#[test]
fn two_workers_get_distinct_suggestions_with_the_running_ones_as_liars() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "search.toml", &searched("jobs2", 8, 2, ""));
    let out = dir.path().join("out");
    let done = run_into(&file, &out, &["--jobs", "2"]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let made = suggestions(&out);
    assert_eq!(made.len(), 8);
    let mut points: Vec<String> = made.iter().map(|s| s["point"].to_string()).collect();
    points.sort();
    points.dedup();
    assert_eq!(points.len(), 8, "two workers got the same suggestion");
    // A worker freed while the other trains asks with that trial pending.
    assert!(done.stderr.contains("of them still training"), "{}", done.stderr);
    assert_eq!(statuses(&out).iter().filter(|s| *s == "completed").count(), 8);
}
