//! Labelled examples as tensors: each batch padded to its longest example
//! (not to `data.seq_len`, so short sentences cost little), with segment
//! ids for sentence pairs; training batches in a fresh shuffled order each
//! epoch, evaluation batches in file order.
use super::Split;
use crate::data::epochs::{Cursor, Epochs};
use models::EncoderInput;
use tch::{Device, Kind, Tensor};

pub struct LabeledBatch {
    pub input: EncoderInput,
    /// `[batch]`: class indices (int64), or values (float) for regression.
    pub labels: Tensor,
}

/// The examples `rows` of `split` as one batch on `device`.
pub fn batch(split: &Split, rows: &[usize], regression: bool, device: Device) -> LabeledBatch {
    let width = rows.iter().map(|&r| split.ids[r].len()).max().unwrap_or(0);
    let shape = [rows.len() as i64, width as i64];
    let mut ids = Vec::with_capacity(rows.len() * width);
    let mut types = Vec::with_capacity(rows.len() * width);
    let mut mask = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        let example = &split.ids[r];
        for i in 0..width {
            // Padding is id 0 and segment 0, as in BERT; the mask hides it.
            ids.push(example.get(i).map_or(0, |&id| i64::from(id)));
            types.push(i64::from(i >= split.b_start[r] && i < example.len()));
            mask.push(i64::from(i < example.len()));
        }
    }
    let tokens = tokens(split, rows);
    let labels: Vec<f64> = rows.iter().map(|&r| split.labels[r]).collect();
    let labels = Tensor::from_slice(&labels).to_kind(if regression { Kind::Float } else { Kind::Int64 });
    LabeledBatch {
        input: EncoderInput {
            input_ids: Tensor::from_slice(&ids).view(shape).to(device),
            token_type_ids: Tensor::from_slice(&types).view(shape).to(device),
            attention_mask: (tokens < rows.len() * width).then(|| Tensor::from_slice(&mask).view(shape).to(device)),
        },
        labels: labels.to(device),
    }
}

/// The real (non-padding) tokens of the examples `rows` of `split`.
pub fn tokens(split: &Split, rows: &[usize]) -> usize {
    rows.iter().map(|&r| split.ids[r].len()).sum()
}

/// Endless training batches: every example once per epoch, in an order
/// drawn from the trial's seed.
pub struct TrainRows {
    epochs: Epochs,
    batch_size: usize,
}

impl TrainRows {
    pub fn new(split: &Split, batch_size: usize, seed: u64) -> Self {
        TrainRows { epochs: Epochs::new(split.len(), seed), batch_size }
    }

    /// The next batch's rows; the last batch of an epoch may be short, so
    /// an epoch is `ceil(examples / batch_size)` steps.
    pub fn next_rows(&mut self) -> Vec<usize> {
        self.epochs.next_in_epoch(self.batch_size)
    }

    pub fn cursor(&self) -> Cursor {
        self.epochs.cursor()
    }

    pub fn restore(&mut self, cursor: &Cursor) -> anyhow::Result<()> {
        self.epochs.restore(cursor)
    }
}
