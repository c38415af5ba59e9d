//! `bertlab rank` (hidden): a rank other than 0 of a trial on several
//! devices, started by the process that trains rank 0; see
//! `launch::ranks` for what it reads and does.
use crate::launch::ranks;
use crate::settings::DeviceSpec;
use anyhow::{anyhow, Result};
use clap::Args;

#[derive(Args)]
pub struct RankArgs {
    /// This process's rank (1 and up; rank 0 started it).
    #[arg(long)]
    rank: usize,
    /// Ranks in the trial.
    #[arg(long)]
    size: usize,
    /// The trial's c10d store, host:port.
    #[arg(long)]
    store: String,
    /// This rank's device: cpu or cuda:N.
    #[arg(long)]
    device: String,
    /// libtorch's intra-op threads: this rank's share of the machine.
    #[arg(long)]
    threads: i32,
}

pub fn serve(args: RankArgs) -> Result<i32> {
    // Stops at a step's end, agreed with the other ranks, as a worker does.
    crate::signals::install(crate::signals::Role::Worker)?;
    let device = DeviceSpec::parse(&args.device).and_then(DeviceSpec::resolve).map_err(|m| anyhow!(m))?;
    ranks::serve(args.rank, args.size, &args.store, device, args.threads)
}
