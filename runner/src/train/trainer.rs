//! The training loop of one trial: seed, build the model, then until the
//! last step or the end of the time budget take a batch and an
//! optimisation step, and report `train/loss` and `train/lr`; evaluate at
//! step 0, every `eval_every` steps and at the end; save the weights as
//! `model.safetensors`. Losses are read back 25 steps at a time, never
//! inside a step, so the GPU waits for the host only at those reads and at
//! evaluations. Checkpoints are written as [`super::checkpoint`] plans
//! them, and a trial resumed from one goes on exactly where it stood; a
//! signal stops the loop after its step, with a checkpoint. Pretraining
//! lives here (masked batches drawn on another thread); fine-tuning in
//! [`super::finetune`], on the same loop. Over several ranks
//! ([`super::ranks`]) every rank runs this loop in step with the others,
//! and rank 0 records and writes.
use super::checkpoint::{Place, Plan, Saved};
use super::objective::{EvalResult, Pretraining};
use super::schedule::Schedule;
use super::out_of_memory;
use super::ranks::{Agreed, Ranks};
use super::step::Stepper;
use crate::data::batches::{eval_batches, prefetched, Batch, TrainBatches};
use crate::data::epochs::Cursor;
use crate::data::masking::Masker;
use crate::config::TrainSection;
use crate::data::{Dataset, Examples, Packed};
use crate::trial::TrialConfig;
use crate::model_dir::{self, ModelDir};
use anyhow::{bail, Context, Result};
use models::heads::NextSentenceHead;
use std::collections::BTreeMap;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};
use tch::{nn::VarStore, Device, Kind, Tensor};

/// What a trial reports while it runs.
pub trait Observer {
    /// One point of a metric series (`train/loss`, `eval/loss`, ...).
    fn metric(&mut self, step: i64, key: &str, value: f64);
    /// A step finished; for progress display.
    fn step_done(&mut self, _step: i64) {}
    /// Something the trial's log should say about how it trains, at `step`.
    fn note(&mut self, _step: i64, _text: &str) {}
    /// The loss of a step, once read back from the device (in batches,
    /// after the step itself).
    fn loss_read(&mut self, _step: i64, _loss: f64) {}
    /// The checkpoint at `step` is written in full at `staged`, after every
    /// point up to that step was reported: the recorder puts it in place
    /// once those points are durable (so a checkpoint never runs ahead of
    /// the record), or fails when it cannot.
    fn checkpoint(&mut self, step: i64, staged: &Path) -> Result<()>;
}

/// Why a trial stopped before its end through no fault of its own: it is
/// recorded `interrupted`, keeps its checkpoint, and a re-run resumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// A signal asked the run to stop (the signal's name).
    Signal(String),
    /// A checkpoint or record could not be written (a full disk, a file
    /// size limit): the error, naming the file.
    Storage(String),
    /// Early stopping's rung (a step) was reached and checkpointed: the
    /// sweep decides whether the trial goes on.
    Rung(i64),
    /// A rank of a trial on several devices died or hung (which one and
    /// how): the others stop, and the trial goes on from its checkpoint.
    Peer(String),
    /// Its checkpoint cannot be resumed by this run exactly (trained on
    /// another number of devices): kept, for a run that can.
    Resume(String),
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Signal(signal) => write!(f, "stopped by {signal}"),
            Stopped::Storage(error) => f.write_str(error),
            Stopped::Rung(step) => write!(f, "reached the rung at step {step}"),
            Stopped::Peer(what) | Stopped::Resume(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for Stopped {}

impl Stopped {
    /// The rung a trial's result says it paused at.
    pub fn rung_of(result: &Result<Outcome>) -> Option<i64> {
        match result.as_ref().err()?.downcast_ref::<Stopped>()? {
            Stopped::Rung(step) => Some(*step),
            _ => None,
        }
    }
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

/// Where and how a trial trains: on `device`, alone or as one of `ranks`;
/// its files in `dir`; from the checkpoint `resume` when given; to the
/// early-stopping rung `until` when given (then it ends with
/// [`Stopped::Rung`]).
pub struct Placement<'a> {
    pub device: Device,
    pub ranks: Option<&'a Ranks>,
    pub dir: &'a Path,
    pub resume: Option<&'a Path>,
    pub until: Option<i64>,
}

impl Placement<'_> {
    /// Whether this process writes the trial's files (alone, or rank 0).
    pub fn leads(&self) -> bool {
        self.ranks.is_none_or(Ranks::leads)
    }

    /// This process's rank (0 alone).
    pub fn rank(&self) -> usize {
        self.ranks.map_or(0, Ranks::rank)
    }
}

