//! Reads a corpus exactly as `data.corpus` does and prints, as one JSON
//! line, what it took: documents, characters, seconds, and the process's
//! peak resident memory. `bench/corpus_read.sh` compares formats with it.
//!
//!   read_corpus [--text-column NAME] PATTERN...
use bertlab::config::DataSection;
use std::time::Instant;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut data = DataSection::default();
    if args.first().map(String::as_str) == Some("--text-column") && args.len() > 1 {
        data.text_column = Some(args.remove(1));
        args.remove(0);
    }
    data.corpus = args;
    let start = Instant::now();
    let corpus = match bertlab::data::corpus::read(&data) {
        Ok(corpus) => corpus,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let chars: usize = corpus.documents.iter().map(String::len).sum();
    let peak = bertlab::train::benchmark::peak_resident_bytes();
    println!(
        "{}",
        serde_json::json!({"files": corpus.files.len(), "documents": corpus.documents.len(), "text_bytes": chars, "seconds": seconds, "peak_resident_bytes": peak})
    );
}
