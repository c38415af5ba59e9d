//! The training loop of one trial: seed, build the model, then until the
//! last step or the end of the time budget take a batch and an
//! optimisation step, and report `train/loss` and `train/lr`; evaluate at
//! step 0, every `eval_every` steps and at the end; save the weights as
//! `model.safetensors`. Losses are read back 25 steps at a time, never
//! inside a step, so the GPU waits for the host only at those reads and at
//! evaluations. Pretraining lives here (masked batches drawn on another
//! thread); fine-tuning in [`super::finetune`], on the same loop.
use super::objective::Pretraining;
use super::schedule::Schedule;
use super::step::Stepper;
use crate::data::batches::{eval_batches, prefetched, TrainBatches};
use crate::data::masking::Masker;
use crate::config::TrainSection;
use crate::data::{Dataset, Examples, Packed};
use crate::trial::TrialConfig;
use crate::model_dir::{self, ModelDir};
use anyhow::{bail, Context, Result};
use models::heads::NextSentenceHead;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tch::{nn::VarStore, Device, Kind, Tensor};

/// What a trial reports while it runs.
pub trait Observer {
    /// One point of a metric series (`train/loss`, `eval/loss`, ...).
    fn metric(&mut self, step: i64, key: &str, value: f64);
    /// A step finished; for progress display.
    fn step_done(&mut self, _step: i64) {}
    /// The loss of a step, once read back from the device (in batches,
    /// after the step itself).
    fn loss_read(&mut self, _step: i64, _loss: f64) {}
}

/// Final numbers of a completed trial, keyed like the metric series.
pub struct Outcome {
    pub metrics: BTreeMap<String, f64>,
    pub params: i64,
    /// Tokens trained on (padding excluded).
    pub tokens: i64,
    /// Training FLOPs: the plugin's count per token times `tokens`.
    pub flops: f64,
}

/// How many of the last `train/loss` values the final one averages: a single
/// step's loss is too noisy to compare trials by.
const FINAL_LOSS_WINDOW: usize = 10;

/// Trains the trial on its examples: masked-LM pretraining on a corpus, or
/// fine-tuning ([`super::finetune`]) on labelled examples.
pub fn train(config: &TrialConfig, data: &Dataset, device: Device, trial_dir: &Path, observer: &mut dyn Observer) -> Result<Outcome> {
    match &data.examples {
        Examples::Pretraining { train, eval } => pretrain(config, data, (train, eval), device, trial_dir, observer),
        Examples::Labeled(labeled) => super::finetune::train(config, &data.vocab, labeled, device, trial_dir, observer),
    }
}

fn pretrain(config: &TrialConfig, data: &Dataset, (train_set, eval_set): (&Packed, &Packed), device: Device, trial_dir: &Path, observer: &mut dyn Observer) -> Result<Outcome> {
    let plugin = models::registry::find(&config.plugin).context("unknown plugin")?;
    let train = &config.train;
    let (vs, model) = build(config, device)?;
    if let Some(init) = &config.init {
        let report = ModelDir::find(init)?.load(&vs)?;
        if !report.fresh.is_empty() {
            tracing::warn!("{init} has no {}: initialised fresh", report.fresh.join(", "));
        }
    }
    let params = Pretraining::param_count(plugin, &config.model, config.data.nsp)?;
    let flops_per_token = plugin.flops_per_token(&config.model, config.data.seq_len)?;
    let mut stepper = Stepper::new(&vs, train, plugin)?;
    let precision = stepper.precision();

    let vocab = &data.vocab;
    let masker = Masker::new(config.data.mask_prob, vocab.mask, vocab.size() as u32, &vocab.special);
    let batch_size = train.batch_size as usize;
    let held_out = eval_batches(eval_set, &masker, batch_size, device);
    let mut last = None;
    let mut evaluate = |step: i64, observer: &mut dyn Observer| -> Result<()> {
        let result = precision.forward(device, || model.evaluate(&held_out))?;
        observer.metric(step, "eval/loss", result.loss);
        observer.metric(step, "eval/accuracy", result.accuracy);
        if let Some((loss, accuracy)) = result.next_sentence {
            observer.metric(step, "eval/nsp_loss", loss);
            observer.metric(step, "eval/nsp_accuracy", accuracy);
        }
        last = Some(result);
        Ok(())
    };
    let source = TrainBatches::new(train_set, &masker, batch_size, config.seed);
    let trained = prefetched(source, device, |next_batch| {
        let mut step = |lr: f64| -> Result<(Tensor, usize)> {
            let batch = next_batch().to(device);
            Ok((stepper.step(|| model.loss(&batch), lr)?, batch.tokens))
        };
        run_steps(train, device, &mut step, &mut evaluate, observer)
    })?;
    let last = last.expect("the loop evaluates at the end");
    model_dir::save_weights(&vs, trial_dir)?;
    data.vocab.save(&trial_dir.join(model_dir::TOKENIZER)).context("saving the tokenizer")?;

    let mut metrics = trained.metrics();
    metrics.insert("eval/loss".into(), last.loss);
    metrics.insert("eval/accuracy".into(), last.accuracy);
    if let Some((loss, accuracy)) = last.next_sentence {
        metrics.insert("eval/nsp_loss".into(), loss);
        metrics.insert("eval/nsp_accuracy".into(), accuracy);
    }
    Ok(Outcome { metrics, params, tokens: trained.tokens as i64, flops: flops_per_token as f64 * trained.tokens as f64 })
}

