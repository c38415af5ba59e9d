//! Hugging Face folders: what a plugin must say to read and write them
//! ([`HuggingFace`]), and loading a `safetensors` checkpoint into a built
//! model with every missing, unexpected or misshapen tensor reported.
use crate::knob::{KnobError, KnobValues};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use tch::nn::VarStore;
use tch::Tensor;

/// A plugin whose architecture has a Hugging Face counterpart.
pub trait HuggingFace: Sync {
    /// Knob values from a folder's `config.json`; refuses configurations
    /// the plugin does not implement (another activation, relative positions).
    fn knobs_from_config(&self, config: &Value) -> Result<KnobValues, KnobError>;

    /// The `config.json` of a model with these (resolved) knobs.
    fn config_json(&self, knobs: &KnobValues) -> Result<Value, KnobError>;

    /// The checkpoint tensors Hugging Face expects for the model's own
    /// variables: the inverse of [`HuggingFace::variable_name`].
    fn export_tensors(&self, knobs: &KnobValues, tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)>;

    /// The plugin's variable for a checkpoint tensor, or `None` for a
    /// tensor that only repeats another (a tied decoder).
    fn variable_name(&self, knobs: &KnobValues, tensor: &str) -> Option<String>;

    /// Whether a variable belongs to a head rather than the encoder. A
    /// checkpoint may lack the model's heads (they keep their fresh
    /// initialisation: `BertModel` has no MLM head) and may carry heads the
    /// model does not have (a pooler, the next-sentence head), which are
    /// dropped; encoder tensors must match exactly.
    fn is_head(&self, variable: &str) -> bool;
}

/// Writes every variable of `vs` as a float32 `safetensors` file that
/// Hugging Face loads as is: sorted names and the `format: pt` metadata
/// its loader insists on (tch's own writer leaves metadata out).
pub fn save_weights(vs: &VarStore, file: &Path) -> anyhow::Result<()> {
    write_tensors(vs.variables().into_iter().collect(), file)
}

/// Writes named tensors as [`save_weights`] does.
pub fn write_tensors(mut tensors: Vec<(String, Tensor)>, file: &Path) -> anyhow::Result<()> {
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, tensor) in &tensors {
        let flat = tensor.detach().to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).flatten(0, -1);
        let values = Vec::<f32>::try_from(&flat).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let shape: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
        buffers.push((name.clone(), shape, values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()));
    }
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).map(|view| (name.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), file).map_err(|e| anyhow::anyhow!("writing {}: {e}", file.display()))
}

/// What loading left as initialised, and what it dropped.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub fresh: Vec<String>,
    pub dropped: Vec<String>,
}

/// Copies a checkpoint's `tensors` into the variables of `vs`. `rename` maps
/// a checkpoint name to a variable name (`None`: not used). Heads
/// (`is_head`) may be missing on either side; any other missing, left-over
/// or misshapen tensor is an error, and all of them are listed in one
/// message, not just the first.
pub fn load_weights(
    vs: &VarStore,
    tensors: Vec<(String, Tensor)>,
    rename: &dyn Fn(&str) -> Option<String>,
    is_head: &dyn Fn(&str) -> bool,
) -> Result<LoadReport, String> {
    let mut by_variable: HashMap<String, (String, Tensor)> = HashMap::new();
    for (name, tensor) in tensors {
        // Checkpoints converted from TensorFlow name LayerNorm's parameters
        // gamma and beta; Hugging Face renames them on load, and so do we.
        let name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias");
        if let Some(variable) = rename(&name) {
            by_variable.insert(variable, (name, tensor));
        }
    }
    let mut variables = vs.variables();
    let mut problems = Vec::new();
    let mut report = LoadReport::default();
    let mut names: Vec<String> = variables.keys().cloned().collect();
    names.sort();
    for name in names {
        let variable = variables.get_mut(&name).expect("listed");
        match by_variable.remove(&name) {
            Some((_, tensor)) if tensor.size() == variable.size() => {
                tch::no_grad(|| variable.copy_(&tensor.to_kind(variable.kind())));
            }
            Some((source, tensor)) => {
                problems.push(format!("{source}: shape {:?} in the checkpoint, {:?} in the model", tensor.size(), variable.size()))
            }
            None if is_head(&name) => report.fresh.push(name),
            None => problems.push(format!("{name}: missing from the checkpoint")),
        }
    }
    let mut unexpected: Vec<(String, String)> = by_variable.into_iter().map(|(variable, (source, _))| (variable, source)).collect();
    unexpected.sort();
    for (variable, source) in unexpected {
        if is_head(&variable) {
            report.dropped.push(source);
        } else {
            problems.push(format!("{source}: in the checkpoint but not in the model"));
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(format!("the checkpoint does not fit the model ({} problems): {}", problems.len(), problems.join("; ")))
    }
}
