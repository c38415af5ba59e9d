//! The training loop of one trial: seed, build the model, then for each step
//! draw a masked batch, take an AdamW step on the masked-LM loss, and report
//! `train/loss` and `train/lr`; evaluate at step 0, every `eval_every` steps
//! and at the end; save the weights as `model.safetensors`.
use super::eval::{evaluate, masked_loss};
use super::optimizer::AdamW;
use super::schedule::linear_warmup_decay;
use crate::data::batches::{eval_batches, TrainBatches};
use crate::data::masking::Masker;
use crate::data::Dataset;
use crate::sweep::TrialConfig;
use crate::model_dir::ModelDir;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tch::{nn::VarStore, Device};

/// What a trial reports while it runs.
pub trait Observer {
    /// One point of a metric series (`train/loss`, `eval/loss`, ...).
    fn metric(&mut self, step: i64, key: &str, value: f64);
    /// A step finished; for progress display.
    fn step_done(&mut self, _step: i64, _loss: f64) {}
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

pub fn train(config: &TrialConfig, data: &Dataset, device: Device, trial_dir: &Path, observer: &mut dyn Observer) -> Result<Outcome> {
    let plugin = models::registry::find(&config.plugin).context("unknown plugin")?;
    let train = &config.train;
    tch::manual_seed(config.seed as i64);
    let vs = VarStore::new(device);
    let model = plugin.build(&vs.root(), &config.model)?;
    if let Some(init) = &config.init {
        let report = ModelDir::open(std::path::Path::new(init))?.load(&vs)?;
        if !report.fresh.is_empty() {
            tracing::warn!("{init} has no {}: initialised fresh", report.fresh.join(", "));
        }
    }
    let params = plugin.param_count(&config.model)?;
    let flops_per_token = plugin.flops_per_token(&config.model, config.data.seq_len)?;
    let mut optimizer = AdamW::new(&vs, train);

    let vocab = &data.vocab;
    let masker = Masker::new(config.data.mask_prob, vocab.mask, vocab.size() as u32, &vocab.special);
    let batch_size = train.batch_size as usize;
    let mut batches = TrainBatches::new(&data.train, &masker, batch_size, config.seed, device);
    let held_out = eval_batches(&data.eval, &masker, batch_size, device);

    let report_eval = |step: i64, observer: &mut dyn Observer| {
        let result = evaluate(model.as_ref(), &held_out);
        observer.metric(step, "eval/loss", result.loss);
        observer.metric(step, "eval/accuracy", result.accuracy);
        result
    };
    report_eval(0, observer);

    let (mut tokens, mut training_time) = (0usize, Duration::ZERO);
    let mut recent_losses = Vec::new();
    for step in 0..train.steps {
        let started = Instant::now();
        let batch = batches.next_batch();
        let lr = linear_warmup_decay(train.lr, step, train.warmup_steps, train.steps);
        optimizer.zero_grad();
        let loss = masked_loss(model.as_ref(), &batch);
        loss.backward();
        optimizer.clip_grad_norm(train.grad_clip);
        optimizer.step(lr);
        let loss = f64::try_from(&loss)?;
        training_time += started.elapsed();
        tokens += batch.tokens;

        let done = step + 1;
        if !loss.is_finite() {
            bail!("train/loss is {loss} at step {done}: training diverged (try a lower train.lr or more train.warmup_steps)");
        }
        recent_losses.push(loss);
        if recent_losses.len() > FINAL_LOSS_WINDOW {
            recent_losses.remove(0);
        }
        if done % train.log_every == 0 || done == train.steps {
            observer.metric(done, "train/loss", loss);
            observer.metric(done, "train/lr", lr);
        }
        observer.step_done(done, loss);
        if train.eval_every > 0 && done % train.eval_every == 0 && done != train.steps {
            report_eval(done, observer);
            observer.metric(done, "perf/tokens_per_s", tokens as f64 / training_time.as_secs_f64());
        }
    }
    let last = report_eval(train.steps, observer);
    let tokens_per_s = tokens as f64 / training_time.as_secs_f64();
    observer.metric(train.steps, "perf/tokens_per_s", tokens_per_s);
    models::hf::save_weights(&vs, &trial_dir.join("model.safetensors")).map_err(anyhow::Error::msg).context("saving the checkpoint")?;
    data.vocab.save(&trial_dir.join("tokenizer.json")).context("saving the tokenizer")?;

    let train_loss = recent_losses.iter().sum::<f64>() / recent_losses.len().max(1) as f64;
    let metrics = BTreeMap::from([
        ("train/loss".to_string(), train_loss),
        ("eval/loss".to_string(), last.loss),
        ("eval/accuracy".to_string(), last.accuracy),
        ("perf/tokens_per_s".to_string(), tokens_per_s),
    ]);
    Ok(Outcome { metrics, params, tokens: tokens as i64, flops: flops_per_token as f64 * tokens as f64 })
}