/// Trains the trial on its examples: masked-LM pretraining on a corpus, or
/// fine-tuning ([`super::finetune`]) on labelled examples, as `placement`
/// says.
pub fn train(config: &TrialConfig, data: &Dataset, placement: &Placement, observer: &mut dyn Observer) -> Result<Outcome> {
    let plan = Plan::new(config, &data.digest, placement.dir).pausing_at(placement.until);
    let saved = placement.resume.map(|path| plan.load(path)).transpose()?;
    match &data.examples {
        Examples::Pretraining { train, eval } => pretrain(config, data, (train, eval), placement, (&plan, saved), observer),
        Examples::Labeled(labeled) => super::finetune::train(config, &data.vocab, labeled, placement, (&plan, saved), observer),
    }
}

/// A trial's checkpoint plan, and the checkpoint it resumes from.
pub(super) type Checkpoints<'a> = (&'a Plan, Option<Saved>);

/// What the training loop asks of an objective (pretraining, fine-tuning).
pub(super) trait Objective {
    /// Trains on the next batch at learning rate `lr`; returns its loss
    /// (still on the device) and its tokens.
    fn step(&mut self, lr: f64) -> Result<(Tensor, usize)>;
    /// Scores the held-out examples at `step`, reporting to `observer`.
    fn evaluate(&mut self, step: i64, observer: &mut dyn Observer) -> Result<()>;
    /// The live tensors of its training state (weights, optimiser, loss
    /// scaler), named: what a checkpoint saves and a resume copies into.
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Where its batch stream stands, after the last batch trained on.
    fn cursor(&self) -> serde_json::Value;
    /// Examples per forward pass now (smaller than the batch with
    /// accumulation, and after running out of memory).
    fn micro_batch(&self) -> usize;
}

/// The state tensors every objective has: the model's variables and the
/// stepper's.
pub(super) fn state_of(vs: &VarStore, stepper: &Stepper) -> Vec<(String, Tensor)> {
    let mut state: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(name, t)| (format!("model/{name}"), t)).collect();
    state.sort_by(|a, b| a.0.cmp(&b.0));
    state.extend(stepper.state());
    state
}

struct Pretrainer<'a> {
    model: &'a Pretraining,
    vs: &'a VarStore,
    stepper: Stepper<'a>,
    next_batch: &'a mut dyn FnMut() -> (Batch, Cursor),
    cursor: Cursor,
    held_out: &'a [Batch],
    device: Device,
    /// Rows per forward pass: `train.micro_batch_size` (else the batch),
    /// halved for good when a step runs out of memory.
    micro: usize,
    last: Option<EvalResult>,
}

impl Objective for Pretrainer<'_> {
    fn step(&mut self, lr: f64) -> Result<(Tensor, usize)> {
        let (batch, cursor) = (self.next_batch)();
        self.cursor = cursor;
        let (tokens, model, device, stepper) = (batch.tokens, self.model, self.device, &mut self.stepper);
        let alone = stepper.ranks().is_none();
        let loss = out_of_memory::with_retries(&mut self.micro, device, alone, |micro| pretraining_step(stepper, model, batch.shallow_clone(), micro, device, lr))?;
        Ok((loss, tokens))
    }

    fn evaluate(&mut self, step: i64, observer: &mut dyn Observer) -> Result<()> {
        let result = self.stepper.precision().forward(self.device, || self.model.evaluate(self.held_out))?;
        observer.metric(step, "eval/loss", result.loss);
        observer.metric(step, "eval/accuracy", result.accuracy);
        if let Some((loss, accuracy)) = result.next_sentence {
            observer.metric(step, "eval/nsp_loss", loss);
            observer.metric(step, "eval/nsp_accuracy", accuracy);
        }
        self.last = Some(result);
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        state_of(self.vs, &self.stepper)
    }

    fn cursor(&self) -> serde_json::Value {
        serde_json::to_value(&self.cursor).expect("a cursor serialises")
    }

    fn micro_batch(&self) -> usize {
        self.micro
    }
}

/// One optimisation step of masked-LM pretraining on `batch` (drawn on the
/// host), moved to `device`; over the stepper's ranks, on this rank's rows
/// of it; cut into micro-batches of `micro` rows when it has more, each
/// trained on as its share of the whole batch's loss.
pub(super) fn pretraining_step(stepper: &mut Stepper, model: &Pretraining, batch: Batch, micro: usize, device: Device, lr: f64) -> Result<Tensor> {
    let whole = (batch.masked(), batch.pairs());
    let ranks = stepper.ranks();
    let mine = match ranks {
        Some(ranks) => {
            let rows = batch.rows_len();
            batch.rows(ranks.shard(rows))
        }
        None => batch,
    };
    let parts = mine.split(micro);
    if parts.len() == 1 && ranks.is_none() {
        let batch = parts.into_iter().next().expect("one part").to(device);
        return stepper.step(1, |_| model.loss(&batch), lr);
    }
    let count = parts.len();
    let mut parts = parts.into_iter().map(|part| part.to(device));
    stepper.step(count, |_| model.loss_share(&parts.next().expect("one micro-batch per part"), whole), lr)
}

