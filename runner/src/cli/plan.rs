//! `bertlab plan`: the trials an experiment would run, with their swept and
//! derived values, parameter count and FLOPs per token, which are already
//! completed in the run folder, and which the constraints drop and why.
//! Trains nothing and writes nothing. The sweep is walked in chunks on
//! every core and written in order as it goes, so a million-trial plan
//! takes seconds and no more memory than a few chunks of output.
use crate::config::early_stop::EarlyStop;
use crate::config::{self, DataSection, TrainSection};
use crate::data::tokenizer;
use crate::error::InputError;
use crate::store;
use crate::sweep::{Expansion, Planned};
use crate::trial::{bind, short, Point};
use anyhow::Result;
use super::OutputFormat;
use clap::Args;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};

#[derive(Args)]
pub struct PlanArgs {
    /// The experiment file.
    file: PathBuf,
    /// Override a value, e.g. --set train.steps=50 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Run folder to compare with (default runs/<experiment name>).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Points per chunk of work handed to a thread.
const CHUNK: u64 = 2048;

/// Counts for the closing line.
#[derive(Default, Clone, Copy)]
struct Counts {
    new: u64,
    completed: u64,
    dropped: u64,
    /// Some parameter count assumed a trained vocabulary's target size.
    assumed_vocab: bool,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.new += other.new;
        self.completed += other.completed;
        self.dropped += other.dropped;
        self.assumed_vocab |= other.assumed_vocab;
    }
}

/// What one thread needs to render chunks of the sweep.
struct Renderer<'a> {
    expansion: &'a Expansion<'a>,
    completed: &'a HashSet<String>,
    format: OutputFormat,
}

pub fn plan(args: PlanArgs) -> Result<i32> {
    let loaded = config::load(&args.file, &args.sets)?;
    let expansion = Expansion::new(&loaded)?;
    let name = &loaded.experiment.experiment.name;
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(name));
    let completed = store::completed_ids(&out)?;
    let stdout = std::io::stdout();
    let mut w = BufWriter::with_capacity(1 << 16, stdout.lock());
    let seeds = expansion.seeds();

    if args.format == OutputFormat::Table {
        let files: Vec<String> = loaded.files().iter().rev().map(|p| p.display().to_string()).collect();
        writeln!(w, "plan  {name} ({}): plugin {}", files.join(" extends "), expansion.plugin().name())?;
        match expansion.search() {
            Some(search) => writeln!(w, "search {} × seeds {seeds:?} = up to {} trials", search.describe(), expansion.len())?,
            None => writeln!(w, "axes  {} × seeds {seeds:?} = {} trials before constraints", expansion.space().describe(), expansion.len())?,
        }
        let mut header = vec!["trial_id"];
        header.extend(expansion.swept_keys());
        header.extend(expansion.derived_keys());
        header.extend(["seed", "batch", "params", "flops/token", "status"]);
        writeln!(w, "| {} |", header.join(" | "))?;
        writeln!(w, "|{}", " --- |".repeat(header.len()))?;
    } else {
        let mut head = json!({"experiment": name, "file": loaded.path, "plugin": expansion.plugin().name(),
                          "axes": expansion.space().describe(), "seeds": seeds, "run_folder": out});
        if let Some(search) = expansion.search() {
            head["search"] = json!({"space": search.describe(), "suggestions": search.trials, "startup": search.startup});
        }
        let head = serde_json::to_string(&head)?;
        write!(w, "{},\"trials\":[", &head[..head.len() - 1])?;
    }

    let renderer = Renderer { expansion: &expansion, completed: &completed, format: args.format };
    // A search's rows are its suggestions so far.
    let (tally, suggested) = match expansion.search() {
        Some(search) => {
            let points = crate::launch::search::suggested(&out, search)?;
            (renderer.render_suggestions(&points, &mut w)?, Some(points.len() as u64))
        }
        None => (renderer.render_all(&mut w)?, None),
    };

    let Counts { new, completed, dropped, assumed_vocab } = tally;
    let trials = if suggested.is_some() { expansion.len() } else { new + completed };
    let early_stop = loaded.experiment.sweep.early_stop.as_ref().map(|e| early_stop_cost(e, &loaded.experiment.train, trials));
    match args.format {
        OutputFormat::Table => {
            match (suggested, expansion.search()) {
                (Some(made), Some(search)) => write!(
                    w,
                    "{made} of {} suggestions made in {}: {completed} trials completed, {new} to run; at most {} steps",
                    search.trials,
                    out.display(),
                    expansion.len() as i64 * loaded.experiment.train.steps
                )?,
                _ => write!(w, "{new} to run, {completed} already completed in {}, {dropped} dropped by constraints.", out.display())?,
            }
            if assumed_vocab {
                write!(w, " (params count a vocabulary of data.vocab_size; the trained one can come out smaller)")?;
            }
            writeln!(w)?;
            if let Some(cost) = &early_stop {
                let rungs: Vec<String> = cost["rungs"].as_array().into_iter().flatten().map(|r| r.to_string()).collect();
                writeln!(
                    w,
                    "early stop {} at steps {} of {}: at most {} steps (every trial to its end), at least {} (every trial to the first rung, one to its end)",
                    cost["method"].as_str().unwrap_or_default(),
                    rungs.join(", "),
                    loaded.experiment.train.steps,
                    cost["most_steps"],
                    cost["fewest_steps"]
                )?;
            }
        }
        OutputFormat::Json => {
            let mut summary = json!({"new": new, "completed": completed, "dropped": dropped});
            if let Some(made) = suggested {
                summary["suggested"] = made.into();
                summary["most_steps"] = (expansion.len() as i64 * loaded.experiment.train.steps).into();
            }
            if let Some(cost) = early_stop {
                summary["early_stop"] = cost;
            }
            writeln!(w, "],\"summary\":{summary}}}")?
        }
    }
    w.flush()?;
    Ok(0)
}

