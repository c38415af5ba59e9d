//! The WordPiece tokenizer (Hugging Face `tokenizers`): trained on the corpus
//! and cached by the corpus' content hash, or loaded from a `vocab.txt` /
//! `tokenizer.json`. Normalisation and pre-tokenisation are BERT's (uncased).
use super::cache::{key, Cache};
use super::corpus::Corpus;
use crate::config::DataSection;
use crate::error::InputError;
use std::path::Path;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::{AddedToken, Tokenizer};

const KEY: &str = "data.tokenizer";
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// The special ids that frame a sequence: `[CLS] A [SEP]`, or
/// `[CLS] A [SEP] B [SEP]` for a pair, and the padding after it.
#[derive(Clone, Copy)]
pub struct Framing {
    pub cls: u32,
    pub sep: u32,
    pub pad: u32,
}

impl Framing {
    /// Appends `a` (and `b`) framed to `out`; returns where segment B
    /// starts in `out`'s new sequence, counted from its `[CLS]` (just past
    /// A's `[SEP]` when there is no B).
    pub fn frame(&self, out: &mut Vec<u32>, a: &[u32], b: Option<&[u32]>) -> usize {
        let start = out.len();
        out.push(self.cls);
        out.extend_from_slice(a);
        out.push(self.sep);
        let b_start = out.len() - start;
        if let Some(b) = b {
            out.extend_from_slice(b);
            out.push(self.sep);
        }
        b_start
    }
}

pub struct Vocab {
    tokenizer: Tokenizer,
    pub pad: u32,
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
    /// Ids never masked nor drawn as random replacements.
    pub special: Vec<u32>,
    /// Hash identifying this exact vocabulary, for caches built on it.
    pub fingerprint: String,
}

impl Vocab {
    pub fn framing(&self) -> Framing {
        Framing { cls: self.cls, sep: self.sep, pad: self.pad }
    }

    pub fn size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Writes `tokenizer.json`, which Hugging Face's fast tokenizers load.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        self.tokenizer.save(path, false).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Token ids of each document, without special tokens.
    pub fn encode_all(&self, documents: &[String]) -> Result<Vec<Vec<u32>>, InputError> {
        let inputs: Vec<&str> = documents.iter().map(String::as_str).collect();
        let encodings = self
            .tokenizer
            .encode_batch(inputs, false)
            .map_err(|e| InputError::new(format!("tokenization failed: {e}")).key(KEY))?;
        Ok(encodings.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// `[CLS] a [SEP]`, or `[CLS] a [SEP] b [SEP]`, in at most `seq_len`
    /// tokens, and where `b`'s segment starts (the length, without `b`).
    /// Too long a pair loses tokens from the end of its longer text (B on a
    /// tie), one at a time, as BERT's `_truncate_seq_pair` does.
    pub fn pair(&self, mut a: Vec<u32>, mut b: Option<Vec<u32>>, seq_len: usize) -> (Vec<u32>, usize) {
        let room = seq_len.saturating_sub(if b.is_some() { 3 } else { 2 });
        while a.len() + b.as_ref().map_or(0, Vec::len) > room {
            match &mut b {
                Some(b) if b.len() >= a.len() => b.pop(),
                _ => a.pop(),
            };
        }
        let mut ids = Vec::with_capacity(seq_len);
        let b_start = self.framing().frame(&mut ids, &a, b.as_deref());
        (ids, b_start)
    }

    fn from_tokenizer(tokenizer: Tokenizer, source: &str) -> Result<Vocab, InputError> {
        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| InputError::new(format!("{source} has no `{token}` token")).key(KEY))
        };
        let special = SPECIAL_TOKENS.iter().map(|t| id(t)).collect::<Result<Vec<_>, _>>()?;
        let serialized = tokenizer.to_string(false).map_err(|e| InputError::new(e.to_string()).key(KEY))?;
        Ok(Vocab {
            pad: id("[PAD]")?,
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            mask: id("[MASK]")?,
            special,
            fingerprint: key(&[serialized.as_bytes()]),
            tokenizer,
        })
    }
}

pub fn prepare(data: &DataSection, corpus: &Corpus, cache: &Cache) -> Result<Vocab, InputError> {
    if data.trains_tokenizer() {
        return trained(corpus, data.vocab_size as usize, cache);
    }
    from_file(data)
}

