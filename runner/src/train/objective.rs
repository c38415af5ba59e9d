//! The pretraining objective: masked-LM scored only where tokens were
//! masked, plus BERT's next-sentence prediction when the data are sentence
//! pairs (`data.nsp`); and the held-out evaluation built on it
//! (`eval/loss`, `eval/accuracy`, and `eval/nsp_loss`, `eval/nsp_accuracy`).
use crate::data::batches::Batch;
use crate::data::masking::IGNORE;
use models::heads::NextSentenceHead;
use models::MaskedLm;
use tch::{Kind, Reduction, Tensor};

/// What a pretraining trial trains: the plugin's masked-LM model, and with
/// `data.nsp` a next-sentence head on the same encoder output.
pub struct Pretraining {
    pub model: Box<dyn MaskedLm>,
    pub next_sentence: Option<NextSentenceHead>,
}

/// One forward pass: MLM logits and targets at the masked positions (the
/// MLM head runs only there, not over every token, as in BERT's own code),
/// and the next-sentence logits when there is a head for them.
struct Outputs {
    mlm_logits: Tensor,
    targets: Tensor,
    next_sentence: Option<Tensor>,
}

impl Pretraining {
    /// Trainable parameters of the model `knobs` describe, with the
    /// next-sentence head when `nsp` (then Hugging Face's
    /// `BertForPreTraining` count, the one published sizes quote).
    pub fn param_count(plugin: &dyn models::Plugin, knobs: &models::KnobValues, nsp: bool) -> Result<i64, models::KnobError> {
        let hidden = knobs.get("hidden").and_then(|v| v.as_i64()).unwrap_or(0);
        Ok(plugin.param_count(knobs)? + if nsp { NextSentenceHead::param_count(hidden) } else { 0 })
    }

    fn forward(&self, batch: &Batch, train: bool) -> Outputs {
        let hidden = self.model.encode(&batch.input, train);
        let width = hidden.size()[2];
        let selected = hidden.view([-1, width]).index_select(0, &batch.positions);
        Outputs {
            mlm_logits: self.model.mlm_logits(&selected).to_kind(Kind::Float),
            targets: batch.targets.shallow_clone(),
            next_sentence: self.next_sentence.as_ref().map(|head| head.logits(&hidden).to_kind(Kind::Float)),
        }
    }

    /// The training loss: mean cross-entropy over masked positions, plus
    /// the next-sentence cross-entropy (BERT's sum of the two).
    pub fn loss(&self, batch: &Batch) -> Tensor {
        let out = self.forward(batch, true);
        let mlm = out.mlm_logits.cross_entropy_loss::<Tensor>(&out.targets, None, Reduction::Mean, IGNORE, 0.0);
        match (out.next_sentence, &batch.next_labels) {
            (Some(logits), Some(labels)) => mlm + logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, IGNORE, 0.0),
            _ => mlm,
        }
    }

    /// `batch`'s share of the training loss of a whole batch with `whole`
    /// (masked positions, sentence pairs): its sums divided by the whole's
    /// counts, so the shares of a batch's micro-batches add up to
    /// [`Pretraining::loss`] of the batch.
    pub fn loss_share(&self, batch: &Batch, (masked, pairs): (usize, usize)) -> Tensor {
        let out = self.forward(batch, true);
        let mlm = out.mlm_logits.cross_entropy_loss::<Tensor>(&out.targets, None, Reduction::Sum, IGNORE, 0.0) / masked.max(1) as f64;
        match (out.next_sentence, &batch.next_labels) {
            (Some(logits), Some(labels)) => mlm + logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Sum, IGNORE, 0.0) / pairs.max(1) as f64,
            _ => mlm,
        }
    }

    /// Loss and accuracy over every masked position of the held-out set,
    /// and over its sentence pairs, in eval mode (no dropout).
    pub fn evaluate(&self, batches: &[Batch]) -> EvalResult {
        tch::no_grad(|| {
            let (mut mlm, mut nsp) = (HeldOut::default(), HeldOut::default());
            for batch in batches {
                let out = self.forward(batch, false);
                mlm.add(&out.mlm_logits, &out.targets);
                if let (Some(logits), Some(labels)) = (&out.next_sentence, &batch.next_labels) {
                    nsp.add(logits, labels);
                }
            }
            EvalResult { loss: mlm.loss(), accuracy: mlm.accuracy(), next_sentence: (nsp.count > 0).then(|| (nsp.loss(), nsp.accuracy())) }
        })
    }
}

/// Summed cross-entropy and correct predictions over a held-out set.
#[derive(Default)]
struct HeldOut {
    loss_sum: f64,
    correct: i64,
    count: i64,
}

impl HeldOut {
    fn add(&mut self, logits: &Tensor, targets: &Tensor) {
        self.loss_sum += f64::try_from(logits.cross_entropy_loss::<Tensor>(targets, None, Reduction::Sum, IGNORE, 0.0)).unwrap_or(f64::NAN);
        self.correct += i64::try_from(logits.argmax(-1, false).eq_tensor(targets).sum(Kind::Int64)).unwrap_or(0);
        self.count += targets.size()[0];
    }

    fn loss(&self) -> f64 {
        self.loss_sum / self.count.max(1) as f64
    }

    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.count.max(1) as f64
    }
}

pub struct EvalResult {
    pub loss: f64,
    pub accuracy: f64,
    /// Next-sentence loss and accuracy, with `data.nsp`.
    pub next_sentence: Option<(f64, f64)>,
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
        let model = Pretraining { model: plugin.build(&vs.root(), &plugin.resolve(&knobs).unwrap()).unwrap(), next_sentence: None };
        let ids: Vec<u32> = (0..4 * 16).map(|i| 5 + (i * 7 % 59) as u32).collect();
        let masked = Masker::new(0.3, 4, 64, &[0, 1, 2, 3, 4]).mask(&ids, 16, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let input_ids = Tensor::from_slice(&masked.input_ids).view([4, 16]);
        let labels = Tensor::from_slice(&masked.labels);
        let positions = labels.ne(IGNORE).nonzero().squeeze_dim(1);
        let batch = Batch {
            input: models::EncoderInput { token_type_ids: input_ids.zeros_like(), input_ids, attention_mask: None },
            targets: labels.index_select(0, &positions),
            positions,
            next_labels: None,
            tokens: 64,
        };
        // Without dropout, training mode computes the same function.
        let masked_only = tch::no_grad(|| f64::try_from(model.loss(&batch)).unwrap());
        // The decoder over every position, as Hugging Face's BertForMaskedLM
        // computes it, with unmasked positions ignored by the loss.
        let full = tch::no_grad(|| {
            let logits = model.model.mlm_logits(&model.model.encode(&batch.input, false));
            let loss = logits.view([-1, 64]).cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, IGNORE, 0.0);
            f64::try_from(loss).unwrap()
        });
        assert!(masked.labels.iter().filter(|&&l| l != IGNORE).count() > 5);
        assert!((masked_only - full).abs() < 1e-5, "masked-only {masked_only} vs full {full}");
    }
}