/// Early stopping's rungs for the experiment's `train.steps`, and what
/// `trials` trials can cost in steps: all of them to their end at most; at
/// least each to the first rung and one (which both rules let finish) to
/// its end.
fn early_stop_cost(early_stop: &EarlyStop, train: &TrainSection, trials: u64) -> Value {
    let rungs = early_stop.rungs(train);
    let first = rungs.first().copied().unwrap_or(train.steps);
    let trials = trials as i64;
    let fewest = if trials == 0 { 0 } else { (trials - 1) * first + train.steps };
    json!({"method": early_stop.method.as_str(), "rungs": rungs, "most_steps": trials * train.steps, "fewest_steps": fewest})
}

impl Renderer<'_> {
    /// Renders every chunk, one thread per core taking chunks in turn, and
    /// writes them in order. A thread runs at most two chunks ahead.
    fn render_all(&self, w: &mut impl Write) -> Result<Counts> {
        let points = self.expansion.space().len();
        let chunks = points.div_ceil(CHUNK);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8) as u64;
        let mut tally = Counts::default();
        std::thread::scope(|scope| -> Result<()> {
            let receivers: Vec<Receiver<Result<(Vec<u8>, Counts)>>> = (0..threads.min(chunks.max(1)))
                .map(|t| {
                    let (tx, rx) = sync_channel(2);
                    scope.spawn(move || {
                        let mut vocab = VocabSizes::default();
                        for chunk in (t..chunks).step_by(threads as usize) {
                            let range = chunk * CHUNK..((chunk + 1) * CHUNK).min(points);
                            let rendered = self.render(range, &mut vocab);
                            let failed = rendered.is_err();
                            if tx.send(rendered).is_err() || failed {
                                break;
                            }
                        }
                    });
                    rx
                })
                .collect();
            for chunk in 0..chunks {
                let (bytes, part) = receivers[(chunk % threads) as usize].recv().expect("a worker sends each of its chunks")?;
                w.write_all(&bytes)?;
                tally.add(part);
            }
            Ok(())
        })?;
        Ok(tally)
    }

    /// A search's suggestions so far, a row per trial.
    fn render_suggestions(&self, points: &[Point], w: &mut impl Write) -> Result<Counts> {
        let mut vocab = VocabSizes::default();
        let mut tally = Counts::default();
        let mut first = true;
        for point in points {
            for planned in self.expansion.suggestion(point.clone())? {
                let row = self.row(planned, &mut vocab, &mut tally)?;
                match self.format {
                    OutputFormat::Table => row.table_line(w)?,
                    OutputFormat::Json => {
                        if !first {
                            w.write_all(b",")?;
                        }
                        serde_json::to_writer(&mut *w, &row.json())?;
                    }
                }
                first = false;
            }
        }
        Ok(tally)
    }

    fn render(&self, range: Range<u64>, vocab: &mut VocabSizes) -> Result<(Vec<u8>, Counts)> {
        let mut out = Vec::with_capacity((range.end - range.start) as usize * 128);
        let mut tally = Counts::default();
        let first = range.start == 0;
        for (n, planned) in self.expansion.points(range).enumerate() {
            let row = self.row(planned?, vocab, &mut tally)?;
            match self.format {
                OutputFormat::Table => row.table_line(&mut out)?,
                OutputFormat::Json => {
                    if n > 0 || !first {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut out, &row.json())?;
                }
            }
        }
        Ok((out, tally))
    }

    fn row(&self, planned: Planned, vocab: &mut VocabSizes, tally: &mut Counts) -> Result<Row> {
        Ok(match planned {
            Planned::Run(trial) => {
                let mut config = trial.config;
                // A plan reads no corpus nor examples: the vocabulary is the
                // model's, else an estimate, and steps stay as written.
                let vocab_size = match bind::given_vocab(&config) {
                    Some(given) => given,
                    None => {
                        tally.assumed_vocab |= config.data.trains_tokenizer();
                        vocab.of(&config.data)?
                    }
                };
                let facts = bind::Facts { vocab: vocab_size, train_examples: None };
                bind::complete(&mut config, &facts).map_err(|e| self.expansion.loaded().locate(e))?;
                let knobs = config.model;
                let plugin = self.expansion.plugin();
                let params = crate::train::objective::Pretraining::param_count(plugin, &knobs, config.data.nsp)?;
                let flops = plugin.flops_per_token(&knobs, config.data.seq_len)?;
                let done = self.completed.contains(&trial.id);
                if done {
                    tally.completed += 1
                } else {
                    tally.new += 1
                }
                let status = if done { "completed" } else { "new" };
                let train = &config.train;
                let batch = Batching {
                    words: train.batch_in_words(),
                    batch_size: train.batch_size,
                    devices: train.ranks(),
                    micro: train.micro_batch_rows(),
                    accumulation: train.accumulation_steps(),
                };
                Row { id: Some(trial.id), swept: trial.swept, derived: trial.derived, seed: config.seed, params: Some((params, flops)), batch: Some(batch), status, dropped_by: None }
            }
            Planned::Dropped { swept, derived, seed, constraint } => {
                tally.dropped += 1;
                Row { id: None, swept, derived, seed, params: None, batch: None, status: "dropped", dropped_by: Some(constraint) }
            }
        })
    }
}

