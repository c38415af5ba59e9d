//! Trials: a sweep point and a seed applied to the base configuration,
//! checked by the sections and the model plugin, and named by a stable hash
//! of everything that can change its numbers.
use super::grid::{product, Point};
use crate::config::{DataSection, Loaded, TrainSection};
use crate::error::InputError;
use models::{knob::closest, KnobValues, Plugin};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Everything one training run needs, as written to its `config.toml`.
#[derive(Debug, Clone, Serialize)]
pub struct TrialConfig {
    /// The plugin name (`[experiment] model`).
    pub plugin: String,
    pub seed: u64,
    /// The plugin's knobs, defaults filled in. `vocab_size` is added once
    /// the tokenizer is known, unless the experiment sets it.
    pub model: KnobValues,
    pub data: DataSection,
    pub train: TrainSection,
}

#[derive(Debug, Clone)]
pub struct Trial {
    pub id: String,
    /// The values this trial's grid point sets, by dotted key.
    pub swept: Point,
    pub config: TrialConfig,
}

impl Trial {
    /// `model.layers=2 model.hidden=128 seed=0`, for logs and progress bars.
    pub fn label(&self) -> String {
        let mut parts: Vec<String> = self.swept.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(format!("seed={}", self.config.seed));
        parts.join(" ")
    }
}

impl TrialConfig {
    /// Stable across runs and machines: the hash of the canonical JSON of the
    /// configuration minus what does not change the result's meaning (the
    /// device it ran on).
    pub fn id(&self) -> String {
        let mut hashed = self.clone();
        hashed.train.device.clear();
        let canonical = serde_json::to_string(&hashed).expect("configs serialise");
        let digest = Sha256::digest(canonical.as_bytes());
        digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
    }
}

const SWEEPABLE_SECTIONS: [&str; 3] = ["model", "data", "train"];

/// Expands the experiment's grid and seeds into trials, checking each one.
/// Any invalid trial rejects the whole experiment before anything trains.
pub fn expand(loaded: &Loaded) -> Result<Vec<Trial>, InputError> {
    let exp = &loaded.experiment;
    let plugin = find_plugin(loaded)?;
    let base = serde_json::to_value(exp).expect("experiment serialises");
    let axes = grid_axes(loaded, plugin, &base)?;
    let mut trials = Vec::new();
    for point in product(&axes) {
        for &seed in &exp.experiment.seeds {
            let config = resolve(loaded, plugin, &base, &point, seed)?;
            trials.push(Trial { id: config.id(), swept: point.clone(), config });
        }
    }
    Ok(trials)
}

fn find_plugin(loaded: &Loaded) -> Result<&'static dyn Plugin, InputError> {
    let name = &loaded.experiment.experiment.model;
    models::registry::find(name).ok_or_else(|| {
        let names = models::registry::names();
        let hint = closest(name, &names).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
        loaded.error_at("experiment.model", format!("unknown model plugin `{name}`{hint}; known: {}", names.join(", ")))
    })
}

fn grid_axes(loaded: &Loaded, plugin: &dyn Plugin, base: &Value) -> Result<Vec<(String, Vec<Value>)>, InputError> {
    let mut axes = Vec::new();
    for (key, values) in &loaded.experiment.sweep.grid {
        let fail = |message: String| loaded.grid_error(key, message);
        let (section, name) = key
            .split_once('.')
            .filter(|(s, _)| SWEEPABLE_SECTIONS.contains(s))
            .ok_or_else(|| fail(format!("sweep keys are `section.key` with section one of {}", SWEEPABLE_SECTIONS.join(", "))))?;
        let known: Vec<&str> = match section {
            "model" => plugin.knobs().iter().map(|k| k.name).collect(),
            _ => base[section].as_object().expect("sections are tables").keys().map(String::as_str).collect(),
        };
        if !known.contains(&name) {
            let hint = closest(name, &known).map(|s| format!(" (did you mean `{section}.{s}`?)")).unwrap_or_default();
            return Err(fail(format!("`{key}` is not a key of [{section}]{hint}")));
        }
        match values {
            Value::Array(list) if !list.is_empty() => axes.push((key.clone(), list.clone())),
            Value::Array(_) => return Err(fail("an axis needs at least one value".into())),
            other => return Err(fail(format!("an axis is a list of values, got {other}"))),
        }
    }
    Ok(axes)
}

fn resolve(loaded: &Loaded, plugin: &dyn Plugin, base: &Value, point: &Point, seed: u64) -> Result<TrialConfig, InputError> {
    let mut config = base.clone();
    for (key, value) in point {
        let (section, name) = key.split_once('.').expect("checked by grid_axes");
        config[section][name] = value.clone();
    }
    // Blame the sweep axis when a swept value is what broke the trial; a
    // key set in the file names the trial, since a swept value may be the
    // other half of the problem (hidden swept, heads fixed).
    let blame = |key: &str, message: String| match point.iter().find(|(k, _)| k == key) {
        Some((k, v)) => loaded.grid_error(k, format!("value {v}: {message}")),
        None if point.is_empty() => loaded.error_at(key, message),
        None => {
            let swept: Vec<String> = point.iter().map(|(k, v)| format!("{k}={v}")).collect();
            loaded.error_at(key, format!("{message} (in the trial with {})", swept.join(", ")))
        }
    };
    let section = |name: &str| config[name].clone();
    let data: DataSection =
        serde_json::from_value(section("data")).map_err(|e| blame_section(point, "data", e.to_string(), &blame))?;
    let train: TrainSection =
        serde_json::from_value(section("train")).map_err(|e| blame_section(point, "train", e.to_string(), &blame))?;
    data.check().and_then(|_| train.check()).map_err(|(key, m)| blame(key, m))?;
    let given = config["model"].as_object().cloned().unwrap_or_default();
    let model = plugin.resolve(&given).map_err(|e| blame(&format!("model.{}", e.knob), e.message))?;
    if let Some(max_position) = model.get("max_position").and_then(Value::as_i64) {
        if max_position < data.seq_len {
            return Err(blame("model.max_position", format!("{max_position} is less than data.seq_len ({})", data.seq_len)));
        }
    }
    Ok(TrialConfig { plugin: plugin.name().to_string(), seed, model, data, train })
}

/// A type error in a swept section: blamed on the first swept key of that
/// section, else on the section itself.
fn blame_section(
    point: &Point,
    section: &str,
    message: String,
    blame: &dyn Fn(&str, String) -> InputError,
) -> InputError {
    let key = point
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| k.starts_with(&format!("{section}.")))
        .unwrap_or(section);
    blame(key, message)
}
