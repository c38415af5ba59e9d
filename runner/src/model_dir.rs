//! A folder that holds a model: a bertlab trial folder (`config.toml` +
//! `model.safetensors` + `tokenizer.json`) or a Hugging Face folder
//! (`config.json` + its weights, tokenizer files beside them). Weights are
//! read from `model.safetensors`, else from `pytorch_model.bin` (PyTorch's
//! `torch.save` format, [`crate::torch_file`]), or from the shards of
//! either with the `.index.json` that `save_pretrained` writes.
//! Knows which plugin and knobs the model has, and builds it with its
//! weights loaded.
use crate::error::InputError;
use models::hf::{load_weights, LoadReport};
use models::{KnobValues, MaskedLm, Plugin};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Trial,
    HuggingFace,
}

pub struct ModelDir {
    pub path: PathBuf,
    pub layout: Layout,
    pub plugin: &'static dyn Plugin,
    /// Resolved knobs, the vocabulary size included.
    pub knobs: KnobValues,
}

/// The weights of a model folder, trial or Hugging Face.
pub const WEIGHTS: &str = "model.safetensors";
/// What a Hugging Face folder may hold instead, in the order `transformers`
/// prefers them: the index of a sharded checkpoint (`save_pretrained`
/// shards models above its `max_shard_size`), then PyTorch's format, whole
/// or sharded, in which many published checkpoints still are.
const OTHER_WEIGHTS: [&str; 3] = ["model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"];
/// The tokenizer a trial saves beside its weights.
pub const TOKENIZER: &str = "tokenizer.json";

/// The tokenizer file of a model folder: a trial's `tokenizer.json`, else
/// a Hugging Face folder's `vocab.txt`.
pub fn tokenizer_file(folder: &Path) -> Option<PathBuf> {
    [TOKENIZER, "vocab.txt"].iter().map(|f| folder.join(f)).find(|p| p.is_file())
}

/// Saves the trained weights of `vs` as the folder's [`WEIGHTS`].
pub fn save_weights(vs: &VarStore, folder: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    models::hf::save_weights(vs, &folder.join(WEIGHTS)).context("saving the checkpoint")
}

impl ModelDir {
    /// The model folder `spec` names: a path, or a hub id (`hf:ORG/NAME`)
    /// found in the local Hugging Face cache ([`crate::hub`]).
    pub fn find(spec: &str) -> Result<ModelDir, InputError> {
        ModelDir::open(&crate::hub::folder(spec)?)
    }

    pub fn open(path: &Path) -> Result<ModelDir, InputError> {
        let fail = |m: String| InputError::new(m).in_file(path);
        let (layout, plugin, knobs) = if path.join(runfolder::names::CONFIG).is_file() {
            let (plugin, knobs) = trial_knobs(&path.join(runfolder::names::CONFIG))?;
            (Layout::Trial, plugin, knobs)
        } else if path.join("config.json").is_file() {
            let (plugin, knobs) = hugging_face_knobs(&path.join("config.json"))?;
            (Layout::HuggingFace, plugin, knobs)
        } else {
            return Err(fail("neither a trial folder (config.toml) nor a Hugging Face folder (config.json)".into()));
        };
        if weights_file(path).is_none() {
            return Err(fail(format!("no weights: none of {WEIGHTS}, {}", OTHER_WEIGHTS.join(", "))));
        }
        Ok(ModelDir { path: path.to_owned(), layout, plugin, knobs })
    }

    /// Builds the model in `vs` and loads the folder's weights into it;
    /// the report lists what the checkpoint lacked (an MLM head).
    pub fn build(&self, vs: &VarStore) -> Result<(Box<dyn MaskedLm>, LoadReport), InputError> {
        let model = self.plugin.build(&vs.root(), &self.knobs).map_err(|e| InputError::new(e.to_string()).in_file(&self.path))?;
        let report = self.load(vs)?;
        Ok((model, report))
    }

    /// Loads the folder's weights into a model already built in `vs` with
    /// the same plugin and architecture.
    pub fn load(&self, vs: &VarStore) -> Result<LoadReport, InputError> {
        // A trial pretrained with next-sentence prediction (`data.nsp`) also
        // holds the pooler and the NSP head; its masked-LM model is the rest,
        // which must match exactly.
        let trial_head = |v: &str| models::heads::is_next_sentence(v) || self.plugin.is_pooler(v);
        match self.plugin.hugging_face().filter(|_| self.layout == Layout::HuggingFace) {
            Some(hf) => self.load_with(vs, &|v| hf.is_head(v), &|_| false),
            None => self.load_with(vs, &trial_head, &|_| false),
        }
    }

