//! The sections of an experiment file as typed structs, their defaults, and
//! the range checks that do not depend on the model plugin.
use crate::error::InputError;
use crate::settings::{DeviceSpec, PrecisionSetting};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// The whole file. Unknown sections and keys are rejected, not ignored: a
/// typo must not silently train the default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentFile {
    /// A base file this one is written on top of, relative to this file;
    /// read by [`super::extends`] before the layers are merged.
    #[serde(default, skip_serializing)]
    pub extends: Option<String>,
    #[serde(default)]
    pub experiment: ExperimentSection,
    /// The plugin's knobs, checked against its schema by the plugin.
    #[serde(default)]
    pub model: Map<String, Value>,
    #[serde(default)]
    pub data: DataSection,
    #[serde(default)]
    pub train: TrainSection,
    #[serde(default, skip_serializing)]
    pub sweep: SweepSection,
    /// Dotted key to expression, evaluated per trial after the sweep values.
    #[serde(default, skip_serializing)]
    pub derive: Map<String, Value>,
    #[serde(default, skip_serializing)]
    pub constraints: ConstraintsSection,
    #[serde(default, skip_serializing)]
    pub tracking: TrackingSection,
    /// Where the trials train: not part of any trial.
    #[serde(default, skip_serializing)]
    pub launch: super::launch::LaunchSection,
    /// Published results shown beside the measured configurations.
    #[serde(default, skip_serializing)]
    pub baseline: Vec<reports::Baseline>,
    #[serde(default, skip_serializing)]
    pub report: reports::ReportOptions,
}

/// Where results are tracked besides the Parquet tables.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackingSection {
    /// An MLflow tracking server (`http://host:5000`); `MLFLOW_TRACKING_URI`
    /// overrides it.
    pub mlflow_uri: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentSection {
    /// Output goes to `runs/<name>/`; defaults to the file's stem.
    pub name: String,
    /// A plugin from `bertlab models`.
    pub model: String,
    /// What the trials train: masked-LM pretraining, or fine-tuning a
    /// sequence classifier or regressor on labelled examples.
    pub task: Task,
    /// Every trial runs once per seed.
    pub seeds: Vec<u64>,
    /// What reports rank by.
    pub metric: String,
    pub goal: Goal,
}

