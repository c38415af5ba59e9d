//! Model selection as the papers did it: for each starting checkpoint
//! (`model.init`) and fine-tuning task, the best dev score (`eval/score`)
//! over the configurations tried, e.g. a grid of batch sizes and learning
//! rates; and with several tasks the GLUE score, the mean of the tasks'
//! best scores, beside a published one (a `[[baseline]]` with a
//! `glue/score` that matches the checkpoint's `model.init`). One task's
//! score is not set beside a GLUE score.
use crate::configs::{Configuration, Configurations};
use crate::content::{value_of, Cell, Table};
use crate::run_info::Baseline;
use crate::tables::Runs;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};

const SCORE: &str = "eval/score";
pub const GLUE_SCORE: &str = "glue/score";

pub struct Selection {
    pub table: Table,
    /// Checkpoints set beside a published GLUE score, which the baselines
    /// table then leaves out.
    pub compared: Vec<String>,
}

/// `None` unless the trials were fine-tuned (they record their task).
pub fn table(configs: &Configurations, baselines: &[Baseline], runs: &Runs) -> Option<Selection> {
    let text = |c: &Configuration, key: &str| value_of(configs, c, key, runs).map(|level| level.to_string());
    // (checkpoint, task) -> (best score, the configuration that reached it)
    let mut best: BTreeMap<(String, String), (f64, String)> = BTreeMap::new();
    for c in &configs.rows {
        let (Some(task), Some(score)) = (text(c, "task"), c.score(SCORE)) else { continue };
        let checkpoint = text(c, "model.init").unwrap_or_else(|| "(random weights)".into());
        let entry = best.entry((checkpoint, task)).or_insert((f64::NEG_INFINITY, String::new()));
        if score > entry.0 {
            *entry = (score, c.label.clone());
        }
    }
    if best.is_empty() {
        return None;
    }
    let tasks: BTreeSet<&String> = best.keys().map(|(_, task)| task).collect();
    let checkpoints: BTreeSet<&String> = best.keys().map(|(checkpoint, _)| checkpoint).collect();
    let mut header = vec!["checkpoint".to_string()];
    header.extend(tasks.iter().map(|t| t.to_string()));
    let several = tasks.len() > 1;
    if several {
        header.push(format!("GLUE score ({} tasks)", tasks.len()));
    }
    let published_columns = several && baselines.iter().any(|b| b.metrics.contains_key(GLUE_SCORE));
    if published_columns {
        header.extend(["published", "difference", "source"].map(String::from));
    }
    let mut selection = Selection { table: Table { header, ..Default::default() }, compared: Vec::new() };
    for checkpoint in checkpoints {
        let scores: Vec<Option<&(f64, String)>> = tasks.iter().map(|task| best.get(&(checkpoint.clone(), task.to_string()))).collect();
        let mut row = vec![Cell::text(checkpoint)];
        for score in &scores {
            row.push(match score {
                Some((value, label)) => {
                    let mut cell = Cell::number(format!("{value:.1}"), *value);
                    cell.data.push(("config", label.clone()));
                    cell
                }
                None => Cell::text("not run"),
            });
        }
        let complete: Option<Vec<f64>> = scores.iter().map(|s| s.map(|(v, _)| *v)).collect();
        let overall = complete.map(|v| v.iter().sum::<f64>() / v.len() as f64);
        if several {
            row.push(overall.map_or_else(|| Cell::text("incomplete"), |v| Cell::number(format!("{v:.1}"), v)));
        }
        let published = baselines.iter().find_map(|b| Some((*b.metrics.get(GLUE_SCORE)?, b)).filter(|_| matches(b, checkpoint)));
        match (published, overall) {
            _ if !published_columns => {}
            (Some((value, baseline)), measured) => {
                row.push(Cell::number(format!("{value:.1}"), value));
                row.push(measured.map_or_else(|| Cell::text(""), |m| Cell::number(format!("{:+.1}", m - value), m - value)));
                row.push(Cell::text(format!("{}: {}", baseline.name, baseline.source)));
                selection.compared.push(checkpoint.clone());
            }
            (None, _) => row.extend([Cell::text(""), Cell::text(""), Cell::text("")]),
        }
        selection.table.rows.push(row);
        selection.table.labels.push(String::new());
    }
    Some(selection)
}

/// Whether `baseline` is about `checkpoint`: its `match` names the same
/// `model.init` folder (`./checkpoints/x/` is `checkpoints/x`).
pub fn matches(baseline: &Baseline, checkpoint: &str) -> bool {
    fn folder(path: &str) -> Vec<Component<'_>> {
        Path::new(path).components().filter(|c| *c != Component::CurDir).collect()
    }
    baseline.matches.get("model.init").and_then(|v| v.as_str()).is_some_and(|init| folder(init) == folder(checkpoint))
}
