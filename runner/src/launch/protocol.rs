//! What a worker process (`bertlab worker`, started by `run --jobs N`) and
//! the sweep that started it say to each other: the worker reads its trial's
//! resolved configuration as JSON on stdin and writes one JSON event per
//! line on stdout (metric points, progress, checkpoints written, then how
//! the trial ended). Its stderr goes to the trial's `worker.log`. A trial
//! on several devices trains in this worker as rank 0, with the other ranks
//! it starts ([`super::ranks`]).
use super::local::catch_panics;
use super::ranks::{self, Assignment, Work};
use crate::data::{self, cache::Cache};
use crate::trial::TrialConfig;
use crate::train::{self, Observer, Outcome, Placement, Stopped};
use anyhow::{Context, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use tch::Device;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Metric { step: i64, key: String, value: Number },
    Step { step: i64 },
    Loss { step: i64, loss: Number },
    /// A checkpoint is written in full, for the sweep to put in place.
    Checkpoint { step: i64, staged: PathBuf },
    Completed { params: i64, tokens: i64, flops: f64, metrics: BTreeMap<String, Number> },
    Failed { error: String },
    /// Stopped before its end through no fault of its own (a signal, a
    /// failed write).
    Stopped { stopped: Stopped },
}

/// An f64 that survives JSON even when it is NaN or infinite (written as
/// text), as an evaluation of a diverged model can be.
#[derive(Debug, Clone, Copy)]
pub struct Number(pub f64);

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_finite() {
            s.serialize_f64(self.0)
        } else {
            s.serialize_str(&self.0.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Number, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Finite(f64),
            Text(String),
        }
        match Wire::deserialize(d)? {
            Wire::Finite(v) => Ok(Number(v)),
            Wire::Text(t) => t.parse().map(Number).map_err(serde::de::Error::custom),
        }
    }
}

impl Event {
    /// The outcome this event reports, if it is the last one.
    pub fn ending(self) -> Option<Result<Outcome>> {
        match self {
            Event::Completed { params, tokens, flops, metrics } => {
                Some(Ok(Outcome { params, tokens, flops, metrics: metrics.into_iter().map(|(k, v)| (k, v.0)).collect() }))
            }
            Event::Failed { error } => Some(Err(anyhow::anyhow!(error))),
            Event::Stopped { stopped } => Some(Err(stopped.into())),
            _ => None,
        }
    }

    /// Replays a progress event on `observer`; false for an ending. Fails
    /// when the observer cannot put a checkpoint in place.
    pub fn replay(&self, observer: &mut dyn Observer) -> Result<bool> {
        match self {
            Event::Metric { step, key, value } => observer.metric(*step, key, value.0),
            Event::Step { step } => observer.step_done(*step),
            Event::Loss { step, loss } => observer.loss_read(*step, loss.0),
            Event::Checkpoint { step, staged } => observer.checkpoint(*step, staged)?,
            Event::Completed { .. } | Event::Failed { .. } | Event::Stopped { .. } => return Ok(false),
        }
        Ok(true)
    }
}

/// The worker's side: trains the trial on stdin into `trial_dir` and
/// reports on stdout, on `devices` (one per rank; `threads` shared between
/// them). A pretraining trial's tokenizer and packed data come from the
/// cache the sweep filled before starting workers; a fine-tuning trial
/// reads and tokenizes its labelled examples again.
pub fn serve(devices: &[Device], threads: i32, trial_dir: &Path, resume: Option<&Path>, until: Option<i64>) -> Result<i32> {
    let threads = (threads / devices.len().max(1) as i32).max(1);
    tch::set_num_threads(threads);
    let mut input = String::new();
    std::io::stdin().lock().read_line(&mut input).context("reading the trial configuration")?;
    let config: TrialConfig = serde_json::from_str(&input).context("parsing the trial configuration")?;
    let mut out = Emitter(std::io::stdout().lock());
    let work = Work::Train { dir: trial_dir.to_owned(), resume: resume.map(Path::to_owned), until };
    let assignment = Assignment { config, work };
    let config = &assignment.config;
    let result = catch_panics(|| {
        ranks::lead(
            &assignment,
            devices,
            threads,
            Some(trial_dir),
            || Ok(data::prepare(config.task, &config.data, &Cache::from_env())?),
            |data, ranks| train::train(config, &data, &Placement { device: devices[0], ranks, dir: trial_dir, resume, until }, &mut out),
        )
    });
    out.emit(&match result {
        Err(e) if e.downcast_ref::<Stopped>().is_some() => Event::Stopped { stopped: e.downcast::<Stopped>().expect("checked") },
        Ok(o) => Event::Completed {
            params: o.params,
            tokens: o.tokens,
            flops: o.flops,
            metrics: o.metrics.into_iter().map(|(k, v)| (k, Number(v))).collect(),
        },
        Err(e) => Event::Failed { error: format!("{e:#}") },
    });
    Ok(0)
}

struct Emitter<W: Write>(W);

impl<W: Write> Emitter<W> {
    fn emit(&mut self, event: &Event) {
        let line = serde_json::to_string(event).expect("events serialise");
        if writeln!(self.0, "{line}").and_then(|_| self.0.flush()).is_err() {
            // The sweep that started this worker is gone: nobody would
            // record the trial, so training on would only hold the device.
            eprintln!("the sweep process stopped listening; worker exits");
            std::process::exit(3);
        }
    }
}

impl<W: Write> Observer for Emitter<W> {
    fn metric(&mut self, step: i64, key: &str, value: f64) {
        self.emit(&Event::Metric { step, key: key.into(), value: Number(value) });
    }

    fn step_done(&mut self, step: i64) {
        self.emit(&Event::Step { step });
    }

    fn loss_read(&mut self, step: i64, loss: f64) {
        self.emit(&Event::Loss { step, loss: Number(loss) });
    }

    /// The sweep puts it in place, after the points before it.
    fn checkpoint(&mut self, step: i64, staged: &Path) -> Result<()> {
        self.emit(&Event::Checkpoint { step, staged: staged.to_owned() });
        Ok(())
    }
}
