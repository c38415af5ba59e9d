//! A trial's whole training state at a step, and going on from it exactly
//! as if it had never stopped: the weights, the optimiser's moments and
//! step counts, the fp16 loss scaler, the default random generators of the
//! CPU and the trial's GPU (dropout draws from them), the data cursor (the
//! shuffling and masking stream), and the loop's own place (step, tokens,
//! training time spent of `train.budget`, the losses the final one
//! averages). The file is a safetensors checkpoint in the trial's folder
//! ([`runfolder::checkpoints`]); its metadata carries a fingerprint of the
//! trial (resolved configuration, plugin, examples, this format's version),
//! and a checkpoint whose fingerprint differs from the trial's is refused,
//! saying what differs. A trial trained on several ranks
//! ([`super::ranks`]) is checkpointed by rank 0 with every rank's
//! generators, and resumes on as many ranks.
use super::ranks::Ranks;
use super::trainer::Observer;
use super::Stopped;
use crate::config::schema::CHECKPOINT_AT_LEAST_EVERY;
use crate::trial::TrialConfig;
use anyhow::{bail, Context, Result};
use runfolder::checkpoints::{self, Stored};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tch::{Device, Kind, Tensor};

/// Bumped whenever what a checkpoint holds, or how it is named, changes:
/// an older checkpoint is then refused rather than half understood.
const FORMAT: u32 = 1;

/// Metadata keys of a checkpoint.
const FINGERPRINT: &str = "bertlab.fingerprint";
const PLACE: &str = "bertlab.place";
const CURSOR: &str = "bertlab.cursor";
/// The ranks that trained it, when more than one.
const RANKS: &str = "bertlab.ranks";

/// Where the training loop stood.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Place {
    /// Updates done.
    pub step: i64,
    pub tokens: usize,
    /// Training time spent (evaluations excluded): what `train.budget` counts.
    pub trained_s: f64,
    /// The trial's wall time so far, for its points' `wall_s`.
    pub wall_s: f64,
    /// The last losses, which the final `train/loss` averages.
    pub recent_losses: Vec<f64>,
}

/// When a trial checkpoints, and what its checkpoints must match.
pub struct Plan {
    dir: PathBuf,
    /// `None`: at every evaluation; `Some(0)`: never.
    every: Option<i64>,
    fingerprint: serde_json::Value,
    /// An early-stopping rung this attempt ends at, with a checkpoint.
    pause_at: Option<i64>,
    /// The ranks the trial trains on (`train.devices`).
    ranks: usize,
}

impl Plan {
    /// The plan of the trial `config`, training on examples whose digest is
    /// `examples`, in the trial folder `dir`.
    pub fn new(config: &TrialConfig, examples: &str, dir: &Path) -> Plan {
        let fingerprint = serde_json::json!({
            "format": FORMAT,
            "plugin": config.plugin,
            "task": config.task,
            "seed": config.seed,
            "model": config.model,
            "init": config.init,
            "data": config.data,
            "train": config.train.without_bookkeeping(),
            "examples": examples,
        });
        Plan { dir: dir.to_owned(), every: config.train.checkpoint_every, fingerprint, pause_at: None, ranks: config.train.ranks() }
    }

    /// The same plan, ending the attempt at step `rung` (a checkpoint
    /// there, then [`super::Stopped::Rung`]).
    pub fn pausing_at(self, rung: Option<i64>) -> Plan {
        Plan { pause_at: rung, ..self }
    }

    /// Whether the attempt ends at `step`, a rung.
    pub fn pauses_at(&self, step: i64) -> bool {
        self.pause_at == Some(step)
    }

    pub fn enabled(&self) -> bool {
        self.every != Some(0)
    }

    /// Whether the step `step` just done ends with a checkpoint: every
    /// `checkpoint_every` steps (or at each evaluation), or when
    /// [`CHECKPOINT_AT_LEAST_EVERY`] has passed since the last one.
    pub fn due(&self, step: i64, evaluated: bool, since_last: Duration) -> bool {
        let by_steps = match self.every {
            Some(0) => return false,
            Some(every) => step % every == 0,
            None => evaluated,
        };
        by_steps || since_last >= CHECKPOINT_AT_LEAST_EVERY
    }

