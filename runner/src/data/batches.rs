//! Batches as tensors: training batches drawn in a fresh shuffled order each
//! epoch and masked anew each time (dynamic masking), and evaluation batches
//! in a fixed order with fixed masks so every evaluation of every trial
//! scores the same predictions.
use super::epochs::{Cursor, Epochs};
use super::masking::{Masker, IGNORE};
use super::packing::Packed;
use models::EncoderInput;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

/// Masks of evaluation batches come from this seed, whatever the trial's.
const EVAL_MASK_SEED: u64 = 0x5eed_e7a1;

pub struct Batch {
    pub input: EncoderInput,
    /// Flat indices (into `batch × seq`) of the masked positions, found on
    /// the host so the step needs no `nonzero` (which waits for the device).
    pub positions: Tensor,
    /// The original token at each of `positions`.
    pub targets: Tensor,
    /// `[batch]`, 1 where segment B is random (next-sentence prediction).
    pub next_labels: Option<Tensor>,
    /// Real (non-padding) tokens in the batch: what tokens/s counts.
    pub tokens: usize,
}

impl Batch {
    fn map(&self, f: impl Fn(&Tensor) -> Tensor) -> Batch {
        Batch {
            input: EncoderInput {
                input_ids: f(&self.input.input_ids),
                token_type_ids: f(&self.input.token_type_ids),
                attention_mask: self.input.attention_mask.as_ref().map(&f),
            },
            positions: f(&self.positions),
            targets: f(&self.targets),
            next_labels: self.next_labels.as_ref().map(&f),
            tokens: self.tokens,
        }
    }

    /// Masked positions (the count the masked-LM loss averages over).
    pub fn masked(&self) -> usize {
        self.targets.numel()
    }

    /// Sentence pairs (the count the next-sentence loss averages over).
    pub fn pairs(&self) -> usize {
        self.next_labels.as_ref().map_or(0, Tensor::numel)
    }

    /// The batch again, sharing its tensors.
    pub fn shallow_clone(&self) -> Batch {
        self.map(Tensor::shallow_clone)
    }

    /// Sequences in the batch.
    pub fn rows_len(&self) -> usize {
        self.input.input_ids.size()[0] as usize
    }

    /// The batch, on the host, cut into micro-batches of `rows` consecutive
    /// rows (the last may be shorter), for gradient accumulation: each
    /// keeps its own masked positions, renumbered from its first row.
    /// Nothing is drawn again, so together they are exactly the batch.
    pub fn split(self, rows: usize) -> Vec<Batch> {
        let all = self.rows_len();
        let rows = rows.max(1);
        if rows >= all {
            return vec![self];
        }
        let positions = Vec::<i64>::try_from(&self.positions).expect("positions are int64 on the host");
        (0..all).step_by(rows).map(|first| self.part(&positions, first..(first + rows).min(all))).collect()
    }

    /// The consecutive rows `range` of the batch, on the host (a rank's
    /// share of it), cut as [`Batch::split`] cuts.
    pub fn rows(self, range: std::ops::Range<usize>) -> Batch {
        if range == (0..self.rows_len()) {
            return self;
        }
        let positions = Vec::<i64>::try_from(&self.positions).expect("positions are int64 on the host");
        self.part(&positions, range)
    }

    /// Rows `range`, with the masked positions among `positions` (the
    /// batch's, read once for all its parts) that fall in them.
    fn part(&self, positions: &[i64], range: std::ops::Range<usize>) -> Batch {
        let seq_len = self.input.input_ids.size()[1];
        let (first, count) = (range.start as i64, range.len() as i64);
        let flat = (first * seq_len)..((first + count) * seq_len);
        // Positions are ascending, so a part's are one run of them.
        let start = positions.partition_point(|p| *p < flat.start) as i64;
        let end = positions.partition_point(|p| *p < flat.end) as i64;
        let rows_of = |t: &Tensor| t.narrow(0, first, count).contiguous();
        let attention_mask = self.input.attention_mask.as_ref().map(rows_of);
        let tokens = match &attention_mask {
            Some(mask) => mask.sum(tch::Kind::Int64).int64_value(&[]) as usize,
            None => (count * seq_len) as usize,
        };
        Batch {
            input: EncoderInput { input_ids: rows_of(&self.input.input_ids), token_type_ids: rows_of(&self.input.token_type_ids), attention_mask },
            positions: self.positions.narrow(0, start, end - start) - flat.start,
            targets: self.targets.narrow(0, start, end - start).contiguous(),
            next_labels: self.next_labels.as_ref().map(rows_of),
            tokens,
        }
    }

    /// The batch in pinned (page-locked) host memory, from which a copy to a
    /// GPU runs asynchronously. Pinning fails only for want of page-locked
    /// memory; the plain batch still works then.
    fn pinned(self) -> Batch {
        self.map(|t| torch_ops::pin_memory(t).unwrap_or_else(|_| t.shallow_clone()))
    }

