//! Fine-tuning one trial: the plugin's encoder with a classification or
//! regression head on the pooled `[CLS]` state (BERT's pooler, loaded from
//! the checkpoint when it has one, and a fresh classifier), started from
//! `model.init`, trained on the labelled examples, and scored on each dev
//! set with the task's metrics (`eval/<metric>`) and its GLUE score
//! (`eval/score`: the mean of those metrics, in points out of 100).
use super::out_of_memory;
use super::step::Stepper;
use super::trainer::{run_steps, state_of, Checkpoints, Objective, Observer, Outcome, Placement};
use crate::data::labeled::batches::{batch, tokens, LabeledBatch, TrainRows};
use crate::data::labeled::{Labeled, Labels, Split};
use crate::data::Vocab;
use crate::model_dir::{self, ModelDir};
use crate::trial::TrialConfig;
use anyhow::{Context, Result};
use models::heads::{self, SequenceClassifier};
use std::collections::{BTreeMap, HashSet};
use tch::{nn::VarStore, Device, Kind, Reduction, Tensor};

/// The class names of a fine-tuned classifier, in output order.
pub const LABELS: &str = "labels.json";

/// Examples per evaluation batch: no gradients are kept, so more fit.
const EVAL_BATCH: usize = 128;

/// The classifier's side of the training loop.
struct FineTuner<'a> {
    model: &'a SequenceClassifier,
    vs: &'a VarStore,
    stepper: Stepper<'a>,
    labeled: &'a Labeled,
    rows: TrainRows,
    regression: bool,
    device: Device,
    /// Rows per forward pass: `train.micro_batch_size` (else the batch),
    /// halved for good when a step runs out of memory.
    micro: usize,
    last: BTreeMap<String, f64>,
}

impl Objective for FineTuner<'_> {
    fn step(&mut self, lr: f64) -> Result<(Tensor, usize)> {
        let rows = self.rows.next_rows();
        let (model, regression, device, train, stepper) = (self.model, self.regression, self.device, &self.labeled.train, &mut self.stepper);
        let ranks = stepper.ranks();
        let whole = tokens(train, &rows);
        // Over several ranks, this rank's rows (the last batch of an epoch
        // may leave a rank none).
        let mine = match ranks {
            Some(ranks) => &rows[ranks.shard(rows.len())],
            None => &rows[..],
        };
        out_of_memory::with_retries(&mut self.micro, device, ranks.is_none(), |micro| {
            if micro >= rows.len() && ranks.is_none() {
                let batch = batch(train, &rows, regression, device);
                return Ok((stepper.step(1, |_| loss(model, &batch, regression, Reduction::Mean), lr)?, whole));
            }
            // Gradient accumulation: each micro-batch's summed loss over the
            // whole batch's examples (the last batch of an epoch may be short).
            let batches: Vec<LabeledBatch> = mine.chunks(micro).map(|chunk| batch(train, chunk, regression, device)).collect();
            let share = |b: &LabeledBatch| loss(model, b, regression, Reduction::Sum) / rows.len() as f64;
            Ok((stepper.step(batches.len(), |i| share(&batches[i]), lr)?, whole))
        })
    }

    fn evaluate(&mut self, step: i64, observer: &mut dyn Observer) -> Result<()> {
        let scores = self.stepper.precision().forward(self.device, || scores(self.model, self.labeled, self.regression, self.device))??;
        for (key, value) in &scores {
            observer.metric(step, key, *value);
        }
        self.last = scores;
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        state_of(self.vs, &self.stepper)
    }

    fn cursor(&self) -> serde_json::Value {
        serde_json::to_value(self.rows.cursor()).expect("a cursor serialises")
    }

    fn micro_batch(&self) -> usize {
        self.micro
    }
}

pub fn train(config: &TrialConfig, vocab: &Vocab, labeled: &Labeled, placement: &Placement, (plan, mut saved): Checkpoints, observer: &mut dyn Observer) -> Result<Outcome> {
    let regression = labeled.labels == Labels::Values;
    let plugin = models::registry::find(&config.plugin).context("unknown plugin")?;
    let device = placement.device;
    let (vs, model) = build(config, plugin, labeled.labels.outputs(), saved.is_none(), device)?;
    if let Some(ranks) = placement.ranks {
        ranks.seed_dropout(config.seed);
    }
    let stepper = Stepper::new(&vs, &config.train, plugin, placement.ranks)?;
    let mut rows = TrainRows::new(&labeled.train, config.train.batch_size as usize, config.seed);
    if let Some(saved) = &mut saved {
        saved.restore(state_of(&vs, &stepper), device, placement.rank())?;
        rows.restore(&saved.cursor()?)?;
    }
    let micro = config.train.micro_batch_rows();
    let mut objective = FineTuner { model: &model, vs: &vs, stepper, labeled, rows, regression, device, micro, last: BTreeMap::new() };
    let trained = run_steps(&config.train, device, placement.ranks, &mut objective, plan, saved.map(|s| s.place), observer)?;
    let last = objective.last;
    let dir = placement.dir;
    if placement.leads() {
        model_dir::save_weights(&vs, dir)?;
        vocab.save(&dir.join(model_dir::TOKENIZER)).context("saving the tokenizer")?;
        if let Labels::Classes(classes) = &labeled.labels {
            // What each output means, for `bertlab export`'s id2label.
            std::fs::write(dir.join(LABELS), serde_json::to_string(classes)?).context("saving the class names")?;
        }
    }

    let params = vs.trainable_variables().iter().map(Tensor::numel).sum::<usize>() as i64;
    // The plugin's count includes the MLM decoder at every token, which a
    // classifier does not run: count 6 FLOPs per non-embedding parameter
    // and token instead (Kaplan et al. 2020), attention scores left out.
    let embeddings = vs.variables().iter().filter(|(name, _)| plugin.is_embedding(name)).map(|(_, t)| t.numel()).sum::<usize>() as i64;
    let flops_per_token = 6 * (params - embeddings);
    let mut metrics = trained.metrics(&config.train);
    metrics.extend(last);
    Ok(Outcome { metrics, params, tokens: trained.tokens as i64, flops: flops_per_token as f64 * trained.tokens as f64 })
}

