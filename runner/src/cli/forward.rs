//! `bertlab forward`: one forward pass of a checkpoint (a trial folder or a
//! Hugging Face folder) in eval mode, on token ids from a JSON file; writes
//! `last_hidden_state` and the MLM `logits` to a safetensors file.
use crate::error::InputError;
use crate::model_dir::ModelDir;
use anyhow::Result;
use clap::Args;
use models::EncoderInput;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};

#[derive(Args)]
pub struct ForwardArgs {
    /// A trial folder or a Hugging Face folder.
    #[arg(long)]
    model: PathBuf,
    /// JSON: {"input_ids": [[...]], "attention_mask": [[...]], "token_type_ids": [[...]]}; the last two optional.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the outputs (safetensors).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    input_ids: Vec<Vec<i64>>,
    attention_mask: Option<Vec<Vec<i64>>>,
    token_type_ids: Option<Vec<Vec<i64>>>,
}

pub fn forward(args: ForwardArgs) -> Result<i32> {
    let spec = args.model.to_string_lossy();
    let dir = ModelDir::find(&spec)?;
    if crate::hub::is_hub_id(&spec) {
        eprintln!("model {spec}: {}", dir.path.display());
    }
    let batch = read_batch(&args.input)?;
    let vs = VarStore::new(Device::Cpu);
    let (model, report) = dir.build(&vs)?;
    if !report.fresh.is_empty() {
        eprintln!("note: the checkpoint has no {}; logits come from an untrained head", report.fresh.join(", "));
    }
    check_bounds(&batch, &dir.knobs, &args.input)?;
    let input = tensors(&batch);
    let (hidden, logits) = tch::no_grad(|| {
        let hidden = model.encode(&input, false);
        let logits = model.mlm_logits(&hidden);
        (hidden, logits)
    });
    Tensor::write_safetensors(&[("last_hidden_state", &hidden), ("logits", &logits)], &args.out)?;
    println!("wrote {}: last_hidden_state {:?}, logits {:?}", args.out.display(), hidden.size(), logits.size());
    Ok(0)
}

fn read_batch(path: &Path) -> Result<Batch, InputError> {
    let fail = |m: String| InputError::new(m).in_file(path);
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let batch: Batch = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let width = batch.input_ids.first().map_or(0, Vec::len);
    if batch.input_ids.is_empty() || width == 0 {
        return Err(fail("input_ids is empty".into()).key("input_ids"));
    }
    for (key, rows) in [("input_ids", Some(&batch.input_ids)), ("attention_mask", batch.attention_mask.as_ref()), ("token_type_ids", batch.token_type_ids.as_ref())] {
        let Some(rows) = rows else { continue };
        if rows.len() != batch.input_ids.len() || rows.iter().any(|r| r.len() != width) {
            return Err(fail(format!("every row must have {width} entries, and there must be {} rows", batch.input_ids.len())).key(key));
        }
    }
    Ok(batch)
}

/// Ids outside the embedding tables would stop libtorch mid-run; say which.
fn check_bounds(batch: &Batch, knobs: &models::KnobValues, path: &Path) -> Result<(), InputError> {
    let knob = |name: &str| knobs.get(name).and_then(|v| v.as_i64()).unwrap_or(i64::MAX);
    let width = batch.input_ids[0].len() as i64;
    if width > knob("max_position") {
        return Err(InputError::new(format!("{width} tokens per row, more than the model's {} positions", knob("max_position"))).in_file(path).key("input_ids"));
    }
    let limits = [("input_ids", Some(&batch.input_ids), knob("vocab_size")), ("token_type_ids", batch.token_type_ids.as_ref(), knob("type_vocab_size")), ("attention_mask", batch.attention_mask.as_ref(), 2)];
    for (key, rows, limit) in limits {
        if let Some(bad) = rows.into_iter().flatten().flatten().find(|&&v| v < 0 || v >= limit) {
            return Err(InputError::new(format!("{bad} is outside [0, {limit})")).in_file(path).key(key));
        }
    }
    Ok(())
}

fn tensors(batch: &Batch) -> EncoderInput {
    let matrix = |rows: &Vec<Vec<i64>>| {
        let flat: Vec<i64> = rows.iter().flatten().copied().collect();
        Tensor::from_slice(&flat).view([rows.len() as i64, rows[0].len() as i64])
    };
    let input_ids = matrix(&batch.input_ids);
    let token_type_ids = batch.token_type_ids.as_ref().map(matrix).unwrap_or_else(|| input_ids.zeros_like());
    // An all-ones mask is no mask: attention then takes its fastest kernel.
    let attention_mask = batch.attention_mask.as_ref().map(matrix).filter(|m| m.min().int64_value(&[]) == 0);
    EncoderInput { input_ids, token_type_ids, attention_mask }
}
