//! `bertlab worker` (hidden): one trial of `run --jobs N`; see
//! `launch::protocol` for what it reads and writes.
use crate::launch::protocol;
use crate::settings::DeviceSpec;
use anyhow::{anyhow, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct WorkerArgs {
    /// The device the sweep placed this trial on: cpu or cuda:N; for a
    /// trial on several, one per rank, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    device: Vec<String>,
    /// libtorch's intra-op threads: this worker's share of the machine.
    #[arg(long)]
    threads: i32,
    /// The trial's folder in the run folder.
    #[arg(long)]
    dir: PathBuf,
    /// The checkpoint to go on from.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// The early-stopping rung (a step) to pause at.
    #[arg(long)]
    until: Option<i64>,
}

pub fn serve(args: WorkerArgs) -> Result<i32> {
    crate::signals::install(crate::signals::Role::Worker)?;
    let devices = args.device.iter().map(|d| DeviceSpec::parse(d).and_then(DeviceSpec::resolve).map_err(|m| anyhow!(m))).collect::<Result<Vec<_>>>()?;
    protocol::serve(&devices, args.threads, &args.dir, args.resume.as_deref(), args.until)
}
