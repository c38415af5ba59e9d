//! Packs tokenized documents into fixed-length sequences: the documents'
//! tokens form one stream (documents joined by `[SEP]`), cut into windows of
//! `seq_len - 2` tokens, each framed as `[CLS] window [SEP]`. Only the last
//! window can be short; it is padded. Results are cached by the corpus and
//! vocabulary hashes, so only the first trial of the first run tokenizes.
use super::cache::{key, Cache};
use super::corpus::Corpus;
use super::tokenizer::Vocab;
use crate::error::InputError;
use tch::{Kind, Tensor};

/// Sequences of `seq_len` token ids, row-major, padded with `[PAD]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    pub seq_len: usize,
    pub ids: Vec<u32>,
    /// Real (unpadded) length of each sequence.
    pub lengths: Vec<u32>,
    /// For sentence pairs (next-sentence prediction), per sequence.
    pub pairs: Option<Pairs>,
}

/// Per sequence of sentence pairs: where segment B starts, and whether B
/// is a random sentence rather than A's continuation (the NSP label, 1 for
/// random as in Hugging Face's `next_sentence_label`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pairs {
    pub b_start: Vec<u32>,
    pub random_next: Vec<u8>,
}

impl Packed {
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    pub fn row(&self, index: usize) -> &[u32] {
        &self.ids[index * self.seq_len..(index + 1) * self.seq_len]
    }

    /// The sequences at `rows`, in that order.
    fn select(&self, rows: impl Iterator<Item = usize>) -> Packed {
        let mut packed = Packed { seq_len: self.seq_len, ids: Vec::new(), lengths: Vec::new(), pairs: self.pairs.as_ref().map(|_| Pairs::default()) };
        for i in rows {
            packed.ids.extend_from_slice(self.row(i));
            packed.lengths.push(self.lengths[i]);
            if let (Some(to), Some(from)) = (packed.pairs.as_mut(), self.pairs.as_ref()) {
                to.b_start.push(from.b_start[i]);
                to.random_next.push(from.random_next[i]);
            }
        }
        packed
    }

    /// Holds out every k-th sequence (k = 1 / `fraction`, rounded up), at
    /// most `max_eval` of them: spread over the corpus rather than its tail,
    /// and the same split for every seed.
    pub fn split(&self, fraction: f64, max_eval: usize) -> (Packed, Packed) {
        let every = (1.0 / fraction).ceil().max(2.0) as usize;
        let is_eval = |i: usize| i % every == every - 1 && i / every < max_eval;
        let rows = |eval: bool| (0..self.len()).filter(move |&i| is_eval(i) == eval);
        (self.select(rows(false)), self.select(rows(true)))
    }
}

pub fn pack(documents: &[Vec<u32>], vocab: &Vocab, seq_len: usize) -> Packed {
    let window = seq_len - 2;
    let stream: Vec<u32> = documents
        .iter()
        .filter(|d| !d.is_empty())
        .enumerate()
        .flat_map(|(i, d)| (i > 0).then_some(vocab.sep).into_iter().chain(d.iter().copied()))
        .collect();
    let mut packed = Packed { seq_len, ids: Vec::with_capacity(stream.len() + stream.len() / window * 2), lengths: Vec::new(), pairs: None };
    let framing = vocab.framing();
    for chunk in stream.chunks(window) {
        framing.frame(&mut packed.ids, chunk, None);
        packed.ids.extend(std::iter::repeat_n(vocab.pad, window - chunk.len()));
        packed.lengths.push(chunk.len() as u32 + 2);
    }
    packed
}

/// Seed of the sentence-pair sampling: pairs are data, the same for every
/// trial, as BERT made them once before training.
const PAIR_SEED: u64 = 0x9a1e_d5e7;

/// [`pack`] of the whole corpus, or with `pairs` its sentence pairs
/// ([`super::pairs::pair`]), through the cache.
pub fn pack_cached(corpus: &Corpus, vocab: &Vocab, seq_len: usize, pairs: bool, cache: &Cache) -> Result<Packed, InputError> {
    let kind: &[u8] = if pairs { b"pairs-v1" } else { b"pack-v1" };
    let entry = cache.entry("packed", &key(&[kind, corpus.fingerprint.as_bytes(), vocab.fingerprint.as_bytes(), &seq_len.to_le_bytes()]), "safetensors");
    if let Some(packed) = read(&entry, seq_len).filter(|p| p.pairs.is_some() == pairs) {
        return Ok(packed);
    }
    let packed = if pairs {
        let documents: Vec<Vec<String>> = corpus.documents.iter().map(|d| super::sentences::split(d)).collect();
        let flat: Vec<String> = documents.iter().flatten().cloned().collect();
        let mut encoded = vocab.encode_all(&flat)?.into_iter();
        let by_document: Vec<Vec<Vec<u32>>> = documents.iter().map(|d| encoded.by_ref().take(d.len()).collect()).collect();
        super::pairs::pair(&by_document, vocab.framing(), seq_len, PAIR_SEED)
    } else {
        pack(&vocab.encode_all(&corpus.documents)?, vocab, seq_len)
    };
    if let Err(e) = cache.store(&entry, |path| write(&packed, path)) {
        tracing::warn!("could not cache packed sequences at {}: {e}", entry.display());
    }
    Ok(packed)
}

fn write(packed: &Packed, path: &std::path::Path) -> anyhow::Result<()> {
    let as_i32 = |v: &[u32]| Tensor::from_slice(&v.iter().map(|&x| x as i32).collect::<Vec<_>>());
    let mut tensors = vec![("ids", as_i32(&packed.ids)), ("lengths", as_i32(&packed.lengths))];
    if let Some(pairs) = &packed.pairs {
        tensors.push(("b_start", as_i32(&pairs.b_start)));
        tensors.push(("random_next", as_i32(&pairs.random_next.iter().map(|&x| u32::from(x)).collect::<Vec<_>>())));
    }
    Tensor::write_safetensors(&tensors, path)?;
    Ok(())
}

fn read(path: &std::path::Path, seq_len: usize) -> Option<Packed> {
    let tensors = Tensor::read_safetensors(path).ok()?;
    let get = |name: &str| -> Option<Vec<u32>> {
        let (_, t) = tensors.iter().find(|(n, _)| n == name)?;
        let values: Vec<i32> = Vec::try_from(t.to_kind(Kind::Int)).ok()?;
        Some(values.into_iter().map(|x| x as u32).collect())
    };
    let pairs = match (get("b_start"), get("random_next")) {
        (Some(b_start), Some(random_next)) => Some(Pairs { b_start, random_next: random_next.into_iter().map(|x| x as u8).collect() }),
        _ => None,
    };
    let packed = Packed { seq_len, ids: get("ids")?, lengths: get("lengths")?, pairs };
    (packed.ids.len() == packed.lengths.len() * seq_len).then_some(packed)
}