impl Default for ExperimentSection {
    fn default() -> Self {
        ExperimentSection {
            name: String::new(),
            model: "bert".into(),
            task: Task::Mlm,
            seeds: vec![0],
            metric: "eval/loss".into(),
            goal: Goal::Minimize,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    #[default]
    Mlm,
    Classification,
    Regression,
}

impl Task {
    pub fn is_mlm(&self) -> bool {
        *self == Task::Mlm
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Goal {
    #[default]
    Minimize,
    Maximize,
}

impl Goal {
    pub fn as_str(self) -> &'static str {
        match self {
            Goal::Minimize => "minimize",
            Goal::Maximize => "maximize",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// Glob patterns, relative to the working directory; `.txt` (documents
    /// separated by blank lines), `.jsonl` (a text field), `.parquet` and
    /// `.arrow` (a text column), `save_to_disk` folders, or `hf:` ids of the
    /// `datasets` cache. One string is accepted for one pattern.
    #[serde(deserialize_with = "one_or_many")]
    pub corpus: Vec<String>,
    /// The corpus's text field (`.jsonl`) or column (`.parquet`, `.arrow`);
    /// unset: `text`. Left out of the serialised config when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_column: Option<String>,
    /// `"train"` (WordPiece trained on the corpus) or a path to `vocab.txt`
    /// or `tokenizer.json`.
    pub tokenizer: String,
    /// Target vocabulary size when the tokenizer is trained.
    pub vocab_size: i64,
    /// Tokens per sequence, `[CLS]` and `[SEP]` included.
    pub seq_len: i64,
    /// Share of packed sequences held out for evaluation.
    pub eval_fraction: f64,
    /// Cap on held-out sequences, so evaluation stays cheap on big corpora.
    pub eval_max_sequences: i64,
    /// Share of tokens selected for masked-LM prediction.
    pub mask_prob: f64,
    /// Next-sentence prediction beside masked-LM (BERT's pretraining):
    /// sequences become sentence pairs, half of them with a random B.
    /// Left out of the serialised config when off, so earlier trial ids stay.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub nsp: bool,
    /// Fine-tuning: the labelled training examples, a `.tsv`, `.csv`,
    /// `.jsonl` or `.parquet` file; with a `glue/<task>` format, the
    /// unpacked GLUE folder (or the task's folder in it). The fine-tuning
    /// keys are left out of the serialised config when unset, so
    /// pretraining trial ids stay as they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<String>,
    /// Fine-tuning: the labelled examples scored as `eval/<metric>`; a
    /// GLUE format finds its dev set(s) itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval: Option<String>,
    /// How `train` and `eval` are laid out: `tsv`, `csv`, `jsonl`,
    /// `parquet` (default: from the file's extension) or `glue/<task>` for
    /// a GLUE task as distributed (`glue/sst-2`, `glue/mnli`, ...), which
    /// also fixes the columns, the labels and the metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Fine-tuning: the text column, or two for sentence pairs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub text_columns: Vec<String>,
    /// Fine-tuning: the column holding the class (any text or integer) or,
    /// for regression, the number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_column: Option<String>,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            corpus: Vec::new(),
            text_column: None,
            tokenizer: TRAINED_TOKENIZER.into(),
            vocab_size: 8192,
            seq_len: 128,
            eval_fraction: 0.05,
            eval_max_sequences: 256,
            mask_prob: 0.15,
            nsp: false,
            train: None,
            eval: None,
            format: None,
            text_columns: Vec::new(),
            label_column: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSection {
    pub steps: i64,
    /// Passes over the training examples (fine-tuning); when set, `steps`
    /// becomes the steps these take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<i64>,
    /// Examples per optimiser step.
    pub batch_size: i64,
    /// Gradient accumulation: each step runs `batch_size / micro_batch_size`
    /// forward and backward passes of this many examples, and the update
    /// equals the whole batch's. Unset: the whole batch at once. Not part
    /// of a trial's id (how a step is cut does not change what it
    /// computes), so it is left out of the serialised config when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub micro_batch_size: Option<i64>,
    /// Peak learning rate, reached after `warmup_steps`, then decayed
    /// linearly to zero at `steps`.
    pub lr: f64,
    pub warmup_steps: i64,
    /// Warm-up as a share of the steps (BERT's fine-tuning: 0.1), for runs
    /// whose step count is known only from the data (`epochs`); replaces
    /// `warmup_steps` when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_fraction: Option<f64>,
    /// Decoupled (AdamW) weight decay; never applied to biases or LayerNorm.
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    /// Clip the global gradient norm to this; 0 turns clipping off.
    pub grad_clip: f64,
    /// Evaluate every this many steps (and always at step 0 and at the end);
    /// 0 evaluates only at the start and the end.
    pub eval_every: i64,
    /// Record `train/loss` every this many steps.
    pub log_every: i64,
    /// fp32 | bf16 | fp16 | auto (bf16 on a GPU that computes it natively,
    /// else fp32). bf16 and fp16 are mixed precision: fp32 weights, the
    /// forward pass under autocast; fp16 adds dynamic loss scaling.
    pub precision: String,
    /// Let fp32 matrix products on CUDA use TF32 tensor cores (faster, about
    /// 10 bits of mantissa); PyTorch's default is off. Left out of the
    /// serialised config when off, so trial ids from before the key existed
    /// stay the same.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tf32: bool,
    /// A wall-clock budget for training ("24h", "90m"; evaluations not
    /// counted): training stops when it is spent, and the learning rate
    /// decays over it. `steps` still caps the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
    /// auto | cpu | cuda | cuda:N
    pub device: String,
    /// Ranks one trial trains on at once, data-parallel, one device each
    /// (`cuda:N` and the devices after it; each CPU rank a share of the
    /// threads): each rank takes its share of every batch, and their
    /// gradients are summed through c10d (NCCL, Gloo). Not part of a
    /// trial's id, like `device`: the update is the whole batch's whatever
    /// the ranks. Left out of the serialised config at 1.
    #[serde(skip_serializing_if = "is_one")]
    pub devices: i64,
    /// Checkpoint the whole training state every this many steps; unset:
    /// at every evaluation. Either way at least every
    /// [`CHECKPOINT_AT_LEAST_EVERY`] of training; 0 turns checkpoints off.
    /// How often a trial is saved does not change its numbers: left out
    /// of its id ([`crate::trial::TrialConfig::identity`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<i64>,
    /// Checkpoints kept per trial; an older one goes once a newer one is
    /// in place. Left out of the id, like `checkpoint_every`.
    #[serde(skip_serializing_if = "is_default_keep")]
    pub keep_checkpoints: i64,
}

/// The longest a trial trains between two checkpoints, whatever
/// `train.checkpoint_every` says (unless it turns them off).
pub const CHECKPOINT_AT_LEAST_EVERY: std::time::Duration = std::time::Duration::from_secs(30 * 60);
const DEFAULT_KEEP_CHECKPOINTS: i64 = 1;

fn is_one(n: &i64) -> bool {
    *n == 1
}

fn is_default_keep(keep: &i64) -> bool {
    *keep == DEFAULT_KEEP_CHECKPOINTS
}

impl Default for TrainSection {
    fn default() -> Self {
        // BERT's optimiser settings (Devlin et al. 2018, appendix A.2).
        TrainSection {
            steps: 200,
            epochs: None,
            batch_size: 32,
            micro_batch_size: None,
            lr: 5e-4,
            warmup_steps: 0,
            warmup_fraction: None,
            weight_decay: 0.01,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-6,
            grad_clip: 1.0,
            eval_every: 50,
            log_every: 1,
            precision: "auto".into(),
            tf32: false,
            budget: None,
            device: "auto".into(),
            devices: 1,
            checkpoint_every: None,
            keep_checkpoints: DEFAULT_KEEP_CHECKPOINTS,
        }
    }
}

/// The axes of a sweep. Their contents are checked key by key in
/// `sweep::axes`, where each error can name the axis it is about.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SweepSection {
    /// Dotted keys to lists of values; trials are the cartesian product.
    pub grid: Map<String, Value>,
    /// Groups of equally long lists that advance together; each group is
    /// one axis of the product.
    pub zip: Vec<Map<String, Value>>,
    /// `samples`, `seed`, and dotted keys to distributions.
    pub random: Map<String, Value>,
    /// Stopping hopeless trials early.
    pub early_stop: Option<super::early_stop::EarlyStop>,
    /// `method`, `trials`, `startup`, `seed`, and dotted keys to
    /// distributions: an adaptive search (`sweep::search`).
    pub search: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConstraintsSection {
    /// Boolean expressions; a trial for which one is false is dropped.
    pub require: Vec<String>,
}

impl SweepSection {
    /// Whether some axis sets `key`.
    pub fn sets(&self, key: &str) -> bool {
        self.grid.contains_key(key) || self.zip.iter().any(|group| group.contains_key(key)) || self.random.contains_key(key) || self.search.contains_key(key)
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// A range check: when it fails, what is wrong with the value at `key`.
fn require(ok: bool, key: &str, message: impl FnOnce() -> String) -> Result<(), InputError> {
    if ok {
        Ok(())
    } else {
        Err(InputError::at_key(key, message()))
    }
}

/// `data.tokenizer`'s word for a WordPiece vocabulary trained on the corpus.
const TRAINED_TOKENIZER: &str = "train";

impl DataSection {
    /// Whether the tokenizer is trained on the corpus rather than read
    /// from a file.
    pub fn trains_tokenizer(&self) -> bool {
        self.tokenizer == TRAINED_TOKENIZER
    }

    /// The corpus's text field or column: `text_column`, else `text`.
    pub fn corpus_column(&self) -> &str {
        self.text_column.as_deref().unwrap_or("text")
    }

    pub fn check(&self) -> Result<(), InputError> {
        require(self.vocab_size >= 16, "data.vocab_size", || format!("{} is too small (at least 16)", self.vocab_size))?;
        require(self.seq_len >= 4, "data.seq_len", || format!("{} is too short (at least 4: [CLS], two tokens, [SEP])", self.seq_len))?;
        require(self.eval_fraction > 0.0 && self.eval_fraction <= 0.5, "data.eval_fraction", || {
            format!("{} is outside (0, 0.5]", self.eval_fraction)
        })?;
        require(self.eval_max_sequences >= 1, "data.eval_max_sequences", || "must be at least 1".into())?;
        require(self.mask_prob > 0.0 && self.mask_prob < 1.0, "data.mask_prob", || format!("{} is outside (0, 1)", self.mask_prob))?;
        if let Some(format) = &self.format {
            crate::formats::Format::parse(format).map_err(|m| InputError::at_key("data.format", m))?;
        }
        require(self.text_columns.len() <= 2, "data.text_columns", || {
            format!("names {} columns; a classifier reads one text or a pair of two", self.text_columns.len())
        })
    }
}

impl TrainSection {
    /// The section without what cannot change a trial's numbers: the
    /// devices it runs on, its checkpoint settings and its micro-batch.
    /// What a trial's id and its checkpoints' fingerprint are made of.
    pub fn without_bookkeeping(&self) -> TrainSection {
        TrainSection { device: String::new(), devices: 1, checkpoint_every: None, keep_checkpoints: DEFAULT_KEEP_CHECKPOINTS, micro_batch_size: None, ..self.clone() }
    }

    /// Ranks the trial trains on (`devices`, at least 1).
    pub fn ranks(&self) -> usize {
        self.devices.max(1) as usize
    }

    /// Examples each rank takes of a batch: the batch split over the ranks.
    pub fn rank_rows(&self) -> usize {
        (self.batch_size.max(1) as usize).div_ceil(self.ranks())
    }

    /// Examples per forward and backward pass, on each rank:
    /// `micro_batch_size`, else the rank's whole share of the batch.
    pub fn micro_batch_rows(&self) -> usize {
        self.micro_batch_size.map_or(self.rank_rows(), |m| m.max(1) as usize)
    }

    /// Forward and backward passes per optimiser step on each rank (1
    /// without `micro_batch_size`).
    pub fn accumulation_steps(&self) -> usize {
        self.rank_rows().div_ceil(self.micro_batch_rows())
    }

    /// The step's batch in words, as `plan` and `bench` print it: `32`;
    /// with accumulation `4096 = 32 × 128` (micro-batches × their size);
    /// over several devices `4096 = 8 devices × 4 × 128`.
    pub fn batch_in_words(&self) -> String {
        let cut = self.accumulation_steps() > 1;
        match (self.ranks(), cut) {
            (1, false) => self.batch_size.to_string(),
            (1, true) => format!("{} = {} × {}", self.batch_size, self.accumulation_steps(), self.micro_batch_rows()),
            (ranks, false) => format!("{} = {ranks} devices × {}", self.batch_size, self.rank_rows()),
            (ranks, true) => format!("{} = {ranks} devices × {} × {}", self.batch_size, self.accumulation_steps(), self.micro_batch_rows()),
        }
    }

    /// `budget` as a duration; `None` when unset (or invalid, which
    /// `check` rejects).
    pub fn budget_duration(&self) -> Option<std::time::Duration> {
        self.budget.as_deref().and_then(|b| humantime::parse_duration(b).ok())
    }

    pub fn check(&self) -> Result<(), InputError> {
        require(self.steps > 0, "train.steps", || format!("must be > 0, got {}", self.steps))?;
        require(self.epochs.is_none_or(|e| e > 0), "train.epochs", || format!("must be > 0, got {}", self.epochs.unwrap_or(0)))?;
        require(self.batch_size > 0, "train.batch_size", || format!("must be > 0, got {}", self.batch_size))?;
        require(self.devices >= 1, "train.devices", || format!("must be at least 1, got {}", self.devices))?;
        require(self.batch_size % self.devices == 0, "train.devices", || {
            format!("{} devices do not split train.batch_size = {} evenly", self.devices, self.batch_size)
        })?;
        let rank_rows = self.batch_size / self.devices;
        require(self.micro_batch_size.is_none_or(|m| m > 0 && rank_rows % m == 0), "train.micro_batch_size", || match self.devices {
            1 => format!("{} does not divide train.batch_size = {}", self.micro_batch_size.unwrap_or_default(), self.batch_size),
            devices => format!(
                "{} does not divide the {rank_rows} examples each of train.devices = {devices} takes of train.batch_size = {}",
                self.micro_batch_size.unwrap_or_default(),
                self.batch_size
            ),
        })?;
        require(self.lr > 0.0 && self.lr.is_finite(), "train.lr", || format!("must be > 0, got {}", self.lr))?;
        // With `epochs`, the steps are known once the examples are read.
        require(self.warmup_steps >= 0 && (self.epochs.is_some() || self.warmup_steps <= self.steps), "train.warmup_steps", || {
            format!("must be in [0, train.steps = {}], got {}", self.steps, self.warmup_steps)
        })?;
        require(self.warmup_fraction.is_none_or(|f| (0.0..1.0).contains(&f)), "train.warmup_fraction", || {
            format!("must be in [0, 1), got {}", self.warmup_fraction.unwrap_or_default())
        })?;
        require(self.weight_decay >= 0.0, "train.weight_decay", || "must be >= 0".into())?;
        for (key, beta) in [("train.adam_beta1", self.adam_beta1), ("train.adam_beta2", self.adam_beta2)] {
            require((0.0..1.0).contains(&beta), key, || format!("must be in [0, 1), got {beta}"))?;
        }
        require(self.adam_eps > 0.0, "train.adam_eps", || "must be > 0".into())?;
        require(self.grad_clip >= 0.0, "train.grad_clip", || "must be >= 0 (0 turns clipping off)".into())?;
        require(self.eval_every >= 0, "train.eval_every", || "must be >= 0".into())?;
        require(self.log_every >= 1, "train.log_every", || "must be >= 1".into())?;
        require(self.checkpoint_every.is_none_or(|n| n >= 0), "train.checkpoint_every", || "must be >= 0 (0 turns checkpoints off)".into())?;
        require(self.keep_checkpoints >= 1, "train.keep_checkpoints", || "must be at least 1".into())?;
        if let Some(budget) = &self.budget {
            let parsed = humantime::parse_duration(budget);
            require(parsed.as_ref().is_ok_and(|d| !d.is_zero()), "train.budget", || {
                format!("`{budget}` is not a duration like \"24h\", \"90m\" or \"30s\"")
            })?;
        }
        PrecisionSetting::parse(&self.precision).map_err(|m| InputError::at_key("train.precision", m))?;
        DeviceSpec::parse(&self.device).map(|_| ()).map_err(|m| InputError::at_key("train.device", m))
    }
}