/// The tokenizer `data.tokenizer` names: a `vocab.txt` (BERT's WordPiece
/// pipeline around it) or a `tokenizer.json`, or a hub id (`hf:ORG/NAME`),
/// whose snapshot's `tokenizer.json` or `vocab.txt` it is.
pub fn from_file(data: &DataSection) -> Result<Vocab, InputError> {
    let resolved;
    let path = if crate::hub::is_hub_id(&data.tokenizer) {
        let folder = crate::hub::folder(&data.tokenizer).map_err(|e| e.key(KEY))?;
        resolved = crate::model_dir::tokenizer_file(&folder)
            .ok_or_else(|| InputError::new(format!("`{}` has no tokenizer.json or vocab.txt", data.tokenizer)).key(KEY).in_file(&folder))?;
        resolved.as_path()
    } else {
        Path::new(&data.tokenizer)
    };
    let fail = |m: String| InputError::new(m).key(KEY).in_file(path);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let tokenizer = if name.ends_with(".json") {
        Tokenizer::from_file(path).map_err(|e| fail(format!("cannot load tokenizer: {e}")))?
    } else if name.ends_with(".txt") {
        let model = WordPiece::from_file(&path.to_string_lossy())
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| fail(format!("cannot load vocabulary: {e}")))?;
        bert_pipeline(model)
    } else {
        return Err(InputError::new(format!(
            "`{}` is neither \"train\" nor a path to vocab.txt / tokenizer.json",
            data.tokenizer
        ))
        .key(KEY));
    };
    Vocab::from_tokenizer(tokenizer, &data.tokenizer)
}

fn bert_pipeline(model: WordPiece) -> Tokenizer {
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::default()))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_decoder(Some(WordPieceDecoder::default()));
    tokenizer
}

fn trained(corpus: &Corpus, vocab_size: usize, cache: &Cache) -> Result<Vocab, InputError> {
    let entry = cache.entry(
        "tokenizers",
        &key(&[b"wordpiece-v1", corpus.fingerprint.as_bytes(), &vocab_size.to_le_bytes()]),
        "json",
    );
    if let Ok(tokenizer) = Tokenizer::from_file(&entry) {
        return Vocab::from_tokenizer(tokenizer, "the trained tokenizer");
    }
    let mut tokenizer = bert_pipeline(WordPiece::default());
    let mut trainer: TrainerWrapper = WordPieceTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)).collect())
        .build()
        .into();
    tokenizer
        .train(&mut trainer, corpus.documents.iter())
        .map_err(|e| InputError::new(format!("training the tokenizer failed: {e}")).key(KEY))?;
    // A cache that cannot be written costs time, not correctness.
    if let Err(e) = cache.store(&entry, |p| tokenizer.save(p, false).map_err(|e| anyhow::anyhow!("{e}"))) {
        tracing::warn!("could not cache the tokenizer at {}: {e}", entry.display());
    }
    // WordPiece training is not reproducible from one process to the next
    // (the `tokenizers` trainer breaks ties between equal counts in the
    // order of a randomly seeded hash map): the cached vocabulary, where
    // another process stored its own first, is the one every trial of this
    // corpus uses.
    match Tokenizer::from_file(&entry) {
        Ok(cached) => Vocab::from_tokenizer(cached, "the trained tokenizer"),
        Err(_) => Vocab::from_tokenizer(tokenizer, "the trained tokenizer"),
    }
}

/// For tests: a `vocab.txt` of the special tokens then `words`, in `dir`,
/// loaded.
#[cfg(test)]
pub fn vocab_txt(dir: &Path, words: &[&str]) -> Vocab {
    let file = dir.join("vocab.txt");
    std::fs::write(&file, SPECIAL_TOKENS.iter().chain(words).map(|w| format!("{w}\n")).collect::<String>()).unwrap();
    from_file(&DataSection { tokenizer: file.display().to_string(), ..DataSection::default() }).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vocab_txt_loads_with_berts_uncased_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = vocab_txt(dir.path(), &["the", "cat", "##s", "sat"]);
        assert_eq!(loaded.size(), 9);
        assert_eq!((loaded.pad, loaded.cls, loaded.sep, loaded.mask), (0, 2, 3, 4));
        // Lower-cased, split into WordPieces, unknown words as [UNK].
        assert_eq!(loaded.encode_all(&["The CATS sat quietly".into()]).unwrap(), [vec![5, 6, 7, 8, 1]]);
    }

    #[test]
    fn a_tokenizer_that_is_neither_file_kind_is_refused() {
        let data = DataSection { tokenizer: "spm.model".into(), ..DataSection::default() };
        let err = from_file(&data).err().expect("refused");
        assert!(err.message.contains("neither"), "{err}");
    }
}