fn pretrain(
    config: &TrialConfig,
    data: &Dataset,
    (train_set, eval_set): (&Packed, &Packed),
    placement: &Placement,
    (plan, mut saved): Checkpoints,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let plugin = models::registry::find(&config.plugin).context("unknown plugin")?;
    let train = &config.train;
    let device = placement.device;
    let (vs, model) = build(config, device)?;
    if let Some(ranks) = placement.ranks {
        ranks.seed_dropout(config.seed);
    }
    if let Some(init) = config.init.as_ref().filter(|_| saved.is_none()) {
        let report = ModelDir::find(init)?.load(&vs)?;
        if !report.fresh.is_empty() {
            tracing::warn!("{init} has no {}: initialised fresh", report.fresh.join(", "));
        }
    }
    let params = Pretraining::param_count(plugin, &config.model, config.data.nsp)?;
    let flops_per_token = plugin.flops_per_token(&config.model, config.data.seq_len)?;
    let stepper = Stepper::new(&vs, train, plugin, placement.ranks)?;

    let vocab = &data.vocab;
    let masker = Masker::new(config.data.mask_prob, vocab.mask, vocab.size() as u32, &vocab.special);
    let batch_size = train.batch_size as usize;
    let held_out = eval_batches(eval_set, &masker, batch_size, device);
    let mut source = TrainBatches::new(train_set, &masker, batch_size, config.seed);
    if let Some(saved) = &mut saved {
        saved.restore(state_of(&vs, &stepper), device, placement.rank())?;
        source.restore(&saved.cursor()?)?;
    }
    let cursor = source.cursor();
    let place = saved.map(|s| s.place);
    let (trained, last) = prefetched(source, device, |next_batch| -> Result<_> {
        let mut objective = Pretrainer { model: &model, vs: &vs, stepper, next_batch, cursor, held_out: &held_out, device, micro: train.micro_batch_rows(), last: None };
        let trained = run_steps(train, device, placement.ranks, &mut objective, plan, place, observer)?;
        Ok((trained, objective.last.expect("the loop evaluates at the end")))
    })?;
    if placement.leads() {
        model_dir::save_weights(&vs, placement.dir)?;
        data.vocab.save(&placement.dir.join(model_dir::TOKENIZER)).context("saving the tokenizer")?;
    }

    let mut metrics = trained.metrics(train);
    metrics.insert("eval/loss".into(), last.loss);
    metrics.insert("eval/accuracy".into(), last.accuracy);
    if let Some((loss, accuracy)) = last.next_sentence {
        metrics.insert("eval/nsp_loss".into(), loss);
        metrics.insert("eval/nsp_accuracy".into(), accuracy);
    }
    Ok(Outcome { metrics, params, tokens: trained.tokens as i64, flops: flops_per_token as f64 * trained.tokens as f64 })
}

/// The micro-batch a trial ran with, in `trials.parquet`.
pub const MICRO_BATCH_METRIC: &str = "train/micro_batch_size";

/// What [`run_steps`] measured.
pub(super) struct Trained {
    pub tokens: usize,
    pub tokens_per_s: f64,
    /// The mean of the last [`FINAL_LOSS_WINDOW`] training losses.
    pub final_loss: f64,
    /// Examples per forward pass at the end.
    pub micro_batch: usize,
}

impl Trained {
    /// `train/loss` and `perf/tokens_per_s`, for the outcome; and
    /// `train/micro_batch_size` when steps were cut into micro-batches (as
    /// set, or halved after running out of memory).
    pub fn metrics(&self, train: &TrainSection) -> BTreeMap<String, f64> {
        let mut metrics = BTreeMap::from([("train/loss".to_string(), self.final_loss), ("perf/tokens_per_s".to_string(), self.tokens_per_s)]);
        if self.micro_batch < train.rank_rows() {
            metrics.insert(MICRO_BATCH_METRIC.to_string(), self.micro_batch as f64);
        }
        metrics
    }
}

