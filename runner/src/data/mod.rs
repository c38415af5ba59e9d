//! From corpus files to masked batches: read documents ([`corpus`]), get a
//! WordPiece tokenizer ([`tokenizer`]), pack token streams into fixed-length
//! sequences with a held-out split ([`packing`]), mask them dynamically
//! ([`masking`]) and batch them ([`batches`]). Trained vocabularies and
//! packed sequences are cached by content hash ([`cache`]).
pub mod batches;
pub mod cache;
pub mod corpus;
pub mod masking;
pub mod packing;
pub mod pairs;
pub mod sentences;
pub mod tokenizer;

use crate::config::DataSection;
use crate::error::InputError;
pub use packing::Packed;
pub use tokenizer::Vocab;

/// Everything the trials of one data configuration share.
pub struct Dataset {
    pub vocab: Vocab,
    pub train: Packed,
    pub eval: Packed,
    /// Where the numbers came from, for logs: files, documents, tokens.
    pub summary: String,
}

/// Reads, tokenizes and packs the corpus of `data`, reusing cached work.
pub fn prepare(data: &DataSection, cache: &cache::Cache) -> Result<Dataset, InputError> {
    let corpus = corpus::read(&data.corpus)?;
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
    Ok(Dataset { vocab, train, eval, summary })
}
