//! Sentence pairs for masked-LM plus next-sentence prediction, built as
//! BERT's `create_pretraining_data.py` does (Devlin et al. 2018, section
//! 3.1): sentences of a document are gathered until they fill a sequence,
//! cut at a random sentence boundary into A and B, and half the time B is
//! replaced by sentences from another document (the "random next" label).
//! Each pair becomes `[CLS] A [SEP] B [SEP]`, segment B starting after the
//! first `[SEP]`; when A and B are too long together, tokens are cut from
//! the longer one, at its front or back by a coin flip.
use super::packing::{Packed, Pairs};
use super::tokenizer::Framing;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `documents`: per document, its sentences as token ids (no special tokens).
pub fn pair(documents: &[Vec<Vec<u32>>], framing: Framing, seq_len: usize, seed: u64) -> Packed {
    let documents: Vec<&Vec<Vec<u32>>> = documents.iter().filter(|d| d.iter().any(|s| !s.is_empty())).collect();
    let target = seq_len - 3;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut packed = Packed { seq_len, ids: Vec::new(), lengths: Vec::new(), pairs: Some(Pairs::default()) };
    for (d, document) in documents.iter().enumerate() {
        let (mut chunk, mut length, mut i) = (Vec::new(), 0, 0);
        while i < document.len() {
            chunk.push(&document[i]);
            length += document[i].len();
            if i + 1 == document.len() || length >= target {
                let a_end = if chunk.len() >= 2 { rng.random_range(1..chunk.len()) } else { 1 };
                let mut a: Vec<u32> = chunk[..a_end].iter().flat_map(|s| s.iter().copied()).collect();
                let random_next = documents.len() > 1 && (chunk.len() == 1 || rng.random_bool(0.5));
                let mut b: Vec<u32> = if random_next {
                    let other = loop {
                        let o = rng.random_range(0..documents.len());
                        if o != d {
                            break documents[o];
                        }
                    };
                    let mut b = Vec::new();
                    for sentence in &other[rng.random_range(0..other.len())..] {
                        b.extend_from_slice(sentence);
                        if a.len() + b.len() >= target {
                            break;
                        }
                    }
                    // The sentences B did not use start the next chunk.
                    i -= chunk.len() - a_end;
                    b
                } else {
                    chunk[a_end..].iter().flat_map(|s| s.iter().copied()).collect()
                };
                if !a.is_empty() && !b.is_empty() {
                    truncate_pair(&mut a, &mut b, target, &mut rng);
                    push(&mut packed, framing, &a, &b, random_next);
                }
                chunk.clear();
                length = 0;
            }
            i += 1;
        }
    }
    packed
}

fn truncate_pair(a: &mut Vec<u32>, b: &mut Vec<u32>, target: usize, rng: &mut ChaCha8Rng) {
    while a.len() + b.len() > target {
        let longer = if a.len() > b.len() { &mut *a } else { &mut *b };
        if rng.random_bool(0.5) {
            longer.remove(0);
        } else {
            longer.pop();
        }
    }
}

fn push(packed: &mut Packed, framing: Framing, a: &[u32], b: &[u32], random_next: bool) {
    let length = a.len() + b.len() + 3;
    framing.frame(&mut packed.ids, a, Some(b));
    packed.ids.extend(std::iter::repeat_n(framing.pad, packed.seq_len - length));
    packed.lengths.push(length as u32);
    let pairs = packed.pairs.as_mut().expect("a pair table");
    pairs.b_start.push(a.len() as u32 + 2);
    pairs.random_next.push(u8::from(random_next));
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAMING: Framing = Framing { cls: 2, sep: 3, pad: 0 };

    /// Documents of `sentences` sentences of 5 tokens; token ids say which
    /// document and sentence they come from (100 × document + sentence).
    fn documents(count: u32, sentences: u32) -> Vec<Vec<Vec<u32>>> {
        (0..count).map(|d| (0..sentences).map(|s| vec![100 * (d + 1) + s; 5]).collect()).collect()
    }

    #[test]
    fn pairs_are_framed_and_b_continues_a_unless_random() {
        let packed = pair(&documents(20, 12), FRAMING, 32, 7);
        let pairs = packed.pairs.as_ref().unwrap();
        assert!(packed.len() > 40);
        for r in 0..packed.len() {
            let (row, length, b) = (packed.row(r), packed.lengths[r] as usize, pairs.b_start[r] as usize);
            assert_eq!((row[0], row[b - 1], row[length - 1]), (2, 3, 3), "row {r}: {row:?}");
            assert!(row[length..].iter().all(|&t| t == 0) && length <= 32);
            let (a, bs) = (&row[1..b - 1], &row[b..length - 1]);
            assert!(!a.is_empty() && !bs.is_empty());
            let document = |t: u32| t / 100;
            assert!(a.iter().all(|&t| document(t) == document(a[0])), "A is one document");
            let same = document(bs[0]) == document(a[0]);
            assert_eq!(pairs.random_next[r] == 0, same, "row {r}: a random B comes from another document");
            if same {
                assert!(bs[0] % 100 > a[a.len() - 1] % 100, "B follows A");
            }
        }
        let random = pairs.random_next.iter().filter(|&&x| x == 1).count() as f64 / packed.len() as f64;
        assert!((0.35..0.65).contains(&random), "about half are random: {random}");
    }

    #[test]
    fn long_pairs_are_cut_to_the_sequence_length() {
        let long: Vec<Vec<Vec<u32>>> = (0..3).map(|d| vec![vec![100 * (d + 1); 40], vec![100 * (d + 1) + 1; 40]]).collect();
        let packed = pair(&long, FRAMING, 16, 1);
        assert!(packed.len() >= 3);
        assert!(packed.lengths.iter().all(|&l| l == 16));
    }
}