    /// Writes the state at `place` in full beside the trial's checkpoints
    /// (reporting the seconds it took as `perf/checkpoint_s`) and hands it
    /// to `observer`, which puts it in place once the points up to this
    /// step are durable. `tensors` are the objective's (weights,
    /// optimiser, scaler); the random generators are added here, every
    /// rank's over `ranks` (whose rank 0 alone writes: the rest of the
    /// state is the same on every rank).
    pub fn save(&self, place: &Place, cursor: &serde_json::Value, mut tensors: Vec<(String, Tensor)>, device: Device, ranks: Option<&Ranks>, observer: &mut dyn Observer) -> Result<()> {
        for generator in generators(device) {
            let state = torch_ops::rng_state(generator)?;
            match ranks {
                None => tensors.push((generator_name(generator, 0), state)),
                Some(ranks) => tensors.extend(ranks.gather(&state)?.into_iter().enumerate().map(|(rank, state)| (generator_name(generator, rank), state))),
            }
        }
        let write = || -> Result<()> {
            let mut metadata = BTreeMap::from([
                (FINGERPRINT.to_string(), self.fingerprint.to_string()),
                (PLACE.to_string(), serde_json::to_string(place)?),
                (CURSOR.to_string(), cursor.to_string()),
            ]);
            if self.ranks > 1 {
                metadata.insert(RANKS.to_string(), self.ranks.to_string());
            }
            // Each tensor contiguous on the CPU, its bytes borrowed from there.
            let on_cpu: Vec<(String, Tensor)> = tensors.into_iter().map(|(name, t)| (name, t.to_device(Device::Cpu).contiguous())).collect();
            let stored = on_cpu.iter().map(|(name, t)| as_stored(name, t)).collect::<Result<Vec<_>>>()?;
            let started = std::time::Instant::now();
            let staged = checkpoints::stage(&self.dir, place.step, &metadata, &stored)?;
            // What checkpointing costs, beside the numbers it protects.
            observer.metric(place.step, "perf/checkpoint_s", started.elapsed().as_secs_f64());
            observer.checkpoint(place.step, &staged)
        };
        match ranks {
            // Rank 0 writes; the others wait for its word.
            Some(ranks) => ranks.led(&format!("checkpoint/{}", place.step), write),
            None => write(),
        }
    }

    /// Reads the checkpoint at `path` for this trial: refused when it was
    /// made for another (its fingerprint differs) or is damaged; and, kept
    /// for a run that can, when it was trained on another number of ranks
    /// (their dropout draws could not go on exactly).
    pub fn load(&self, path: &Path) -> Result<Saved> {
        let step = checkpoints::step_of(path).with_context(|| format!("{} is not named as a checkpoint", path.display()))?;
        let checkpoint = checkpoints::read(step, path)?;
        let meta = |key: &str| checkpoint.metadata.get(key).with_context(|| format!("{} has no {key}", path.display()));
        let theirs: serde_json::Value = serde_json::from_str(meta(FINGERPRINT)?)?;
        if theirs != self.fingerprint {
            bail!(
                "{} was made for a different trial ({}); it is not used. Start the trial over with --fresh, or move the checkpoint away",
                path.display(),
                differences(&theirs, &self.fingerprint)
            );
        }
        let ranks: usize = checkpoint.metadata.get(RANKS).map_or(Ok(1), |n| n.parse())?;
        if ranks != self.ranks {
            let word = |n: usize| if n == 1 { "1 device".to_string() } else { format!("{n} devices") };
            return Err(Stopped::Resume(format!(
                "{} was trained on {} and this run has train.devices = {}: set train.devices = {ranks} to resume it exactly, or start over with --fresh",
                path.display(),
                word(ranks),
                self.ranks
            ))
            .into());
        }
        let place: Place = serde_json::from_str(meta(PLACE)?)?;
        let cursor: serde_json::Value = serde_json::from_str(meta(CURSOR)?)?;
        let mut tensors = HashMap::new();
        for stored in checkpoint.tensors {
            let kind = kind_of(&stored.dtype).with_context(|| format!("{}: {} has dtype {}", path.display(), stored.name, stored.dtype))?;
            let shape: Vec<i64> = stored.shape.iter().map(|&d| d as i64).collect();
            tensors.insert(stored.name, Tensor::f_from_data_size(&stored.bytes, &shape, kind)?);
        }
        Ok(Saved { path: path.to_owned(), place, cursor, tensors })
    }
}

/// A checkpoint read back, to restore from.
pub struct Saved {
    path: PathBuf,
    pub place: Place,
    pub cursor: serde_json::Value,
    tensors: HashMap<String, Tensor>,
}

impl Saved {
    /// Copies the saved values into `targets` (the live tensors the
    /// objective's state names: weights, moments, scaler) and sets the
    /// random generators of `device` back to rank `rank`'s.
    pub fn restore(&mut self, targets: Vec<(String, Tensor)>, device: Device, rank: usize) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            for (name, mut target) in targets {
                let saved = self.tensors.remove(&name).with_context(|| format!("{} holds no {name}", self.path.display()))?;
                if saved.size() != target.size() {
                    bail!("{}: {name} has shape {:?}, the model's is {:?}", self.path.display(), saved.size(), target.size());
                }
                target.f_copy_(&saved)?;
            }
            Ok(())
        })?;
        for generator in generators(device) {
            let name = generator_name(generator, rank);
            let state = self.tensors.remove(&name).with_context(|| format!("{} holds no {name}", self.path.display()))?;
            torch_ops::set_rng_state(generator, &state)?;
        }
        Ok(())
    }

    /// The data cursor, as the objective's batch stream wrote it.
    pub fn cursor<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.cursor.clone()).with_context(|| format!("{}: its data cursor", self.path.display()))
    }
}

