//! The command line: argument parsing and one module per subcommand.
//! Exit codes: 0 everything ran, 1 a trial (or the tool) failed, 2 the
//! input was rejected and nothing ran.
mod bench;
mod cancel;
mod doctor;
mod export;
mod forward;
mod models;
mod plan;
mod progress;
mod rank;
mod report;
mod run;
mod status;
mod sync;
mod worker;

use crate::error::InputError;
use clap::{Parser, Subcommand, ValueEnum};

/// `--format` of the commands that print for people or for scripts.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

#[derive(Parser)]
#[command(name = "bertlab", version, about = "Declarative sweeps of BERT training runs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Expand experiment files into trials and train them; completed trials
    /// are skipped on a re-run.
    Run(run::RunArgs),
    /// The trials an experiment would run (ids, swept and derived values,
    /// parameters, FLOPs per token) and those its constraints drop; trains
    /// nothing.
    Plan(plan::PlanArgs),
    /// HTML and Markdown reports of one or more run folders, compared in
    /// one page.
    Report(report::ReportArgs),
    /// Where each trial of a run folder stands: status, step, owner,
    /// heartbeat; brings its tables up to date.
    Status(status::StatusArgs),
    /// Cancel the Slurm jobs of a run folder (`run --launcher slurm`);
    /// their checkpoints stay for a later submission.
    Cancel(cancel::CancelArgs),
    /// Deliver to MLflow what a run could not (its tracking spool); never
    /// logs a point twice.
    Sync(sync::SyncArgs),
    /// The model plugins and their knobs.
    Models,
    /// One forward pass of a trial folder or a Hugging Face folder, in eval
    /// mode; writes last_hidden_state and logits as safetensors.
    Forward(forward::ForwardArgs),
    /// A trial folder as a Hugging Face folder (config.json,
    /// model.safetensors, tokenizer files).
    Export(export::ExportArgs),
    /// libtorch version, CUDA devices, threads.
    Doctor,
    /// Time training steps of one configuration: tokens/s, step time, model
    /// FLOPs utilisation, peak memory.
    Bench(bench::BenchArgs),
    /// One trial of `run --jobs N`, configured on stdin (internal).
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
    /// A rank other than 0 of a trial on several devices (internal).
    #[command(hide = true)]
    Rank(rank::RankArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BERTLAB_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Plan(args) => plan::plan(args),
        Command::Forward(args) => forward::forward(args),
        Command::Export(args) => export::export(args),
        Command::Sync(args) => sync::sync(args),
        Command::Status(args) => status::status(args),
        Command::Cancel(args) => cancel::cancel(args),
        Command::Report(args) => report::report(args),
        Command::Models => models::print().map(|_| 0),
        Command::Doctor => doctor::print().map(|_| 0),
        Command::Bench(args) => bench::bench(args),
        Command::Worker(args) => worker::serve(args),
        Command::Rank(args) => rank::serve(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => match error.downcast_ref::<InputError>() {
            Some(input) => {
                eprintln!("error: {input}");
                2
            }
            None => {
                eprintln!("error: {error:#}");
                1
            }
        },
    }
}
