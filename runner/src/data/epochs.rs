//! Shuffled epochs over a training set, shared by the pretraining and the
//! fine-tuning batch streams: each epoch visits every row once, in an order
//! drawn from the trial's seed. The random stream also serves the caller
//! (pretraining draws its masks from it) in the order the draws happen, so
//! shuffling and masking interleave as one reproducible sequence.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub struct Epochs {
    rng: ChaCha8Rng,
    rows: usize,
    order: Vec<usize>,
    next: usize,
}

impl Epochs {
    /// Epochs over `rows` rows; the first order is drawn when it is needed.
    pub fn new(rows: usize, seed: u64) -> Epochs {
        Epochs { rng: ChaCha8Rng::seed_from_u64(seed), rows, order: Vec::new(), next: 0 }
    }

    fn start_epoch_if_done(&mut self) {
        if self.next >= self.order.len() {
            self.order = (0..self.rows).collect();
            self.order.shuffle(&mut self.rng);
            self.next = 0;
        }
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
