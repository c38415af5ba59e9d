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
    let labels = batch.labels.view([-1]);
    let positions = labels.ne(IGNORE).nonzero().squeeze_dim(1);
    let selected = hidden.view([-1, width]).index_select(0, &positions);
    (model.mlm_logits(&selected), labels.index_select(0, &positions))
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