struct Row {
    /// None for a dropped trial: it has no resolved configuration.
    id: Option<String>,
    swept: Point,
    derived: Point,
    seed: u64,
    /// Parameter count and training FLOPs per token; none when dropped.
    params: Option<(i64, i64)>,
    /// How each step is batched; none when dropped.
    batch: Option<Batching>,
    status: &'static str,
    dropped_by: Option<String>,
}

/// An optimiser step's examples and how they are cut.
struct Batching {
    /// [`crate::config::TrainSection::batch_in_words`], for the table.
    words: String,
    batch_size: i64,
    /// Ranks the batch is split over (`train.devices`).
    devices: usize,
    /// Examples per forward pass on each rank ([`crate::config::TrainSection::micro_batch_rows`]).
    micro: usize,
    accumulation: usize,
}

impl Row {
    fn table_line(&self, w: &mut impl Write) -> std::io::Result<()> {
        write!(w, "| {} |", self.id.as_deref().unwrap_or("-"))?;
        // Every point has the same keys in the same order as the columns.
        for (_, value) in self.swept.iter().chain(&self.derived) {
            write!(w, " {} |", short(value))?;
        }
        let (params, flops) = match self.params {
            Some((p, f)) => (p.to_string(), reports::format::si(f as f64)),
            None => (String::new(), String::new()),
        };
        let status = match &self.dropped_by {
            Some(constraint) => format!("dropped by `{constraint}`"),
            None => self.status.to_string(),
        };
        let batch = self.batch.as_ref().map(|b| b.words.as_str()).unwrap_or_default();
        writeln!(w, " {} | {batch} | {params} | {flops} | {status} |", self.seed)
    }

    fn json(&self) -> Value {
        let map = |point: &Point| Value::Object(point.iter().cloned().collect::<Map<String, Value>>());
        let mut row = json!({"trial_id": self.id, "status": self.status, "seed": self.seed,
                             "swept": map(&self.swept), "derived": map(&self.derived)});
        if let Some((params, flops)) = self.params {
            row["params"] = params.into();
            row["flops_per_token"] = flops.into();
        }
        if let Some(batch) = &self.batch {
            row["batch_size"] = batch.batch_size.into();
            row["devices"] = batch.devices.into();
            row["micro_batch_size"] = batch.micro.into();
            row["accumulation_steps"] = batch.accumulation.into();
        }
        if let Some(constraint) = &self.dropped_by {
            row["dropped_by"] = constraint.clone().into();
        }
        row
    }
}

/// The vocabulary size the parameter count assumes when the model does not
/// set one: a tokenizer file's own size, or for a tokenizer trained on the
/// corpus, `data.vocab_size` (an upper bound: a small corpus can yield
/// fewer words). Each file is read once per thread.
#[derive(Default)]
struct VocabSizes {
    files: HashMap<String, i64>,
}

impl VocabSizes {
    fn of(&mut self, data: &DataSection) -> Result<i64, InputError> {
        if data.trains_tokenizer() {
            return Ok(data.vocab_size);
        }
        if let Some(&size) = self.files.get(&data.tokenizer) {
            return Ok(size);
        }
        let size = tokenizer::from_file(data)?.size() as i64;
        self.files.insert(data.tokenizer.clone(), size);
        Ok(size)
    }
}
