//! A trial: one resolved configuration and seed ([`TrialConfig`]), named by
//! a stable hash of everything that can change its numbers, with the sweep
//! values that produced it and how people read them. The sweep makes
//! trials, training runs them, the store records them.
pub mod bind;

use crate::config::{DataSection, Task, TrainSection};
use models::KnobValues;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One point of a sweep: a value for each swept dotted key, in axis order.
pub type Point = Vec<(String, Value)>;

/// Everything one training run needs, as written to its `config.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialConfig {
    /// The plugin name (`[experiment] model`).
    pub plugin: String,
    /// `[experiment] task`; left out when it is masked-LM pretraining, so
    /// pretraining trial ids stay as they were.
    #[serde(default, skip_serializing_if = "Task::is_mlm")]
    pub task: Task,
    pub seed: u64,
    /// The plugin's knobs, defaults filled in. `vocab_size` is added once
    /// the tokenizer is known, unless the experiment sets it.
    pub model: KnobValues,
    /// `[model] init`: the trial folder or Hugging Face folder whose weights
    /// the model starts from (its knobs are already in `model`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    pub data: DataSection,
    pub train: TrainSection,
}

#[derive(Debug, Clone)]
pub struct Trial {
    pub id: String,
    /// The values this trial's sweep point sets, by dotted key.
    pub swept: Point,
    /// The values `[derive]` computed for it.
    pub derived: Point,
    pub config: TrialConfig,
    /// A fine-tuning trial's task as its data names it (the GLUE task, or
    /// the training file's name), once bound to its examples ([`bind`]).
    pub task: Option<String>,
}

impl Trial {
    /// `model.layers=2 model.hidden=128 seed=0`, for logs and progress bars.
    pub fn label(&self) -> String {
        label(&self.swept, self.config.seed)
    }
}

pub fn label(swept: &Point, seed: u64) -> String {
    let mut parts: Vec<String> = swept.iter().map(|(k, v)| format!("{k}={}", short(v))).collect();
    parts.push(format!("seed={seed}"));
    parts.join(" ")
}

/// A value as a person reads it: floats to four significant digits.
pub fn short(value: &Value) -> String {
    match value.as_f64() {
        Some(x) if !value.is_i64() && !value.is_u64() => {
            let text = if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e5) {
                let (mantissa, exponent) = format!("{x:.3e}").split_once('e').map(|(m, e)| (m.to_string(), e.to_string())).expect("e notation");
                return format!("{}e{exponent}", trim_zeros(&mantissa));
            } else {
                let digits = (3 - x.abs().max(1e-3).log10().floor() as i32).clamp(0, 6) as usize;
                format!("{x:.digits$}")
            };
            trim_zeros(&text)
        }
        _ => value.to_string(),
    }
}

fn trim_zeros(text: &str) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text.to_string()
    }
}

impl TrialConfig {
    /// Stable across runs and machines: a hash of the canonical JSON of the
    /// configuration (keys sorted, so their order in the file does not
    /// matter) minus what does not change the result's meaning (the device
    /// it ran on, how often it was checkpointed), then the seed.
    pub fn id(&self) -> String {
        id_with_seed(self.identity(), self.seed)
    }

    /// The hash state of everything but the seed, computed once per sweep
    /// point and shared by its seeds.
    pub fn identity(&self) -> Sha256 {
        #[derive(Serialize)]
        struct Identity<'a> {
            plugin: &'a str,
            #[serde(skip_serializing_if = "Task::is_mlm")]
            task: Task,
            model: &'a KnobValues,
            #[serde(skip_serializing_if = "Option::is_none")]
            init: Option<&'a str>,
            data: &'a DataSection,
            train: &'a TrainSection,
        }
        let train = self.train.without_bookkeeping();
        let mut hasher = Sha256::new();
        let identity = Identity { plugin: &self.plugin, task: self.task, model: &self.model, init: self.init.as_deref(), data: &self.data, train: &train };
        serde_json::to_writer(HashWriter(&mut hasher), &identity).expect("configs serialise");
        hasher
    }
}

/// The id of the seed `seed` of the configuration whose hash state
/// (everything but the seed) is `identity`.
pub fn id_with_seed(mut identity: Sha256, seed: u64) -> String {
    identity.update(format!("/seed={seed}"));
    identity.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Feeds serialised bytes straight into a hash, without building a string.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TrialConfig {
        TrialConfig { plugin: "bert".into(), task: Task::Mlm, seed: 0, model: KnobValues::new(), init: None, data: DataSection::default(), train: TrainSection::default() }
    }

    #[test]
    fn the_id_leaves_out_the_device_and_the_checkpoint_settings_but_not_the_numbers() {
        let base = config().id();
        let mut moved = config();
        moved.train.device = "cuda:1".into();
        moved.train.checkpoint_every = Some(100);
        moved.train.keep_checkpoints = 3;
        assert_eq!(moved.id(), base);
        let mut other = config();
        other.train.lr *= 2.0;
        assert_ne!(other.id(), base);
    }
}