/// What [`run_steps`] measured.
pub(super) struct Trained {
    pub tokens: usize,
    pub tokens_per_s: f64,
    /// The mean of the last [`FINAL_LOSS_WINDOW`] training losses.
    pub final_loss: f64,
}

impl Trained {
    /// `train/loss` and `perf/tokens_per_s`, for the outcome.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([("train/loss".to_string(), self.final_loss), ("perf/tokens_per_s".to_string(), self.tokens_per_s)])
    }
}

/// The loop every objective shares: until the last step or the end of the
/// time budget, `step` trains on the next batch at the schedule's learning
/// rate and returns its loss (still on the device) and its tokens; losses
/// are read back [`LOSS_READ_EVERY`] steps at a time and reported as
/// `train/loss` and `train/lr`; `evaluate` runs at step 0, every
/// `eval_every` steps and at the end, and its time does not count against
/// the budget or the throughput.
pub(super) fn run_steps(
    train: &TrainSection,
    device: Device,
    step: &mut dyn FnMut(f64) -> Result<(Tensor, usize)>,
    evaluate: &mut dyn FnMut(i64, &mut dyn Observer) -> Result<()>,
    observer: &mut dyn Observer,
) -> Result<Trained> {
    evaluate(0, observer)?;
    let started = Instant::now();
    let mut eval_time = Duration::ZERO;
    let mut tokens = 0usize;
    let mut losses = Losses::default();
    let schedule = Schedule::new(train);
    let mut done = 0;
    while !schedule.finished(done, started.elapsed() - eval_time) {
        let lr = schedule.lr(done, started.elapsed() - eval_time);
        let (loss, batch_tokens) = step(lr)?;
        tokens += batch_tokens;
        done += 1;
        losses.push(done, loss, lr);
        observer.step_done(done);
        let last = schedule.finished(done, started.elapsed() - eval_time);
        let evaluates = train.eval_every > 0 && done % train.eval_every == 0 && !last;
        if losses.pending() >= LOSS_READ_EVERY || evaluates || last {
            losses.read(train.log_every, last, observer)?;
        }
        if evaluates {
            let eval_started = Instant::now();
            evaluate(done, observer)?;
            eval_time += eval_started.elapsed();
            observer.metric(done, "perf/tokens_per_s", tokens as f64 / (started.elapsed() - eval_time).as_secs_f64());
        }
    }
    super::device::synchronize(device);
    let training_time = started.elapsed() - eval_time;
    evaluate(done, observer)?;
    let tokens_per_s = tokens as f64 / training_time.as_secs_f64();
    observer.metric(done, "perf/tokens_per_s", tokens_per_s);
    Ok(Trained { tokens, tokens_per_s, final_loss: losses.final_loss() })
}

/// The trial's model with its initial weights, on `device`. The weights are
/// drawn on the CPU and then moved, so a seed gives the same initial model
/// on every device (CUDA's generator draws different numbers).
pub fn build(config: &TrialConfig, device: Device) -> Result<(VarStore, Pretraining)> {
    let plugin = models::registry::find(&config.plugin).context("unknown plugin")?;
    tch::manual_seed(config.seed as i64);
    let mut vs = VarStore::new(Device::Cpu);
    let root = vs.root();
    let model = plugin.build(&root, &config.model)?;
    let next_sentence = if config.data.nsp {
        let pooler = plugin.pooler(&root);
        Some(NextSentenceHead::new(&root, &pooler, &config.model)?)
    } else {
        None
    };
    vs.set_device(device);
    Ok((vs, Pretraining { model, next_sentence }))
}

/// Steps between reads of the losses: reading one waits for the device to
/// finish the step, so they stay on the device and come back in batches.
const LOSS_READ_EVERY: usize = 25;

/// Step losses still on the device, and the last ones read.
#[derive(Default)]
struct Losses {
    /// (step, loss, learning rate) not yet read.
    pending: Vec<(i64, Tensor, f64)>,
    recent: Vec<f64>,
}

impl Losses {
    fn push(&mut self, step: i64, loss: Tensor, lr: f64) {
        self.pending.push((step, loss, lr));
    }

    fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Reads the pending losses in one transfer, reports those on a log
    /// step (and the very last, when `last`), and fails on the first that
    /// is not finite.
    fn read(&mut self, log_every: i64, last: bool, observer: &mut dyn Observer) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let final_step = pending.last().map(|(step, _, _)| *step).filter(|_| last);
        let stacked = Tensor::stack(&pending.iter().map(|(_, loss, _)| loss.to_kind(Kind::Double)).collect::<Vec<_>>(), 0);
        let values = Vec::<f64>::try_from(stacked.to_device(Device::Cpu))?;
        for ((step, _, lr), loss) in pending.into_iter().zip(values) {
            if !loss.is_finite() {
                bail!("train/loss is {loss} at step {step}: training diverged (try a lower train.lr or more train.warmup_steps)");
            }
            if step % log_every == 0 || Some(step) == final_step {
                observer.metric(step, "train/loss", loss);
                observer.metric(step, "train/lr", lr);
            }
            observer.loss_read(step, loss);
            self.recent.push(loss);
        }
        let excess = self.recent.len().saturating_sub(FINAL_LOSS_WINDOW);
        self.recent.drain(..excess);
        Ok(())
    }

    /// The mean of the last [`FINAL_LOSS_WINDOW`] losses.
    fn final_loss(&self) -> f64 {
        self.recent.iter().sum::<f64>() / self.recent.len().max(1) as f64
    }
}