/// The classifier with `outputs` outputs, its encoder (and pooler, when
/// there is one) loaded from `model.init` when `init` (not when a
/// checkpoint will overwrite every weight); drawn on the CPU and moved,
/// like every model, so a seed gives the same head on every device.
fn build(config: &TrialConfig, plugin: &dyn models::Plugin, outputs: i64, init: bool, device: Device) -> Result<(VarStore, SequenceClassifier)> {
    tch::manual_seed(config.seed as i64);
    let mut vs = VarStore::new(Device::Cpu);
    let model = plugin.build_classifier(&vs.root(), &config.model, outputs)?;
    match config.init.as_ref().filter(|_| init) {
        Some(init) => {
            // Anything beyond the encoder is a head: the checkpoint's MLM or
            // next-sentence head is dropped, its pooler loaded when it has
            // one, and the classifier always starts fresh (even from a
            // checkpoint fine-tuned on another task). The encoder is what
            // the classifier holds besides its pooler and classifier.
            let encoder: HashSet<String> = vs.variables().into_keys().filter(|v| !plugin.is_pooler(v) && !heads::is_classifier(v)).collect();
            let report = ModelDir::find(init)?.load_with(&vs, &|v| !encoder.contains(v), &heads::is_classifier)?;
            tracing::info!("{init}: fresh {}; dropped {}", report.fresh.join(", "), report.dropped.join(", "));
        }
        None if config.init.is_none() => tracing::warn!("no model.init: fine-tuning from random weights"),
        None => {}
    }
    vs.set_device(device);
    Ok((vs, model))
}

/// The training loss over the batch's examples: their mean, or with
/// `Reduction::Sum` their sum (a micro-batch's share of a whole batch).
fn loss(model: &SequenceClassifier, batch: &LabeledBatch, regression: bool, reduction: Reduction) -> Tensor {
    let logits = model.logits(&batch.input, true).to_kind(Kind::Float);
    match (regression, reduction) {
        (true, reduction) => logits.squeeze_dim(-1).mse_loss(&batch.labels, reduction),
        (false, Reduction::Sum) => logits.cross_entropy_loss::<Tensor>(&batch.labels, None, Reduction::Sum, -100, 0.0),
        (false, _) => logits.cross_entropy_for_logits(&batch.labels),
    }
}

/// `eval/loss`, every metric of the task on each dev set (suffixed as the
/// set says) and `eval/score`, in eval mode (no dropout).
fn scores(model: &SequenceClassifier, labeled: &Labeled, regression: bool, device: Device) -> Result<BTreeMap<String, f64>> {
    let mut scores = BTreeMap::new();
    let mut scored = Vec::new();
    for split in &labeled.evals {
        let (loss, predicted) = predict(model, split, regression, device)?;
        scores.insert(format!("eval/loss{}", split.suffix), loss);
        for metric in &labeled.metrics {
            let value = metric.compute(&predicted, &split.labels);
            scores.insert(format!("eval/{}{}", metric.name(), split.suffix), value);
            scored.push(value);
        }
    }
    scores.insert("eval/score".into(), 100.0 * scored.iter().sum::<f64>() / scored.len().max(1) as f64);
    Ok(scores)
}

/// The mean loss over `split` and a prediction per example: the class
/// with the highest logit, or the value.
fn predict(model: &SequenceClassifier, split: &Split, regression: bool, device: Device) -> Result<(f64, Vec<f64>)> {
    tch::no_grad(|| {
        let rows: Vec<usize> = (0..split.len()).collect();
        let mut loss_sum = 0.0;
        let mut predicted = Vec::with_capacity(split.len());
        for chunk in rows.chunks(EVAL_BATCH) {
            let batch = batch(split, chunk, regression, device);
            let logits = model.logits(&batch.input, false).to_kind(Kind::Float);
            let (loss, prediction) = if regression {
                let values = logits.squeeze_dim(-1);
                (values.mse_loss(&batch.labels, Reduction::Sum), values.to_kind(Kind::Double))
            } else {
                let loss = logits.cross_entropy_loss::<Tensor>(&batch.labels, None, Reduction::Sum, -100, 0.0);
                (loss, logits.argmax(-1, false).to_kind(Kind::Double))
            };
            loss_sum += f64::try_from(loss)?;
            predicted.extend(Vec::<f64>::try_from(prediction.to_device(Device::Cpu))?);
        }
        Ok((loss_sum / split.len().max(1) as f64, predicted))
    })
}
