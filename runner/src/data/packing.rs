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

    fn from_rows<'a>(seq_len: usize, rows: impl Iterator<Item = (&'a [u32], u32)>) -> Packed {
        let mut packed = Packed { seq_len, ids: Vec::new(), lengths: Vec::new() };
        for (row, length) in rows {
            packed.ids.extend_from_slice(row);
            packed.lengths.push(length);
        }
        packed
    }

    /// Holds out every k-th sequence (k = 1 / `fraction`, rounded up), at
    /// most `max_eval` of them: spread over the corpus rather than its tail,
    /// and the same split for every seed.
    pub fn split(&self, fraction: f64, max_eval: usize) -> (Packed, Packed) {
        let every = (1.0 / fraction).ceil().max(2.0) as usize;
        let is_eval = |i: usize| i % every == every - 1 && i / every < max_eval;
        let rows = |eval: bool| (0..self.len()).filter(move |&i| is_eval(i) == eval).map(|i| (self.row(i), self.lengths[i]));
        (Packed::from_rows(self.seq_len, rows(false)), Packed::from_rows(self.seq_len, rows(true)))
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
    let mut packed = Packed { seq_len, ids: Vec::with_capacity(stream.len() + stream.len() / window * 2), lengths: Vec::new() };
    for chunk in stream.chunks(window) {
        packed.ids.push(vocab.cls);
        packed.ids.extend_from_slice(chunk);
        packed.ids.push(vocab.sep);
        packed.ids.extend(std::iter::repeat_n(vocab.pad, window - chunk.len()));
        packed.lengths.push(chunk.len() as u32 + 2);
    }
    packed
}

/// [`pack`] of the whole corpus, through the cache.
pub fn pack_cached(corpus: &Corpus, vocab: &Vocab, seq_len: usize, cache: &Cache) -> Result<Packed, InputError> {
    let entry = cache.entry(
        "packed",
        &key(&[b"pack-v1", corpus.fingerprint.as_bytes(), vocab.fingerprint.as_bytes(), &seq_len.to_le_bytes()]),
        "safetensors",
    );
    if let Some(packed) = read(&entry, seq_len) {
        return Ok(packed);
    }
    let packed = pack(&vocab.encode_all(&corpus.documents)?, vocab, seq_len);
    if let Err(e) = cache.store(&entry, |path| write(&packed, path)) {
        tracing::warn!("could not cache packed sequences at {}: {e}", entry.display());
    }
    Ok(packed)
}

fn write(packed: &Packed, path: &std::path::Path) -> anyhow::Result<()> {
    let as_i32 = |v: &[u32]| Tensor::from_slice(&v.iter().map(|&x| x as i32).collect::<Vec<_>>());
    Tensor::write_safetensors(&[("ids", as_i32(&packed.ids)), ("lengths", as_i32(&packed.lengths))], path)?;
    Ok(())
}

fn read(path: &std::path::Path, seq_len: usize) -> Option<Packed> {
    let tensors = Tensor::read_safetensors(path).ok()?;
    let get = |name: &str| -> Option<Vec<u32>> {
        let (_, t) = tensors.iter().find(|(n, _)| n == name)?;
        let values: Vec<i32> = Vec::try_from(t.to_kind(Kind::Int)).ok()?;
        Some(values.into_iter().map(|x| x as u32).collect())
    };
    let packed = Packed { seq_len, ids: get("ids")?, lengths: get("lengths")? };
    (packed.ids.len() == packed.lengths.len() * seq_len).then_some(packed)
}
