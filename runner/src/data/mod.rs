//! From corpus files to masked batches: read documents ([`corpus`], also
//! from what Hugging Face `datasets` left on disk: [`datasets_cache`]), get a
//! WordPiece tokenizer ([`tokenizer`]), pack token streams into fixed-length
//! sequences with a held-out split ([`packing`]), mask them dynamically
//! ([`masking`]) and batch them ([`batches`]) in shuffled [`epochs`]. Trained vocabularies and
//! packed sequences are cached by content hash ([`cache`]). Fine-tuning
//! reads labelled examples instead ([`labeled`]).
pub mod batches;
pub mod cache;
pub mod corpus;
pub mod datasets_cache;
pub mod epochs;
pub mod labeled;
pub mod masking;
pub mod packing;
pub mod pairs;
pub mod sentences;
pub mod text_file;
pub mod tokenizer;

use crate::config::{DataSection, Task};
use crate::error::InputError;
pub use packing::Packed;
pub use tokenizer::Vocab;

/// Everything the trials of one data configuration share.
pub struct Dataset {
    pub vocab: Vocab,
    pub examples: Examples,
    /// Where the numbers came from, for logs: files, documents, tokens.
    pub summary: String,
    /// A checksum of every example and its vocabulary: a checkpoint made on
    /// other data (the corpus changed under the same path) is refused.
    pub digest: String,
}

/// CRC-32 of numbers' little-endian bytes, fed one slice at a time.
struct Digest(crc32fast::Hasher);

impl Digest {
    fn new(vocab: &Vocab) -> Digest {
        let mut digest = Digest(crc32fast::Hasher::new());
        digest.add(&[vocab.size() as u32]);
        digest
    }

    fn add(&mut self, values: &[u32]) {
        for value in values {
            self.0.update(&value.to_le_bytes());
        }
    }

    fn packed(&mut self, packed: &Packed) {
        self.add(&packed.ids);
        self.add(&packed.lengths);
        if let Some(pairs) = &packed.pairs {
            self.add(&pairs.b_start);
            self.0.update(&pairs.random_next);
        }
    }

    fn split(&mut self, split: &labeled::Split) {
        for (ids, (&b_start, &label)) in split.ids.iter().zip(split.b_start.iter().zip(&split.labels)) {
            self.add(ids);
            self.add(&[b_start as u32]);
            self.0.update(&label.to_le_bytes());
        }
    }

    fn finish(self) -> String {
        format!("{:08x}", self.0.finalize())
    }
}

pub enum Examples {
    /// Packed sequences of the corpus, for masked-LM pretraining.
    Pretraining { train: Packed, eval: Packed },
    Labeled(labeled::Labeled),
}

/// The examples `task` trains on, from `data`, reusing cached work.
pub fn prepare(task: Task, data: &DataSection, cache: &cache::Cache) -> Result<Dataset, InputError> {
    match task {
        Task::Mlm => pretraining(data, cache),
        _ => fine_tuning(task, data),
    }
}

fn fine_tuning(task: Task, data: &DataSection) -> Result<Dataset, InputError> {
    if data.trains_tokenizer() {
        return Err(InputError::new("fine-tuning reads text with the tokenizer of its starting weights: set model.init (or data.tokenizer)").key("data.tokenizer"));
    }
    let vocab = tokenizer::from_file(data)?;
    let labeled = labeled::prepare(task, data, &vocab)?;
    let classes = match &labeled.labels {
        labeled::Labels::Classes(classes) => format!("classes {}", classes.join("/")),
        labeled::Labels::Values => "regression".into(),
    };
    let evals: Vec<String> = labeled.evals.iter().map(|e| e.len().to_string()).collect();
    let skipped = if labeled.skipped > 0 { format!(", {} rows without a needed value skipped", labeled.skipped) } else { String::new() };
    let summary = format!("{}: {}, {} train / {} eval examples{skipped}", labeled.task, classes, labeled.train.len(), evals.join(" + "));
    let mut digest = Digest::new(&vocab);
    std::iter::once(&labeled.train).chain(&labeled.evals).for_each(|split| digest.split(split));
    Ok(Dataset { digest: digest.finish(), vocab, examples: Examples::Labeled(labeled), summary })
}

fn pretraining(data: &DataSection, cache: &cache::Cache) -> Result<Dataset, InputError> {
    let corpus = corpus::read(data)?;
    let vocab = tokenizer::prepare(data, &corpus, cache)?;
    let packed = packing::pack_cached(&corpus, &vocab, data.seq_len as usize, data.nsp, cache)?;
    let (train, eval) = packed.split(data.eval_fraction, data.eval_max_sequences as usize);
    if train.is_empty() || eval.is_empty() {
        // A pair needs a document of two sentences, or two documents.
        let pairs = if data.nsp { " (sentence pairs, data.nsp: each needs a document of two or more sentences, or two documents)" } else { "" };
        return Err(InputError::new(format!(
            "the corpus makes only {} sequences of data.seq_len = {} tokens{pairs}; at least 2 are needed (one held out)",
            train.len() + eval.len(),
            data.seq_len
        ))
        .key("data.corpus"));
    }
    let summary = format!(
        "{} files, {} documents, vocabulary {}, {} train / {} eval sequences of {} tokens",
        corpus.files.len(),
        corpus.documents.len(),
        vocab.size(),
        train.len(),
        eval.len(),
        data.seq_len
    );
    let mut digest = Digest::new(&vocab);
    digest.packed(&train);
    digest.packed(&eval);
    Ok(Dataset { digest: digest.finish(), vocab, examples: Examples::Pretraining { train, eval }, summary })
}
