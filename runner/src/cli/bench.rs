//! `bertlab bench`: times training steps of one configuration and prints
//! throughput, step time, model FLOPs utilisation and peak memory, as a
//! table or as JSON for scripts (`bench/compare.sh`).
use crate::config;
use crate::error::InputError;
use crate::sweep;
use crate::trial::Trial;
use crate::trial::bind;
use crate::launch::ranks::{self, Assignment, Work};
use crate::train::{benchmark, device, peak_flops};
use anyhow::Result;
use super::OutputFormat;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct BenchArgs {
    /// Experiment file; without one, the built-in defaults (the `bert`
    /// plugin's default shape). A sweep is benchmarked at its first trial.
    file: Option<PathBuf>,
    /// Override a value, e.g. --set model.layers=12 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// auto, cpu, cuda, cuda:N (overrides train.device).
    #[arg(long)]
    device: Option<String>,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: i64,
    /// Untimed steps first (kernel selection, allocator warm-up).
    #[arg(long, default_value_t = 5)]
    warmup: i64,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

pub fn bench(args: BenchArgs) -> Result<i32> {
    if args.steps < 1 {
        return Err(InputError::new("must be at least 1").key("--steps").into());
    }
    if args.warmup < 0 {
        return Err(InputError::new("must be at least 0").key("--warmup").into());
    }
    let loaded = match &args.file {
        Some(file) => config::load(file, &args.sets)?,
        None => config::load_defaults(&args.sets, "bench")?,
    };
    let expansion = sweep::Expansion::new(&loaded)?;
    let trials: Vec<Trial> = match expansion.search() {
        // A search has no trials before it runs: its base configuration.
        Some(_) => expansion.base_trial()?.into_iter().collect(),
        None => sweep::expand(&loaded)?.trials,
    };
    let count = trials.len();
    let mut trial = trials.into_iter().next().ok_or_else(|| InputError::new("the sweep has no trials (its constraints drop them all)"))?;
    if count > 1 {
        eprintln!("bench the first of {count} trials: {}", trial.label());
    }
    let label = trial.label();
    let config = &mut trial.config;
    // A benchmark reads no corpus: the vocabulary is the model's, else the
    // size a trained one aims at.
    let vocab = bind::given_vocab(config).unwrap_or(config.data.vocab_size);
    let facts = bind::Facts { vocab, train_examples: None };
    bind::complete(config, &facts).map_err(|e| loaded.locate(e))?;
    if let Some(device) = &args.device {
        config.train.device = device.clone();
    }
    let devices = bind::devices(config, false).map_err(|e| match (&args.device, e.key.as_deref()) {
        (Some(_), Some("train.device")) => e.key("--device"),
        _ => loaded.locate(e),
    })?;
    let target = devices[0];

    // An out-of-memory at a large batch is an answer, not a crash. Over
    // several devices, the other ranks time the same steps beside this one.
    let assignment = Assignment { config: config.clone(), work: Work::Bench { warmup: args.warmup, steps: args.steps } };
    let threads = (tch::get_num_threads() / devices.len() as i32).max(1);
    tch::set_num_threads(threads);
    let m = crate::launch::local::catch_panics(|| {
        ranks::lead(&assignment, &devices, threads, None, || Ok(()), |(), ranks| benchmark::measure(config, target, ranks, args.warmup, args.steps))
    })?;
    let device_name = match target {
        tch::Device::Cuda(index) => device::gpu_names().get(index).cloned().unwrap_or_else(|| "CUDA device".into()),
        _ => cpu_model(),
    };
    let peak = peak_flops::peak(target, &device_name, m.precision, config.train.tf32);
    let mfu = m.flops_per_token as f64 * m.tokens_per_s / peak.flops;
    let report = serde_json::json!({
        "tokens_per_s": m.tokens_per_s,
        "step_ms": m.step_ms,
        "mfu": mfu,
        "peak_memory_bytes": m.peak_memory_bytes,
        "peak_memory_source": if target.is_cuda() { "CUDA caching allocator: peak bytes allocated" } else { "process peak resident memory (VmHWM)" },
        "peak_flops": peak.flops,
        "peak_flops_source": peak.source,
        "model_flops_per_token": m.flops_per_token,
        "params": m.params,
        "final_loss": m.final_loss,
        "device": device::name(target),
        "device_name": device_name,
        "precision": m.precision.name(),
        "tf32": config.train.tf32,
        "threads": tch::get_num_threads(),
        "plugin": config.plugin,
        "model": config.model,
        "batch_size": config.train.batch_size,
        "micro_batch_size": config.train.micro_batch_rows(),
        "accumulation_steps": config.train.accumulation_steps(),
        "devices": devices.iter().map(|&d| device::name(d)).collect::<Vec<_>>(),
        "seq_len": config.data.seq_len,
        "steps": args.steps,
        "warmup": args.warmup,
        "libtorch": super::doctor::libtorch(),
        "bertlab": env!("CARGO_PKG_VERSION"),
    });
    match args.format {
        OutputFormat::Json => println!("{report}"),
        OutputFormat::Table => {
            println!("{} {} on {device_name} ({}), {} steps after {} warm-up", config.plugin, label, device::name(target), args.steps, args.warmup);
            println!("tokens/s       {:.0}", m.tokens_per_s);
            println!("step           {:.2} ms (batch {} × seq {}, {})", m.step_ms, config.train.batch_in_words(), config.data.seq_len, m.precision.name());
            println!("MFU            {:.1}% of {:.1} TFLOP/s ({})", mfu * 100.0, peak.flops / 1e12, peak.source);
            println!("peak memory    {:.1} MiB", m.peak_memory_bytes as f64 / (1 << 20) as f64);
            println!("params         {}", m.params);
        }
    }
    Ok(0)
}

/// The CPU's model name from /proc/cpuinfo.
fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|rest| rest.split_once(':')).map(|(_, name)| name.trim().to_string()))
        .unwrap_or_else(|| "CPU".into())
}