/// The loop every objective shares: until the last step or the end of the
/// time budget, the objective trains on its next batch at the schedule's
/// learning rate; losses are read back [`LOSS_READ_EVERY`] steps at a time
/// and reported as `train/loss` and `train/lr`; the objective evaluates at
/// step 0, every `eval_every` steps and at the end, and that time does not
/// count against the budget or the throughput. Checkpoints follow `plan`;
/// from a checkpoint's `place` the loop goes on where it stood. A stop
/// request (a signal) ends it after the current step, with a checkpoint;
/// so does the plan's rung, which is always an evaluation step. Over
/// `ranks`, the stop request and the clock (the budget's, the schedule's,
/// the checkpoints') are agreed after each step, so every rank takes the
/// same decisions at the same step.
pub(super) fn run_steps(
    train: &TrainSection,
    device: Device,
    ranks: Option<&Ranks>,
    objective: &mut dyn Objective,
    plan: &Plan,
    place: Option<Place>,
    observer: &mut dyn Observer,
) -> Result<Trained> {
    let resumed = place.unwrap_or_default();
    if resumed.step == 0 {
        objective.evaluate(0, observer)?;
    }
    let started = Instant::now();
    let trained_before = Duration::from_secs_f64(resumed.trained_s);
    let mut eval_time = Duration::ZERO;
    let mut tokens = resumed.tokens;
    let mut losses = Losses { pending: Vec::new(), recent: resumed.recent_losses };
    let schedule = Schedule::new(train);
    let mut done = resumed.step;
    let mut micro_batch = objective.micro_batch();
    let training = |eval_time: Duration| trained_before + started.elapsed() - eval_time;
    // The training time the schedule, the budget and the checkpoints go by.
    let mut clock = trained_before;
    let mut last_checkpoint = clock;
    while !schedule.finished(done, clock) {
        let lr = schedule.lr(done, clock);
        let (loss, batch_tokens) = objective.step(lr)?;
        tokens += batch_tokens;
        done += 1;
        if objective.micro_batch() != micro_batch {
            micro_batch = objective.micro_batch();
            observer.note(done, &format!("out of memory: from step {done} on, steps run in micro-batches of {micro_batch} examples"));
        }
        losses.push(done, loss, lr);
        observer.step_done(done);
        let agreed = agree(ranks, training(eval_time))?;
        clock = agreed.clock;
        let last = schedule.finished(done, clock);
        let evaluates = train.eval_every > 0 && done % train.eval_every == 0 && !last;
        if losses.pending() >= LOSS_READ_EVERY || evaluates || last {
            losses.read(train.log_every, last, observer)?;
        }
        if evaluates {
            let eval_started = Instant::now();
            objective.evaluate(done, observer)?;
            eval_time += eval_started.elapsed();
            // This attempt's throughput: tokens and time since it began.
            observer.metric(done, "perf/tokens_per_s", (tokens - resumed.tokens) as f64 / (training(eval_time) - trained_before).as_secs_f64());
        }
        let rung = !last && plan.pauses_at(done);
        if !last && (rung || plan.enabled() && (agreed.stop.is_some() || plan.due(done, evaluates, clock.saturating_sub(last_checkpoint)))) {
            losses.read(train.log_every, false, observer)?;
            super::device::synchronize(device);
            let place = Place { step: done, tokens, trained_s: clock.as_secs_f64(), wall_s: resumed.wall_s + started.elapsed().as_secs_f64(), recent_losses: losses.recent.clone() };
            plan.save(&place, &objective.cursor(), objective.state(), device, ranks, observer).map_err(|e| match e.downcast::<Stopped>() {
                Ok(lost) => lost,
                Err(e) => Stopped::Storage(format!("{e:#}")),
            })?;
            last_checkpoint = clock;
        }
        if rung {
            return Err(Stopped::Rung(done).into());
        }
        if let Some(signal) = agreed.stop.filter(|_| !last) {
            return Err(Stopped::Signal(signal).into());
        }
    }
    super::device::synchronize(device);
    let training_time = training(eval_time) - trained_before;
    objective.evaluate(done, observer)?;
    let tokens_per_s = (tokens - resumed.tokens) as f64 / training_time.as_secs_f64();
    observer.metric(done, "perf/tokens_per_s", tokens_per_s);
    Ok(Trained { tokens, tokens_per_s, final_loss: losses.final_loss(), micro_batch })
}

/// After a step: whether to stop, and the training clock, as this process
/// sees them alone, or as the ranks agree (rank 0's clock).
fn agree(ranks: Option<&Ranks>, clock: Duration) -> Result<Agreed> {
    let signal = crate::signals::requested();
    match ranks {
        None => Ok(Agreed { stop: signal.map(|s| s.name().to_string()), clock }),
        Some(ranks) => ranks.agree(signal, clock),
    }
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
        if pending.is_empty() {
            return Ok(());
        }
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
