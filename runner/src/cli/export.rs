//! `bertlab export`: a trial folder as a Hugging Face folder that
//! `transformers` loads with `from_pretrained` (as `BertForMaskedLM`, or
//! `BertForSequenceClassification` for a fine-tuned trial): `config.json`,
//! `model.safetensors` (Hugging Face's names and format) and the
//! trial's tokenizer (`tokenizer.json`, `vocab.txt`, `tokenizer_config.json`).
use crate::error::InputError;
use crate::model_dir::{self, Layout, ModelDir};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ExportArgs {
    /// A trial folder: runs/<name>/trials/<trial_id>.
    trial_dir: PathBuf,
    /// The Hugging Face folder to write (created if needed).
    #[arg(long)]
    out: PathBuf,
}

pub fn export(args: ExportArgs) -> Result<i32> {
    let dir = ModelDir::open(&args.trial_dir)?;
    let fail = |m: &str| InputError::new(m).in_file(&args.trial_dir);
    if dir.layout != Layout::Trial {
        return Err(fail("is already a Hugging Face folder; export takes a trial folder").into());
    }
    let hf = dir.plugin.hugging_face().ok_or_else(|| fail(&format!("plugin `{}` has no Hugging Face counterpart", dir.plugin.name())))?;
    let mut config = hf.config_json(&dir.knobs).map_err(|e| fail(&e.to_string()))?;
    let tensors = tch::Tensor::read_safetensors(args.trial_dir.join(model_dir::WEIGHTS))?;
    let classifier_weight = format!("{}.weight", models::heads::CLASSIFIER);
    let classifier = tensors.iter().find(|(name, _)| *name == classifier_weight).map(|(_, t)| t.size()[0]);
    let loads_with = match classifier {
        Some(outputs) => {
            sequence_classification(&mut config, outputs, &args.trial_dir)?;
            "BertForSequenceClassification"
        }
        None => "BertForMaskedLM",
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    std::fs::write(args.out.join("config.json"), serde_json::to_string_pretty(&config)? + "\n")?;
    models::hf::write_tensors(hf.export_tensors(&dir.knobs, tensors), &args.out.join(model_dir::WEIGHTS))?;

    let tokenizer = args.trial_dir.join(model_dir::TOKENIZER);
    if tokenizer.is_file() {
        std::fs::copy(&tokenizer, args.out.join(model_dir::TOKENIZER))?;
        std::fs::write(args.out.join("vocab.txt"), vocab_txt(&tokenizer)?)?;
        let max_length = dir.knobs.get("max_position").cloned().unwrap_or(512.into());
        let tokenizer_config = serde_json::json!({
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": true,
            "model_max_length": max_length,
            "pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]",
        });
        std::fs::write(args.out.join("tokenizer_config.json"), serde_json::to_string_pretty(&tokenizer_config)? + "\n")?;
    } else {
        eprintln!("note: {} has no tokenizer.json (trained before tokenizers were saved); exporting the model only", args.trial_dir.display());
    }
    println!("wrote {} (load it with transformers' {loads_with}.from_pretrained)", args.out.display());
    Ok(0)
}

/// A fine-tuned trial's `config.json`: the sequence-classification
/// architecture, its number of outputs, what they mean (the trial's
/// `labels.json`), and regression when there is one output.
fn sequence_classification(config: &mut serde_json::Value, outputs: i64, trial_dir: &std::path::Path) -> Result<()> {
    let architecture = config["architectures"][0].as_str().unwrap_or("BertForMaskedLM").replace("ForMaskedLM", "ForSequenceClassification");
    config["architectures"] = serde_json::json!([architecture]);
    config["num_labels"] = outputs.into();
    config["problem_type"] = if outputs == 1 { "regression" } else { "single_label_classification" }.into();
    let labels = trial_dir.join(crate::train::finetune::LABELS);
    if labels.is_file() {
        let classes: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&labels)?).with_context(|| format!("reading {}", labels.display()))?;
        config["id2label"] = classes.iter().enumerate().map(|(i, c)| (i.to_string(), c.clone().into())).collect::<serde_json::Map<_, _>>().into();
        config["label2id"] = classes.iter().enumerate().map(|(i, c)| (c.clone(), i.into())).collect::<serde_json::Map<_, _>>().into();
    }
    Ok(())
}

/// `vocab.txt`: the WordPiece vocabulary, one token per line in id order.
fn vocab_txt(tokenizer_json: &std::path::Path) -> Result<String> {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tokenizer_json)?)?;
    let vocab = json["model"]["vocab"].as_object().context("tokenizer.json has no WordPiece vocabulary")?;
    let mut tokens: Vec<(&String, i64)> = vocab.iter().map(|(t, id)| (t, id.as_i64().unwrap_or(i64::MAX))).collect();
    tokens.sort_by_key(|(_, id)| *id);
    Ok(tokens.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join("\n") + "\n")
}