    /// Like [`ModelDir::load`], with `is_head` saying which variables may be
    /// missing from the checkpoint (left fresh) or from the model (dropped),
    /// and `fresh` which keep their initialisation even when the checkpoint
    /// has them (a new classifier over another task's).
    pub fn load_with(&self, vs: &VarStore, is_head: &dyn Fn(&str) -> bool, fresh: &dyn Fn(&str) -> bool) -> Result<LoadReport, InputError> {
        let variable = |name: &str| match (self.layout, self.plugin.hugging_face()) {
            (Layout::HuggingFace, Some(hf)) => hf.variable_name(&self.knobs, name),
            _ => Some(name.to_string()),
        };
        let tensors = read_weights(&self.path)?;
        load_weights(vs, tensors, &|name| variable(name).filter(|v| !fresh(v)), is_head).map_err(|m| InputError::new(m).in_file(&self.path))
    }
}

fn weights_file(folder: &Path) -> Option<PathBuf> {
    std::iter::once(WEIGHTS).chain(OTHER_WEIGHTS).map(|f| folder.join(f)).find(|p| p.is_file())
}

/// Every named tensor of the folder's checkpoint, whatever its format.
fn read_weights(folder: &Path) -> Result<Vec<(String, tch::Tensor)>, InputError> {
    let file = weights_file(folder).ok_or_else(|| InputError::new(format!("no {WEIGHTS}")).in_file(folder))?;
    if !file.to_string_lossy().ends_with(".index.json") {
        return read_weight_file(&file);
    }
    // A sharded checkpoint: the index maps each tensor to its shard.
    let fail = |m: String| InputError::new(m).in_file(&file);
    let index: serde_json::Value = std::fs::read(&file).map_err(|e| fail(e.to_string())).and_then(|b| serde_json::from_slice(&b).map_err(|e| fail(format!("not JSON: {e}"))))?;
    let Some(map) = index["weight_map"].as_object() else { return Err(fail("no weight_map".into())) };
    let mut shards: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
    shards.sort();
    shards.dedup();
    let mut tensors = Vec::new();
    for shard in shards {
        tensors.extend(read_weight_file(&folder.join(shard))?);
    }
    Ok(tensors)
}

fn read_weight_file(file: &Path) -> Result<Vec<(String, tch::Tensor)>, InputError> {
    let tensors = if file.extension().is_some_and(|e| e == "bin") { crate::torch_file::read(file).map_err(|e| format!("{e:#}")) } else { tch::Tensor::read_safetensors(file).map_err(|e| e.to_string()) };
    tensors.map_err(|e| InputError::new(format!("cannot read: {e}")).in_file(file))
}

/// A trial's `config.toml` is a one-trial experiment file: the plugin under
/// `[experiment] model`, its resolved knobs under `[model]`.
fn trial_knobs(file: &Path) -> Result<(&'static dyn Plugin, KnobValues), InputError> {
    let fail = |m: String| InputError::new(m).in_file(file);
    let text = std::fs::read_to_string(file).map_err(|e| fail(format!("cannot read: {e}")))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| fail(format!("TOML syntax: {}", e.message())))?;
    let json = serde_json::to_value(&table).map_err(|e| fail(e.to_string()))?;
    let name = json["experiment"]["model"].as_str().unwrap_or("bert");
    let plugin = models::registry::find(name).ok_or_else(|| fail(format!("unknown model plugin `{name}`")))?;
    let mut given = json["model"].as_object().cloned().unwrap_or_default();
    // Where the trial started from; its knobs are already in the table.
    given.remove("init");
    let knobs = plugin.resolve(&given).map_err(|e| fail(e.to_string()).key(format!("model.{}", e.knob)))?;
    Ok((plugin, knobs))
}

fn hugging_face_knobs(file: &Path) -> Result<(&'static dyn Plugin, KnobValues), InputError> {
    let fail = |m: String| InputError::new(m).in_file(file);
    let text = std::fs::read_to_string(file).map_err(|e| fail(format!("cannot read: {e}")))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?;
    let model_type = json["model_type"].as_str().unwrap_or("bert");
    let plugin = models::registry::all()
        .iter()
        .copied()
        .find(|p| p.hugging_face().is_some() && p.name() == model_type)
        .ok_or_else(|| fail(format!("model_type `{model_type}`: no plugin reads it (bert does)")))?;
    let hf = plugin.hugging_face().expect("found by it");
    let knobs = hf.knobs_from_config(&json).map_err(|e| fail(e.message))?;
    Ok((plugin, knobs))
}
