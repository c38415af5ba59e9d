//! Times training steps of one configuration (`bertlab bench`): the same
//! step the trainer takes, on random full-length sequences (a benchmark
//! measures the step, not a corpus), after untimed warm-up steps that let
//! libtorch pick its kernels and fill its allocator's cache. Over several
//! ranks each takes its share of every batch, as in training, and rank 0's
//! measurement is the step's.
use super::precision::Precision;
use super::ranks::Ranks;
use super::step::Stepper;
use super::trainer::pretraining_step;
use crate::data::batches::{prefetched, TrainBatches};
use crate::data::masking::Masker;
use crate::data::Packed;
use crate::trial::TrialConfig;
use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use std::time::Instant;
use tch::Device;

/// Token ids below this are reserved, as in the tokenizers bertlab trains:
/// [PAD], [UNK], [CLS], [SEP], [MASK].
const SPECIAL_IDS: u32 = 5;
const MASK_ID: u32 = 4;
/// Distinct sequences the batches are drawn from.
const ROWS: usize = 1024;

pub struct Measurement {
    pub step_ms: f64,
    pub tokens_per_s: f64,
    pub params: i64,
    pub flops_per_token: i64,
    pub precision: Precision,
    /// Peak bytes on the device: the CUDA allocator's peak, or the
    /// process's peak resident memory on the CPU.
    pub peak_memory_bytes: i64,
    pub final_loss: f64,
}

pub fn measure(config: &TrialConfig, device: Device, ranks: Option<&Ranks>, warmup: i64, steps: i64) -> Result<Measurement> {
    let plugin = models::registry::find(&config.plugin).context("unknown plugin")?;
    let vocab = config.model.get("vocab_size").and_then(|v| v.as_i64()).context("model.vocab_size is set")? as u32;
    let seq_len = config.data.seq_len as usize;
    let (vs, model) = super::trainer::build(config, device)?;
    let mut stepper = Stepper::new(&vs, &config.train, plugin, ranks)?;

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
    let ids = (0..ROWS * seq_len).map(|_| rng.random_range(SPECIAL_IDS..vocab)).collect();
    let packed = Packed { seq_len, ids, lengths: vec![seq_len as u32; ROWS], pairs: None };
    let special: Vec<u32> = (0..SPECIAL_IDS).collect();
    let masker = Masker::new(config.data.mask_prob, MASK_ID, vocab, &special);
    let source = TrainBatches::new(&packed, &masker, config.train.batch_size as usize, config.seed);
    let lr = config.train.lr;

    if let Device::Cuda(index) = device {
        torch_ops::reset_peak_memory(index)?;
    }
    let (elapsed, final_loss) = prefetched(source, device, |next_batch| -> Result<_> {
        let micro = config.train.micro_batch_rows();
        let mut step = || pretraining_step(&mut stepper, &model, next_batch().0, micro, device, lr);
        for _ in 0..warmup {
            let _loss = step()?;
        }
        super::device::synchronize(device);
        let started = Instant::now();
        let mut loss = None;
        for _ in 0..steps {
            loss = Some(step()?);
        }
        super::device::synchronize(device);
        let elapsed = started.elapsed().as_secs_f64();
        Ok((elapsed, loss.map_or(f64::NAN, |l| f64::try_from(l).unwrap_or(f64::NAN))))
    })?;
    let tokens = (steps * config.train.batch_size) as f64 * seq_len as f64;
    Ok(Measurement {
        step_ms: elapsed * 1000.0 / steps as f64,
        tokens_per_s: tokens / elapsed,
        params: super::objective::Pretraining::param_count(plugin, &config.model, config.data.nsp)?,
        flops_per_token: plugin.flops_per_token(&config.model, config.data.seq_len)?,
        precision: stepper.precision(),
        peak_memory_bytes: peak_memory(device)?,
        final_loss,
    })
}

fn peak_memory(device: Device) -> Result<i64> {
    Ok(match device {
        Device::Cuda(index) => torch_ops::peak_memory(index)?,
        _ => peak_resident_bytes(),
    })
}

/// The process's peak resident set (`VmHWM`), in bytes.
pub fn peak_resident_bytes() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok());
    kib.unwrap_or(0) * 1024
}
