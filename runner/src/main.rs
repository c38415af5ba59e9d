//! The `bertlab` binary: everything lives in the library's `cli` module.
fn main() {
    std::process::exit(bertlab::cli::main());
}