/// The step and time a checkpoint holds, from its header only (what the
/// run folder needs to know before the trainer reads the whole file).
pub fn place_of(path: &Path) -> Result<Place> {
    let metadata = checkpoints::metadata(path)?;
    let place = metadata.get(PLACE).with_context(|| format!("{} has no {PLACE}", path.display()))?;
    Ok(serde_json::from_str(place)?)
}

/// The generators a trial on `device` draws from: the CPU's always (the
/// model is initialised there), and its GPU's.
fn generators(device: Device) -> Vec<Device> {
    match device {
        Device::Cuda(_) => vec![Device::Cpu, device],
        _ => vec![Device::Cpu],
    }
}

/// `rng/cpu`, `rng/cuda` for rank 0 (and a trial on one device);
/// `rng/cpu/1`, ... for the other ranks.
fn generator_name(device: Device, rank: usize) -> String {
    let kind = if device.is_cuda() { "rng/cuda" } else { "rng/cpu" };
    match rank {
        0 => kind.to_string(),
        rank => format!("{kind}/{rank}"),
    }
}

fn as_stored<'a>(name: &str, t: &'a Tensor) -> Result<Stored<'a>> {
    let dtype = dtype_of(t.kind()).with_context(|| format!("{name} has kind {:?}, which a checkpoint cannot hold", t.kind()))?;
    let bytes = t.numel() * t.kind().elt_size_in_bytes();
    // SAFETY: `t` is contiguous on the CPU and outlives the slice, which
    // spans exactly its elements.
    let data = unsafe { std::slice::from_raw_parts(t.data_ptr() as *const u8, bytes) };
    Ok(Stored { name: name.to_string(), dtype: dtype.to_string(), shape: t.size().iter().map(|&d| d as usize).collect(), bytes: Cow::Borrowed(data) })
}

/// safetensors' dtype names, for the kinds a training state holds.
const DTYPES: [(Kind, &str); 7] =
    [(Kind::Float, "F32"), (Kind::Double, "F64"), (Kind::Int64, "I64"), (Kind::Int, "I32"), (Kind::Uint8, "U8"), (Kind::BFloat16, "BF16"), (Kind::Half, "F16")];

fn dtype_of(kind: Kind) -> Option<&'static str> {
    DTYPES.iter().find(|(k, _)| *k == kind).map(|(_, name)| *name)
}

fn kind_of(dtype: &str) -> Option<Kind> {
    DTYPES.iter().find(|(_, name)| *name == dtype).map(|(k, _)| *k)
}

/// What differs between two fingerprints, by dotted key: `examples
/// ("1234" in the checkpoint, "9999" now)`.
fn differences(then: &serde_json::Value, now: &serde_json::Value) -> String {
    let flat = |v| crate::config::dotted::flatten(v).into_iter().collect::<BTreeMap<String, String>>();
    let (a, b) = (flat(then), flat(now));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let shown = |side: &BTreeMap<String, String>, key: &String| side.get(key).map_or("(none)".to_string(), |v| format!("{v:?}"));
    let differing: Vec<String> = keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).map(|k| format!("{k}: {} in the checkpoint, {} now", shown(&a, k), shown(&b, k))).collect();
    differing.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(every: Option<i64>) -> Plan {
        Plan { dir: PathBuf::new(), every, fingerprint: serde_json::Value::Null, pause_at: None, ranks: 1 }
    }

    #[test]
    fn checkpoints_fall_at_evaluations_or_every_n_steps_and_at_least_every_half_hour() {
        let (soon, late) = (Duration::from_secs(1), CHECKPOINT_AT_LEAST_EVERY);
        assert!(plan(None).due(50, true, soon) && !plan(None).due(51, false, soon));
        assert!(plan(Some(10)).due(20, false, soon) && !plan(Some(10)).due(25, true, soon));
        assert!(plan(None).due(51, false, late) && plan(Some(10)).due(25, false, late), "a long stretch without one");
        assert!(!plan(Some(0)).due(50, true, late) && !plan(Some(0)).enabled(), "0 turns them off");
    }

    #[test]
    fn differences_name_each_changed_key() {
        let then = serde_json::json!({"format": 1, "data": {"corpus": "a.txt", "seq_len": 64}, "examples": "1234"});
        let now = serde_json::json!({"format": 1, "data": {"corpus": "a.txt", "seq_len": 64}, "examples": "9999"});
        assert_eq!(differences(&then, &now), r#"examples: "1234" in the checkpoint, "9999" now"#);
    }
}
