//! Shuffled epochs over a training set, shared by the pretraining and the
//! fine-tuning batch streams: each epoch visits every row once, in an order
//! drawn from the trial's seed. The random stream also serves the caller
//! (pretraining draws its masks from it) in the order the draws happen, so
//! shuffling and masking interleave as one reproducible sequence. Where
//! the stream stands is a small [`Cursor`], which a checkpoint keeps.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub struct Epochs {
    rng: ChaCha8Rng,
    rows: usize,
    order: Vec<usize>,
    next: usize,
    /// Where the random stream stood when this epoch's order was drawn.
    epoch_start: Option<u128>,
}

/// Where a stream of epochs stands: enough to go on exactly as it would
/// have (the order itself is drawn again from where its draw began).
/// Positions are text: JSON numbers do not hold 128 bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    word_pos: String,
    epoch_start: Option<String>,
    next: usize,
}

impl Epochs {
    /// Epochs over `rows` rows; the first order is drawn when it is needed.
    pub fn new(rows: usize, seed: u64) -> Epochs {
        Epochs { rng: ChaCha8Rng::seed_from_u64(seed), rows, order: Vec::new(), next: 0, epoch_start: None }
    }

    fn start_epoch_if_done(&mut self) {
        if self.next >= self.order.len() {
            self.epoch_start = Some(self.rng.get_word_pos());
            self.order = (0..self.rows).collect();
            self.order.shuffle(&mut self.rng);
            self.next = 0;
        }
    }

    pub fn cursor(&self) -> Cursor {
        Cursor { word_pos: self.rng.get_word_pos().to_string(), epoch_start: self.epoch_start.map(|p| p.to_string()), next: self.next }
    }

    /// Goes to where `cursor` (of epochs with this seed and row count) stood.
    pub fn restore(&mut self, cursor: &Cursor) -> anyhow::Result<()> {
        let position = |text: &str| text.parse::<u128>().map_err(|e| anyhow::anyhow!("a checkpoint's data cursor `{text}`: {e}"));
        self.order.clear();
        self.epoch_start = cursor.epoch_start.as_deref().map(position).transpose()?;
        if let Some(start) = self.epoch_start {
            self.rng.set_word_pos(start);
            self.order = (0..self.rows).collect();
            self.order.shuffle(&mut self.rng);
        }
        self.rng.set_word_pos(position(&cursor.word_pos)?);
        self.next = cursor.next;
        Ok(())
    }

    /// The next row, going on into a new epoch when this one is done.
    pub fn next_row(&mut self) -> usize {
        self.start_epoch_if_done();
        self.next += 1;
        self.order[self.next - 1]
    }

    /// Up to `n` of the rows this epoch has left (a new epoch starts when
    /// the last one is done): the last batch of an epoch may be short.
    pub fn next_in_epoch(&mut self, n: usize) -> Vec<usize> {
        self.start_epoch_if_done();
        let end = (self.next + n).min(self.order.len());
        let rows = self.order[self.next..end].to_vec();
        self.next = end;
        rows
    }

    /// The random stream, for draws that follow the order's.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn a_restored_cursor_goes_on_exactly_mid_epoch_and_across_epochs() {
        // Rows and draws of the caller's (masking) interleaved, as in training.
        let draw = |epochs: &mut Epochs, n: usize| -> Vec<(usize, u32)> { (0..n).map(|_| (epochs.next_row(), epochs.rng().random())).collect() };
        for at in [0, 3, 7, 10, 13] {
            let mut straight = Epochs::new(7, 11);
            let before = draw(&mut straight, at);
            let cursor = straight.cursor();
            let after = draw(&mut straight, 20);
            let mut resumed = Epochs::new(7, 11);
            resumed.restore(&serde_json::from_str(&serde_json::to_string(&cursor).unwrap()).unwrap()).unwrap();
            assert_eq!(draw(&mut resumed, 20), after, "resumed after {at} rows ({} drawn before)", before.len());
        }
    }

    #[test]
    fn every_epoch_visits_every_row_once_in_a_seeded_order() {
        let mut a = Epochs::new(5, 3);
        let first: Vec<usize> = (0..5).map(|_| a.next_row()).collect();
        let second: Vec<usize> = (0..5).map(|_| a.next_row()).collect();
        for epoch in [&first, &second] {
            let mut sorted = epoch.clone();
            sorted.sort();
            assert_eq!(sorted, vec![0, 1, 2, 3, 4]);
        }
        let mut b = Epochs::new(5, 3);
        assert_eq!(b.next_in_epoch(3), first[..3]);
        assert_eq!(b.next_in_epoch(3), first[3..], "the epoch's last batch is short");
        assert_eq!(b.next_in_epoch(3), second[..3]);
    }
}
