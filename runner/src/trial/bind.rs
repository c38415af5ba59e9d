//! Completing a trial with what only its data and the machine know: the
//! vocabulary size (unless the experiment sets it), the steps
//! `train.epochs` take over the training examples (and so the steps of
//! `train.warmup_fraction`), and the devices it trains on. `run` binds each
//! trial to its prepared dataset; `plan` and `bench`, which read no corpus,
//! bind to the vocabulary size they can know. Every error names its key.
use super::TrialConfig;
use crate::error::InputError;
use crate::settings::DeviceSpec;
use tch::Device;

/// What the data says about a trial's configuration.
pub struct Facts {
    /// The tokenizer's vocabulary size.
    pub vocab: i64,
    /// Labelled training examples, when fine-tuning.
    pub train_examples: Option<usize>,
}

/// Fills in what the data decides: `model.vocab_size` when unset (a set one
/// must hold the tokenizer's vocabulary), `train.steps` from `train.epochs`,
/// then `train.warmup_steps` from `train.warmup_fraction`. Errors are keyed,
/// for the caller to locate.
pub fn complete(config: &mut TrialConfig, facts: &Facts) -> Result<(), InputError> {
    match given_vocab(config) {
        None => {
            config.model.insert("vocab_size".into(), facts.vocab.into());
        }
        Some(given) if given < facts.vocab => {
            return Err(InputError::at_key("model.vocab_size", format!("{given} is smaller than the tokenizer's vocabulary ({})", facts.vocab)));
        }
        Some(_) => {}
    }
    let train = &mut config.train;
    if let (Some(examples), Some(epochs)) = (facts.train_examples, train.epochs) {
        train.steps = epochs * examples.div_ceil(train.batch_size as usize) as i64;
        train.warmup_steps = train.warmup_steps.min(train.steps);
    }
    if let Some(fraction) = train.warmup_fraction {
        train.warmup_steps = (fraction * train.steps as f64).round() as i64;
    }
    Ok(())
}

/// The vocabulary size the experiment sets (`model.vocab_size`): what
/// `plan` and `bench`, which read no corpus, take before any estimate.
pub fn given_vocab(config: &TrialConfig) -> Option<i64> {
    config.model.get("vocab_size").and_then(|v| v.as_i64())
}

/// The device `train.device` names, on this machine.
pub fn device(config: &TrialConfig) -> Result<Device, InputError> {
    let problem = |m| InputError::at_key("train.device", m);
    DeviceSpec::parse(&config.train.device).map_err(problem)?.resolve().map_err(problem)
}

/// The devices of the trial's `train.devices` ranks, on this machine:
/// all on the CPU, or `train.device`'s GPU and the ones after it. When a
/// launcher started the ranks as processes of their own (`spread`), only
/// this one's, the first.
pub fn devices(config: &TrialConfig, spread: bool) -> Result<Vec<Device>, InputError> {
    let first = device(config)?;
    let ranks = config.train.ranks();
    let problem = |m: String| Err(InputError::at_key("train.devices", m));
    if ranks > 1 && !torch_ops::distributed::has_gloo() {
        return problem("this bertlab was built without Gloo's headers, which c10d's process groups need: install Debian's libgloo-dev (`make gloo`, or apt-get install libgloo-dev) and build again".into());
    }
    // Between GPUs the ranks sum through NCCL (under a launcher even one
    // rank does: its group is NCCL's).
    if (ranks > 1 || spread) && first.is_cuda() && !torch_ops::distributed::has_nccl() {
        return problem("this bertlab was built without NCCL's and CUDA's headers (the nvidia-nccl, nvidia-cuda-crt and nvidia-cuda-cccl wheels `make setup` installs beside torch), which training on several GPUs needs: build again where they are".into());
    }
    if spread {
        return Ok(vec![first]);
    }
    match first {
        Device::Cuda(index) => {
            let count = tch::Cuda::device_count().max(0) as usize;
            if index + ranks > count {
                return problem(format!("{ranks} devices from cuda:{index} are cuda:{index} to cuda:{}; this machine has {count} GPUs", index + ranks - 1));
            }
            Ok((index..index + ranks).map(Device::Cuda).collect())
        }
        other => Ok(vec![other; ranks]),
    }
}
