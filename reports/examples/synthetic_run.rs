//! A synthetic run folder for the report benchmark (bench/report_500.sh):
//! `cargo run --release -p reports --example synthetic_run -- DIR [TRIALS] [STEPS]`
//! writes `trials.parquet`, `metrics.parquet` and `run.toml` shaped like a
//! real sweep's (5 swept keys, two seeds per configuration, eval every 10
//! steps, train loss every step), with losses that depend on the keys.
use polars::prelude::*;
use reports::run_info::{ExperimentInfo, Provenance, RunInfo};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: synthetic_run DIR [TRIALS] [STEPS]"));
    let trials: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(500);
    let steps: i64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    std::fs::create_dir_all(&dir)?;

    let (layers, hidden, heads, dropout, lr) = ([2i64, 4, 6, 8, 12], [128i64, 256, 512, 768, 1024], [2i64, 4], [0.0, 0.1, 0.2], [1e-4f64, 3e-4, 1e-3]);
    let mut t = TrialColumns::default();
    let (mut m_id, mut m_step, mut m_key, mut m_value, mut m_wall) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..trials {
        let (config, seed) = (i / 2, (i % 2) as i64);
        let l = layers[config % 5];
        let h = hidden[(config / 5) % 5];
        let a = heads[(config / 25) % 2];
        let d = dropout[(config / 50) % 3];
        let r = lr[(config / 150) % 3];
        let id = format!("{i:012x}");
        let floor = 3.0 + 8.0 / (l as f64 * h as f64).sqrt() + d + (r.log10() + 3.5).abs() * 0.3 + seed as f64 * 0.01;
        let loss = |s: i64| floor + 6.0 * (-(s as f64) / 40.0).exp();
        for s in 1..=steps {
            let noise = ((i as f64 * 7.3 + s as f64 * 1.7).sin()) * 0.05;
            m_id.push(id.clone());
            m_step.push(s);
            m_key.push("train/loss".to_string());
            m_value.push(loss(s) + noise);
            m_wall.push(s as f64 * 0.05);
            if s % 10 == 0 || s == steps {
                m_id.push(id.clone());
                m_step.push(s);
                m_key.push("eval/loss".to_string());
                m_value.push(loss(s) + 0.1);
                m_wall.push(s as f64 * 0.05);
            }
        }
        let params = (12 * l * h * h + 30522 * h) as f64;
        t.push(id, seed, [l, h, a], [d, r], loss(steps) + 0.1, params, steps * 32 * 128);
    }
    let mut trials_frame = t.frame()?;
    ParquetWriter::new(std::fs::File::create(dir.join("trials.parquet"))?).finish(&mut trials_frame)?;
    let mut metrics = df!("trial_id" => m_id, "step" => m_step, "key" => m_key, "value" => m_value, "wall_s" => m_wall)?;
    ParquetWriter::new(std::fs::File::create(dir.join("metrics.parquet"))?).finish(&mut metrics)?;
    RunInfo {
        experiment: ExperimentInfo { name: "synthetic".into(), file: "synthetic".into(), model: "bert".into(), metric: "eval/loss".into(), goal: "minimize".into() },
        report: Default::default(),
        baseline: Vec::new(),
        provenance: Provenance { bertlab: env!("CARGO_PKG_VERSION").into(), date: "synthetic".into(), ..Default::default() },
    }
    .write(&dir)?;
    println!("wrote {} trials × {steps} steps ({} metric points) to {}", trials, metrics.height(), dir.display());
    Ok(())
}

#[derive(Default)]
struct TrialColumns {
    id: Vec<String>,
    seed: Vec<i64>,
    ints: [Vec<i64>; 3],
    floats: [Vec<f64>; 2],
    eval: Vec<f64>,
    params: Vec<f64>,
    tokens: Vec<i64>,
}

impl TrialColumns {
    #[allow(clippy::too_many_arguments)]
    fn push(&mut self, id: String, seed: i64, ints: [i64; 3], floats: [f64; 2], eval: f64, params: f64, tokens: i64) {
        self.id.push(id);
        self.seed.push(seed);
        for (column, v) in self.ints.iter_mut().zip(ints) {
            column.push(v);
        }
        for (column, v) in self.floats.iter_mut().zip(floats) {
            column.push(v);
        }
        self.eval.push(eval);
        self.params.push(params);
        self.tokens.push(tokens);
    }

    fn frame(self) -> PolarsResult<DataFrame> {
        let n = self.id.len();
        let flops: Vec<f64> = self.params.iter().zip(&self.tokens).map(|(p, t)| 6.0 * p * *t as f64).collect();
        let [layers, hidden, heads] = self.ints;
        let [dropout, lr] = self.floats;
        df!(
            "trial_id" => self.id,
            "experiment" => vec!["synthetic"; n],
            "status" => vec!["completed"; n],
            "seed" => self.seed,
            "model.layers" => layers,
            "model.hidden" => hidden,
            "model.heads" => heads,
            "model.dropout" => dropout,
            "train.lr" => lr,
            "params" => self.params.iter().map(|&p| p as i64).collect::<Vec<_>>(),
            "tokens" => self.tokens,
            "flops" => flops,
            "eval/loss" => self.eval,
            "wall_s" => vec![10.0; n],
        )
    }
}