    /// The batch on `device`; from pinned memory the copy does not block the
    /// host, so it overlaps the GPU's work.
    pub fn to(self, device: Device) -> Batch {
        if device == Device::Cpu {
            return self;
        }
        self.map(|t| t.to_device_(device, t.kind(), true, false))
    }
}

fn to_batch(packed: &Packed, rows: &[usize], masker: &Masker, rng: &mut ChaCha8Rng, device: Device) -> Batch {
    let seq_len = packed.seq_len;
    let ids: Vec<u32> = rows.iter().flat_map(|&r| packed.row(r).iter().copied()).collect();
    let masked = masker.mask(&ids, seq_len, rng);
    let shape = [rows.len() as i64, seq_len as i64];
    let lengths: Vec<usize> = rows.iter().map(|&r| packed.lengths[r] as usize).collect();
    let attention_mask = lengths.iter().any(|&l| l < seq_len).then(|| {
        let mask: Vec<i64> = lengths.iter().flat_map(|&l| (0..seq_len).map(move |i| i64::from(i < l))).collect();
        Tensor::from_slice(&mask).view(shape).to(device)
    });
    let input_ids = Tensor::from_slice(&masked.input_ids).view(shape).to(device);
    let (positions, targets): (Vec<i64>, Vec<i64>) =
        masked.labels.iter().enumerate().filter(|(_, &label)| label != IGNORE).map(|(at, &label)| (at as i64, label)).unzip();
    // Segment B (sentence pairs) is type 1 up to its closing [SEP]; padding
    // is type 0, as in BERT.
    let token_type_ids = match &packed.pairs {
        None => input_ids.zeros_like(),
        Some(pairs) => {
            let types: Vec<i64> = rows
                .iter()
                .zip(&lengths)
                .flat_map(|(&r, &length)| {
                    let b_start = pairs.b_start[r] as usize;
                    (0..seq_len).map(move |i| i64::from(i >= b_start && i < length))
                })
                .collect();
            Tensor::from_slice(&types).view(shape).to(device)
        }
    };
    let next_labels = packed.pairs.as_ref().map(|pairs| {
        let labels: Vec<i64> = rows.iter().map(|&r| i64::from(pairs.random_next[r])).collect();
        Tensor::from_slice(&labels).to(device)
    });
    Batch {
        input: EncoderInput { token_type_ids, input_ids, attention_mask },
        positions: Tensor::from_slice(&positions).to(device),
        targets: Tensor::from_slice(&targets).to(device),
        next_labels,
        tokens: lengths.iter().sum(),
    }
}

/// An endless stream of training batches for one trial, on the CPU (the
/// trainer prepares them on another thread and moves them itself).
pub struct TrainBatches<'a> {
    packed: &'a Packed,
    masker: &'a Masker,
    batch_size: usize,
    epochs: Epochs,
}

impl<'a> TrainBatches<'a> {
    pub fn new(packed: &'a Packed, masker: &'a Masker, batch_size: usize, seed: u64) -> Self {
        TrainBatches { packed, masker, batch_size, epochs: Epochs::new(packed.len(), seed) }
    }

    pub fn next_batch(&mut self) -> Batch {
        let rows: Vec<usize> = (0..self.batch_size).map(|_| self.epochs.next_row()).collect();
        to_batch(self.packed, &rows, self.masker, self.epochs.rng(), Device::Cpu)
    }

    /// Where the stream stands: after the last batch drawn.
    pub fn cursor(&self) -> Cursor {
        self.epochs.cursor()
    }

    /// Goes on from a checkpoint's cursor.
    pub fn restore(&mut self, cursor: &Cursor) -> anyhow::Result<()> {
        self.epochs.restore(cursor)
    }
}

/// The held-out set as batches, identical on every call.
pub fn eval_batches(packed: &Packed, masker: &Masker, batch_size: usize, device: Device) -> Vec<Batch> {
    let mut rng = ChaCha8Rng::seed_from_u64(EVAL_MASK_SEED);
    let rows: Vec<usize> = (0..packed.len()).collect();
    rows.chunks(batch_size).map(|chunk| to_batch(packed, chunk, masker, &mut rng, device)).collect()
}

/// How many batches the drawing thread may prepare ahead of training.
const AHEAD: usize = 2;

/// Runs `f` with a source of `batches` drawn on another thread, so that
/// masking, tensor building and (for a GPU `device`) pinning overlap the
/// training step instead of preceding it. The thread stops once `f` returns.
/// Each batch comes with the stream's cursor after it: the thread runs
/// ahead, so where training stands is the cursor of the last batch taken.
pub fn prefetched<R>(mut batches: TrainBatches<'_>, device: Device, f: impl FnOnce(&mut dyn FnMut() -> (Batch, Cursor)) -> R) -> R {
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel(AHEAD);
        let mut draw = move || {
            let batch = match device {
                Device::Cpu => batches.next_batch(),
                _ => batches.next_batch().pinned(),
            };
            (batch, batches.cursor())
        };
        scope.spawn(move || while sender.send(draw()).is_ok() {});
        let mut next = move || receiver.recv().expect("the drawing thread runs until the trainer is done");
        f(&mut next)
    })
}
