//! The masked-LM objective, scored only where tokens were masked, and the
//! held-out evaluation built on it (`eval/loss`, `eval/accuracy`).
use crate::data::batches::Batch;
use crate::data::masking::IGNORE;
use models::MaskedLm;
use tch::{Kind, Reduction, Tensor};

/// Logits and targets at the masked positions of a batch: the MLM head runs
/// only there, not over every token (BERT's own implementation did the same).
pub fn masked_logits(model: &dyn MaskedLm, batch: &Batch, train: bool) -> (Tensor, Tensor) {
    let hidden = model.encode(&batch.input, train);
    let width = hidden.size()[2];
    let selected = hidden.view([-1, width]).index_select(0, &batch.positions);
    (model.mlm_logits(&selected), batch.targets.shallow_clone())
}

/// Mean cross-entropy over masked positions, for training.
pub fn masked_loss(model: &dyn MaskedLm, batch: &Batch) -> Tensor {
    let (logits, targets) = masked_logits(model, batch, true);
    logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(&targets, None, Reduction::Mean, IGNORE, 0.0)
}

pub struct EvalResult {
    pub loss: f64,
    pub accuracy: f64,
}

/// Loss and accuracy over every masked position of the held-out set, in
/// eval mode (no dropout).
pub fn evaluate(model: &dyn MaskedLm, batches: &[Batch]) -> EvalResult {
    tch::no_grad(|| {
        let (mut loss_sum, mut correct, mut count) = (0.0, 0i64, 0i64);
        for batch in batches {
            let (logits, targets) = masked_logits(model, batch, false);
            let logits = logits.to_kind(Kind::Float);
            loss_sum += f64::try_from(logits.cross_entropy_loss::<Tensor>(&targets, None, Reduction::Sum, IGNORE, 0.0))
                .unwrap_or(f64::NAN);
            correct += i64::try_from(logits.argmax(-1, false).eq_tensor(&targets).sum(Kind::Int64)).unwrap_or(0);
            count += targets.size()[0];
        }
        let count = count.max(1) as f64;
        EvalResult { loss: loss_sum / count, accuracy: correct as f64 / count }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::masking::Masker;
    use models::knob::KnobValues;
    use rand::SeedableRng;
    use tch::{nn::VarStore, Device};

    #[test]
    fn the_masked_only_decoder_gives_the_full_decoders_loss() {
        tch::manual_seed(0);
        let vs = VarStore::new(Device::Cpu);
        let plugin = models::registry::find("bert").unwrap();
        let knobs: KnobValues = serde_json::from_str(r#"{"layers": 2, "hidden": 32, "heads": 2, "vocab_size": 64, "dropout": 0.0, "attention_dropout": 0.0}"#).unwrap();
        let model = plugin.build(&vs.root(), &plugin.resolve(&knobs).unwrap()).unwrap();
        let ids: Vec<u32> = (0..4 * 16).map(|i| 5 + (i * 7 % 59) as u32).collect();
        let masked = Masker::new(0.3, 4, 64, &[0, 1, 2, 3, 4]).mask(&ids, 16, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let input_ids = Tensor::from_slice(&masked.input_ids).view([4, 16]);
        let labels = Tensor::from_slice(&masked.labels);
        let positions = labels.ne(IGNORE).nonzero().squeeze_dim(1);
        let batch = Batch {
            input: models::EncoderInput { token_type_ids: input_ids.zeros_like(), input_ids, attention_mask: None },
            targets: labels.index_select(0, &positions),
            positions,
            tokens: 64,
        };
        // Without dropout, training mode computes the same function.
        let masked_only = tch::no_grad(|| f64::try_from(masked_loss(model.as_ref(), &batch)).unwrap());
        // The decoder over every position, as Hugging Face's BertForMaskedLM
        // computes it, with unmasked positions ignored by the loss.
        let full = tch::no_grad(|| {
            let logits = model.mlm_logits(&model.encode(&batch.input, false));
            let loss = logits.view([-1, 64]).cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, IGNORE, 0.0);
            f64::try_from(loss).unwrap()
        });
        assert!(masked.labels.iter().filter(|&&l| l != IGNORE).count() > 5);
        assert!((masked_only - full).abs() < 1e-5, "masked-only {masked_only} vs full {full}");
    }
}
