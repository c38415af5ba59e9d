//! Dynamic masking for masked-LM pretraining (Devlin et al. 2018, §3.1): each
//! time a sequence is drawn, `mask_prob` of its real tokens are selected; of
//! those 80% become `[MASK]`, 10% a random token and 10% stay as they are.
//! Special tokens and padding are never selected. The loss is taken only at
//! selected positions: every other label is [`IGNORE`].
use rand::Rng;

/// Label of positions that do not count in the loss (PyTorch's convention).
pub const IGNORE: i64 = -100;

pub struct Masker {
    pub mask_prob: f64,
    pub mask_id: u32,
    pub vocab_size: u32,
    /// Indexed by token id: true for tokens never masked nor drawn at random.
    special: Vec<bool>,
}

/// Model inputs and labels for a batch of masked sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct Masked {
    pub input_ids: Vec<i64>,
    pub labels: Vec<i64>,
}

impl Masker {
    pub fn new(mask_prob: f64, mask_id: u32, vocab_size: u32, special_ids: &[u32]) -> Masker {
        let mut special = vec![false; vocab_size as usize];
        for &id in special_ids {
            special[id as usize] = true;
        }
        Masker { mask_prob, mask_id, vocab_size, special }
    }

    fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// Masks `ids` (sequences of `seq_len` back to back; padding is a special
    /// token). A sequence with no selected position gets one, so no row of a
    /// batch is without a target.
    pub fn mask(&self, ids: &[u32], seq_len: usize, rng: &mut impl Rng) -> Masked {
        let mut input_ids: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
        let mut labels = vec![IGNORE; ids.len()];
        for (row, chunk) in ids.chunks(seq_len).enumerate() {
            let candidates: Vec<usize> = (0..chunk.len()).filter(|&i| !self.is_special(chunk[i])).collect();
            let mut selected: Vec<usize> = candidates.iter().copied().filter(|_| rng.random_bool(self.mask_prob)).collect();
            if selected.is_empty() && !candidates.is_empty() {
                selected.push(candidates[rng.random_range(0..candidates.len())]);
            }
            for i in selected {
                let at = row * seq_len + i;
                labels[at] = chunk[i] as i64;
                let roll: f64 = rng.random();
                if roll < 0.8 {
                    input_ids[at] = self.mask_id as i64;
                } else if roll < 0.9 {
                    input_ids[at] = self.random_token(rng) as i64;
                }
            }
        }
        Masked { input_ids, labels }
    }

    fn random_token(&self, rng: &mut impl Rng) -> u32 {
        loop {
            let id = rng.random_range(0..self.vocab_size);
            if !self.is_special(id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    // ids 0..5 are special ([PAD] 0, [CLS] 2, [SEP] 3, [MASK] 4); the rest are words.
    const SPECIAL: [u32; 5] = [0, 1, 2, 3, 4];
    const MASK: u32 = 4;
    const VOCAB: u32 = 1000;

    fn corpus(rows: usize, seq_len: usize) -> Vec<u32> {
        let mut ids = Vec::new();
        for r in 0..rows {
            ids.push(2);
            // Rows have varying amounts of padding.
            let real = seq_len - 2 - (r % 7);
            ids.extend((0..real).map(|i| 5 + ((r * 31 + i * 7) % 900) as u32));
            ids.push(3);
            ids.extend(std::iter::repeat_n(0, seq_len - real - 2));
        }
        ids
    }

    #[test]
    fn statistics_follow_bert() {
        let seq_len = 64;
        let ids = corpus(2000, seq_len);
        let masker = Masker::new(0.15, MASK, VOCAB, &SPECIAL);
        let out = masker.mask(&ids, seq_len, &mut ChaCha8Rng::seed_from_u64(7));

        let eligible = ids.iter().filter(|id| !SPECIAL.contains(id)).count();
        let selected: Vec<usize> = (0..ids.len()).filter(|&i| out.labels[i] != IGNORE).collect();
        let rate = selected.len() as f64 / eligible as f64;
        assert!((rate - 0.15).abs() < 0.005, "selection rate {rate}");

        let share = |pred: &dyn Fn(usize) -> bool| selected.iter().filter(|&&i| pred(i)).count() as f64 / selected.len() as f64;
        let masked = share(&|i| out.input_ids[i] == MASK as i64);
        let kept = share(&|i| out.input_ids[i] == ids[i] as i64);
        let random = 1.0 - masked - kept;
        assert!((masked - 0.8).abs() < 0.01, "[MASK] share {masked}");
        // A random replacement can draw the original token: kept is 10% + a hair.
        assert!((kept - 0.1).abs() < 0.01, "kept share {kept}");
        assert!((random - 0.1).abs() < 0.01, "random share {random}");

        for i in 0..ids.len() {
            if SPECIAL.contains(&ids[i]) {
                assert_eq!(out.labels[i], IGNORE, "special token selected at {i}");
                assert_eq!(out.input_ids[i], ids[i] as i64, "special token changed at {i}");
            } else if out.labels[i] == IGNORE {
                assert_eq!(out.input_ids[i], ids[i] as i64, "unselected token changed at {i}");
            } else {
                assert_eq!(out.labels[i], ids[i] as i64, "label is not the original token at {i}");
            }
        }
    }

    #[test]
    fn same_seed_same_masks_and_every_row_has_a_target() {
        let ids = corpus(50, 16);
        let masker = Masker::new(0.01, MASK, VOCAB, &SPECIAL);
        let a = masker.mask(&ids, 16, &mut ChaCha8Rng::seed_from_u64(1));
        let b = masker.mask(&ids, 16, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(a, b);
        for row in a.labels.chunks(16) {
            assert!(row.iter().any(|&l| l != IGNORE));
        }
    }
}
