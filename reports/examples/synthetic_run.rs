//! A synthetic run folder for the benchmarks (bench/report_500.sh,
//! bench/store_scale.sh), written by the run folder's own trial writer as a
//! real sweep's trials would be:
//! `synthetic_run DIR [TRIALS] [STEPS] [EVAL_EVERY] [PER_STEP_KEYS] [FIRST]`
//! (defaults 500, 200, 10, `train/loss`, 0; trial ids count from `FIRST`). Trials are shaped like a sweep's
//! (5 swept keys, two seeds per configuration), with losses that depend on
//! the keys; `PER_STEP_KEYS` (comma-separated) are logged every step,
//! `eval/loss` every `EVAL_EVERY` steps and at the last.
use reports::run_info::{ExperimentInfo, Provenance, RunInfo};
use runfolder::claim::Attempt;
use runfolder::writer::Start;
use runfolder::{Cell, MetricPoint, Row, RunFolder, TrialStatus, TrialWriter};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: synthetic_run DIR [TRIALS] [STEPS] [EVAL_EVERY] [PER_STEP_KEYS] [FIRST]"));
    let trials: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(500);
    let steps: i64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let eval_every: i64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let per_step: Vec<String> = args.next().unwrap_or_else(|| "train/loss".into()).split(',').map(String::from).collect();
    let first: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(0);
    let folder = RunFolder::open(&dir)?;

    let (layers, hidden, heads, dropout, lr) = ([2i64, 4, 6, 8, 12], [128i64, 256, 512, 768, 1024], [2i64, 4], [0.0, 0.1, 0.2], [1e-4f64, 3e-4, 1e-3]);
    let mut points = 0usize;
    for i in 0..trials {
        let (config, seed) = (i / 2, (i % 2) as i64);
        let l = layers[config % 5];
        let h = hidden[(config / 5) % 5];
        let a = heads[(config / 25) % 2];
        let d = dropout[(config / 50) % 3];
        let r = lr[(config / 150) % 3];
        let id = format!("{:012x}", first + i);
        let floor = 3.0 + 8.0 / (l as f64 * h as f64).sqrt() + d + (r.log10() + 3.5).abs() * 0.3 + seed as f64 * 0.01;
        let loss = |s: i64| floor + 6.0 * (-(s as f64) / 40.0).exp();
        let text = |v: &str| Cell::Text(v.into());
        let mut row = Row::from([
            ("trial_id".into(), text(&id)),
            ("experiment".into(), text("synthetic")),
            ("status".into(), text("running")),
            ("seed".into(), Cell::Int(seed)),
            ("model.layers".into(), Cell::Int(l)),
            ("model.hidden".into(), Cell::Int(h)),
            ("model.heads".into(), Cell::Int(a)),
            ("model.dropout".into(), Cell::Float(d)),
            ("train.lr".into(), Cell::Float(r)),
        ]);
        let Attempt::Mine(claim) = folder.claim(&id)? else { anyhow::bail!("trial {id} is claimed by another process") };
        let label = format!("layers={l} hidden={h} seed={seed}");
        let start = Start { trial_id: id.clone(), experiment: "synthetic".into(), label, config: serde_json::Value::Null, steps, row: row.clone(), resume_from: None };
        let mut writer = TrialWriter::start(folder.root.clone(), claim, start)?;
        for s in 1..=steps {
            let wall_s = s as f64 * 0.05;
            for key in &per_step {
                let noise = ((i as f64 * 7.3 + s as f64 * 1.7).sin()) * 0.05;
                writer.point(MetricPoint { step: s, key: key.clone(), value: loss(s) + noise, wall_s });
            }
            points += per_step.len();
            if s % eval_every == 0 || s == steps {
                writer.point(MetricPoint { step: s, key: "eval/loss".into(), value: loss(s) + 0.1, wall_s });
                points += 1;
            }
            writer.progress(s);
        }
        let params = 12 * l * h * h + 30522 * h;
        let tokens = steps * 32 * 128;
        row.extend([
            ("params".into(), Cell::Int(params)),
            ("tokens".into(), Cell::Int(tokens)),
            ("flops".into(), Cell::Float(6.0 * params as f64 * tokens as f64)),
            ("eval/loss".into(), Cell::Float(loss(steps) + 0.1)),
            ("wall_s".into(), Cell::Float(10.0)),
        ]);
        writer.finish(TrialStatus::Completed, row)?;
    }
    RunInfo {
        experiment: ExperimentInfo { name: "synthetic".into(), file: "synthetic".into(), model: "bert".into(), metric: "eval/loss".into(), goal: "minimize".into() },
        report: Default::default(),
        baseline: Vec::new(),
        provenance: Provenance { bertlab: env!("CARGO_PKG_VERSION").into(), date: "synthetic".into(), ..Default::default() },
        launch: None,
    }
    .write(&dir)?;
    println!("wrote {trials} trials × {steps} steps ({points} metric points) to {}", dir.display());
    Ok(())
}
